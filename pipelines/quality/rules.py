"""The frame contract's value rules, defined once: ingest enforces them row by row, GE checks them again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


def _list_min_max(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row length, count of non-null items, min and max of a list column (NaN where no valid item)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    n = len(values)
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(values)  # rows are contiguous runs of `lengths` items, null lists skipped
    numbers = pc.fill_null(flat.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    valid = ~np.isnan(numbers)
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    counts = np.zeros(n, dtype=np.int64)
    if len(numbers):
        starts = np.minimum(np.concatenate(([0], np.cumsum(lengths)[:-1])), len(numbers) - 1)
        counts = np.add.reduceat(valid.astype(np.int64), starts)
        low = np.minimum.reduceat(np.where(valid, numbers, np.inf), starts)
        high = np.maximum.reduceat(np.where(valid, numbers, -np.inf), starts)
        empty = (lengths == 0) | (counts == 0)
        counts[lengths == 0] = 0
        low[empty] = np.nan
        high[empty] = np.nan
    return lengths, counts, low, high


def frame_metrics(frames: pa.Table) -> pa.Table:
    """vin, ts and the scalar columns of frames plus the derived per-frame metrics, for checks and GE."""
    cell_len, cell_valid, cell_min, cell_max = _list_min_max(frames["cell_mv"])
    _, _, probe_min, probe_max = _list_min_max(frames["probe_temp_c"])
    scalars = [name for name in frames.column_names if name not in ("cell_mv", "probe_temp_c")]
    table = frames.select(scalars)
    for name, array in (
        ("cell_count", cell_len),
        ("cell_valid_count", cell_valid),
        ("cell_min_mv", cell_min),
        ("cell_max_mv", cell_max),
        ("probe_min_c", probe_min),
        ("probe_max_c", probe_max),
    ):
        table = table.append_column(name, pa.array(array, from_pandas=True))
    return table
