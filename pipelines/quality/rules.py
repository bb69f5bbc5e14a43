"""The frame contract's value rules, defined once: ingest enforces them row by row, GE checks them again."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa

VIN_PATTERN = r"^[A-HJ-NPR-Z0-9]{17}$"  # ISO 3779: 17 characters, never I, O or Q


@dataclass(frozen=True)
class RangeRule:
    """A value must lie in [low, high]; nulls pass unless the column is required."""

    name: str
    column: str
    low: float | None
    high: float | None
    meaning: str


@dataclass(frozen=True)
class SetRule:
    """A value must be one of `allowed`; nulls pass."""

    name: str
    column: str
    allowed: tuple[int, ...]
    meaning: str


# Bounds are physical limits from GB/T 32960.3 and GB/T 45688 (see shared/reference/bms-domain.md),
# wide enough for every chemistry: a value outside them is a broken sample, not an unusual battery.
RANGE_RULES: tuple[RangeRule, ...] = (
    RangeRule("soc_range", "soc_pct", 0, 100, "SOC is a percentage, 0–100"),
    RangeRule("pack_voltage_range", "pack_voltage_v", 0, 1000, "pack voltage is 0–1000 V in GB/T 32960"),
    RangeRule("pack_current_range", "pack_current_a", -1000, 1000, "pack current is −1000…+1000 A in GB/T 32960"),
    RangeRule("speed_range", "speed_kmh", 0, 250, "speed is 0–250 km/h"),
    RangeRule("odometer_range", "odometer_km", 0, 9_999_999, "odometer is 0–9,999,999 km"),
    RangeRule("insulation_range", "insulation_kohm", 0, 60_000, "insulation resistance is 0–60,000 kΩ"),
    RangeRule("alarm_level_range", "alarm_level", 0, 3, "alarm level is 0–3"),
    RangeRule("alarm_flags_range", "alarm_flags", 0, 2**32 - 1, "alarm flags are a 32-bit word"),
    RangeRule("cell_count_range", "cell_count", 1, 1000, "a frame carries 1–1000 cell voltages"),
    RangeRule("cell_mv_range", "cell_min_mv", 1000, 5000, "every valid cell voltage is 1.000–5.000 V"),
    RangeRule("cell_mv_range", "cell_max_mv", 1000, 5000, "every valid cell voltage is 1.000–5.000 V"),
    RangeRule("probe_temp_range", "probe_min_c", -40, 125, "every valid probe temperature is −40…125 °C"),
    RangeRule("probe_temp_range", "probe_max_c", -40, 125, "every valid probe temperature is −40…125 °C"),
)

SET_RULES: tuple[SetRule, ...] = (
    SetRule("vehicle_state_code", "vehicle_state", (1, 2, 3), "vehicle state is 1 started, 2 off, 3 other"),
    SetRule("charge_state_code", "charge_state", (1, 2, 3, 4), "charge state is 1, 2, 3 or 4"),
)

REQUIRED_COLUMNS = ("vin", "ts", "pack_voltage_v", "pack_current_a", "soc_pct", "cell_mv")
# Derived per-frame figures the rules (and GE) look at besides the frame's own columns.
METRIC_COLUMNS = ("cell_count", "cell_valid_count", "cell_min_mv", "cell_max_mv", "probe_min_c", "probe_max_c")


@functools.cache
def _duckdb():
    import duckdb  # list_min/list_max run in DuckDB's vectorised engine: ~50x faster than numpy on list<uint16>

    return duckdb.connect()


def frame_metrics(frames: pa.Table, known: dict | None = None) -> pa.Table:
    """vin, ts and the scalar columns of frames plus the derived per-frame metrics, for checks and GE.

    `known` may hold some METRIC_COLUMNS already computed (ingest has the list items as numpy arrays).
    """
    known = known or {}
    scalars = [name for name in frames.column_names if name not in ("cell_mv", "probe_temp_c")]
    if all(name in known for name in METRIC_COLUMNS):
        table = frames.select(scalars)
        for name in METRIC_COLUMNS:
            table = table.append_column(name, pa.array(known[name], pa.int64() if "count" in name else pa.float64(), from_pandas=True))
        return table
    scalars = [name for name in frames.column_names if name not in ("cell_mv", "probe_temp_c")]
    lists = frames.select(["cell_mv", "probe_temp_c"])  # noqa: F841 (read by DuckDB by name)
    with _duckdb().cursor() as con:
        derived = con.sql("""
            select coalesce(len(cell_mv), 0)::bigint as cell_count,
                   coalesce(list_count(cell_mv), 0)::bigint as cell_valid_count,
                   list_min(cell_mv)::double as cell_min_mv,
                   list_max(cell_mv)::double as cell_max_mv,
                   list_min(probe_temp_c)::double as probe_min_c,
                   list_max(probe_temp_c)::double as probe_max_c
            from lists""").to_arrow_table()
    table = frames.select(scalars)
    for name in METRIC_COLUMNS:
        table = table.append_column(name, derived[name])
    return table
