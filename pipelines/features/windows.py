"""Training and inference examples (one per vin and as_of date) from daily rows, and the feature sets' columns."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pyarrow as pa

from pipelines.features.daily import date_table
from pipelines.features.runner import Relation, run_sql
from pipelines.features.window_signals import feature_columns

KEY_COLUMNS = ["vin", "as_of", "context_days", "suspect_cell"]


def training_windows(daily: Relation, as_of_dates: Iterable[date | str]) -> pa.Table:
    """Examples with 14 context days and the label (alarm on any day as_of ... as_of + 13; null if unobserved)."""
    return run_sql("features/training_windows", daily=daily, as_of_dates=date_table(as_of_dates, "as_of"))


def inference_windows(daily: Relation, as_of_dates: Iterable[date | str]) -> pa.Table:
    """Examples to score at the given as_of dates: every vehicle with a daily row among their 14 context days."""
    return run_sql("features/inference_windows", daily=daily, as_of_dates=date_table(as_of_dates, "as_of"))


def select_feature_set(windows: pa.Table, feature_set: str) -> pa.Table:
    """The key columns, the label when present, and the feature set's columns (`signals6`: the 84 reference values)."""
    label = [c for c in ("label", "label_days") if c in windows.column_names]
    return windows.select(KEY_COLUMNS + label + feature_columns(feature_set))
