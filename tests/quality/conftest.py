"""Small frame-contract tables for the quality tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pytest

from pipelines.schema import FRAME_SCHEMA

VINS = ("LSVAA4180E2100001", "LFV3A28W3L3651234")  # valid ISO 3779 VINs
BASE_TS = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
EARLIEST_TS = "2016-01-01"
LATEST_TS = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def build_frames(n: int = 6, overrides: Mapping[str, Mapping[int, Any]] | None = None) -> pa.Table:
    """n clean frames (two vehicles, 10 s apart, 4 cells, 2 probes); overrides = {column: {row: value}}."""
    data: dict[str, list[Any]] = {
        "vin": [VINS[i % len(VINS)] for i in range(n)],
        "ts": [BASE_TS + dt.timedelta(seconds=10 * i) for i in range(n)],
        "vehicle_state": [1] * n,
        "charge_state": [3] * n,
        "speed_kmh": [42.0] * n,
        "odometer_km": [12_345.6] * n,
        "pack_voltage_v": [352.8] * n,
        "pack_current_a": [12.5] * n,
        "soc_pct": [65.0] * n,
        "insulation_kohm": [2_000.0] * n,
        "cell_mv": [[3_301, 3_305, 3_298, 3_302] for _ in range(n)],
        "probe_temp_c": [[25, 27] for _ in range(n)],
        "alarm_level": [0] * n,
        "alarm_flags": [0] * n,
    }
    for column, rows in (overrides or {}).items():
        for row, value in rows.items():
            data[column][row] = value
    return pa.table(data, schema=FRAME_SCHEMA)


@pytest.fixture
def make_frames() -> Callable[..., pa.Table]:
    """The frames builder: make_frames(n, overrides={column: {row: value}})."""
    return build_frames


@pytest.fixture
def validate() -> Callable[..., Any]:
    """validate_frames with the test window: validate(frames, batch_name="batch", docs_dir=None, **kwargs)."""
    from pipelines.quality.runner import validate_frames

    def run(frames: pa.Table, batch_name: str = "batch", docs_dir: Any = None, **kwargs: Any) -> Any:
        return validate_frames(frames, batch_name, docs_dir, EARLIEST_TS, LATEST_TS, **kwargs)

    return run
