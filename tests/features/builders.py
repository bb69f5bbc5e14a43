"""Small hand-built inputs for the feature queries: frames in FRAME_SCHEMA, daily rows and cell rows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from pipelines.features.window_signals import FULL_SIGNALS
from pipelines.schema import FRAME_SCHEMA

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
VIN_C = "LGXCE4CB0M0000003"


def frame(vin: str, ts: str, *, current: float | None, cells: list[int | None], probes: list[int | None] | None = None,
          voltage: float = 350.0, flags: int = 0) -> dict:
    """One frame; None cell or probe items stand for sentinels the ingest turned into nulls."""
    return {
        "vin": vin, "ts": datetime.fromisoformat(ts).replace(tzinfo=UTC), "vehicle_state": 1, "charge_state": 3,
        "speed_kmh": 0.0, "odometer_km": 1000.0, "pack_voltage_v": voltage, "pack_current_a": current,
        "soc_pct": 50.0, "insulation_kohm": 5000.0, "cell_mv": cells, "probe_temp_c": probes or [25, 25],
        "alarm_level": 0, "alarm_flags": flags,
    }


def frames_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=FRAME_SCHEMA)


DAILY_FIXTURE_SCHEMA = pa.schema(
    [pa.field("vin", pa.string()), pa.field("dt", pa.date32()), pa.field("suspect_cell", pa.int32())]
    + [pa.field(s, pa.bool_() if s == "alarm" else pa.int64() if s in ("frame_count", "hours_covered") else pa.float64())
       for s in FULL_SIGNALS]
    + [pa.field("alarm_frames", pa.int64())]
)


def daily_row(vin: str, dt: str, **values) -> dict:
    """A daily row: every window signal 1.0 (counts 1, alarm false) unless given."""
    row = {"vin": vin, "dt": date.fromisoformat(dt), "suspect_cell": 1, "alarm_frames": 0}
    for signal in FULL_SIGNALS:
        row[signal] = False if signal == "alarm" else 1 if signal in ("frame_count", "hours_covered") else 1.0
    row.update(values)
    return row


def daily_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=DAILY_FIXTURE_SCHEMA)


CELL_DAILY_SCHEMA = pa.schema([
    pa.field("vin", pa.string()), pa.field("dt", pa.date32()), pa.field("cell_index", pa.int32()),
    pa.field("cell_dev_mv", pa.float64()), pa.field("cell_dev_rest_mv", pa.float64()),
    pa.field("cell_dev_load_mv", pa.float64()), pa.field("valid_frames", pa.int64()),
])


def cell_rows(vin: str, dt: str, deviations_mv: list[float]) -> list[dict]:
    """One cell_daily row per cell (1-based), rest deviation = the deviation, load deviation = twice it."""
    return [{"vin": vin, "dt": date.fromisoformat(dt), "cell_index": i, "cell_dev_mv": d, "cell_dev_rest_mv": d,
             "cell_dev_load_mv": 2 * d, "valid_frames": 10} for i, d in enumerate(deviations_mv, start=1)]


def cell_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CELL_DAILY_SCHEMA)
