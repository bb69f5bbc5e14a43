"""Synthetic windows for the training tests: the label follows the cell voltage spread of the day before as_of."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from pipelines.features.window_signals import SIGNALS6, feature_columns, lag_column

FIRST_AS_OF = date(2026, 1, 1)
SPREAD_ALARM_V = 0.05  # label 1 when cell_max_voltage_lag1 - cell_min_voltage_lag1 exceeds this


def synthetic_windows(vehicles: int = 12, days: int = 120, seed: int = 7, unlabelled_days: int = 13) -> pd.DataFrame:
    """One row per vehicle and as_of with the 84 signals6 columns (about 10% NaN) and a feature-driven label.

    The last `unlabelled_days` as_of dates carry a NULL label (their horizon is not over).
    """
    rng = np.random.default_rng(seed)
    n = vehicles * days
    base = {"total_voltage": 350.0, "total_current": 20.0, "cell_max_voltage": 3.70, "cell_min_voltage": 3.66,
            "max_temperature": 30.0, "min_temperature": 25.0}
    scale = {"total_voltage": 10.0, "total_current": 15.0, "cell_max_voltage": 0.02, "cell_min_voltage": 0.02,
             "max_temperature": 3.0, "min_temperature": 3.0}
    columns: dict[str, np.ndarray] = {}
    for lag in range(14, 0, -1):
        spread = rng.uniform(0.0, 0.1, n)
        for signal in SIGNALS6:
            columns[lag_column(signal, lag)] = base[signal] + scale[signal] * rng.standard_normal(n)
        columns[lag_column("cell_max_voltage", lag)] = columns[lag_column("cell_min_voltage", lag)] + spread
    frame = pd.DataFrame({c: columns[c] for c in feature_columns("signals6")})
    missing = rng.random(frame.shape) < 0.10
    missing[:, [frame.columns.get_loc(lag_column(s, 1)) for s in ("cell_max_voltage", "cell_min_voltage")]] = False
    frame = frame.mask(missing)
    spread1 = frame[lag_column("cell_max_voltage", 1)] - frame[lag_column("cell_min_voltage", 1)]
    vins = [f"LSVTEST{i:010d}" for i in range(vehicles)]
    as_of = [FIRST_AS_OF + timedelta(days=d) for d in range(days)]
    keys = pd.DataFrame({"vin": np.repeat(vins, days), "as_of": np.tile(as_of, vehicles)})
    label = pd.array((spread1 > SPREAD_ALARM_V).astype(int), dtype="Int64")
    unlabelled = keys["as_of"] > FIRST_AS_OF + timedelta(days=days - 1 - unlabelled_days)
    label[unlabelled.to_numpy()] = pd.NA
    return pd.concat([keys, pd.DataFrame({"label": label}), frame], axis=1)
