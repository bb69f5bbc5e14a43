"""A synthetic daily zone where faulty vehicles' cell range grows after an onset day until the BMS alarms."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake

FIRST_DAY = date(2026, 1, 1)
ALARM_RANGE_MV = 80.0


def write_synthetic_daily(lake: Lake, vehicles: int = 24, days: int = 90, seed: int = 3) -> dict[str, int | None]:
    """Write daily rows for every vehicle and day; returns each vin's onset day offset (None for healthy)."""
    rng = np.random.default_rng(seed)
    vins = [f"LSVSYN{i:011d}" for i in range(vehicles)]
    onsets = {vin: (int(rng.integers(10, days - 20)) if i % 2 == 0 else None) for i, vin in enumerate(vins)}
    for offset in range(days):
        day = FIRST_DAY + timedelta(days=offset)
        rows = []
        for vin in vins:
            onset = onsets[vin]
            drift = 0.0 if onset is None or offset < onset else 4.0 * (offset - onset)
            cell_range = 20.0 + drift + rng.normal(0, 3)
            rows.append({
                "vin": vin, "dt": day, "total_voltage": 350 + rng.normal(0, 5), "total_current": 10 + rng.normal(0, 5),
                "cell_max_voltage": 3.7 + cell_range / 2000, "cell_min_voltage": 3.7 - cell_range / 2000,
                "max_temperature": 30 + rng.normal(0, 2), "min_temperature": 25 + rng.normal(0, 2),
                "cell_range_mean_mv": cell_range, "cell_range_rest_max_mv": cell_range * 1.2,
                "suspect_cell_dev_mv": -drift / 2, "frame_count": 1000, "hours_covered": 10,
                "alarm": bool(cell_range * 1.2 > ALARM_RANGE_MV), "alarm_frames": int(cell_range * 1.2 > ALARM_RANGE_MV),
            })
        daily_zone.write_computed(lake, day, pa.Table.from_pylist(rows, DAILY_SCHEMA), CELL_DAILY_SCHEMA.empty_table())
    return onsets
