"""Training and inference examples (one per vin and as_of date) from daily rows, and the feature sets' columns."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.features.daily import date_table
from pipelines.features.runner import Relation, run_sql
from pipelines.features.window_signals import feature_columns

KEY_COLUMNS = ["vin", "as_of", "context_days", "suspect_cell"]


def inference_windows(daily: Relation, as_of_dates: Iterable[date | str]) -> pa.Table:
    """Examples to score at the given as_of dates: every vehicle with a daily row among their 14 context days."""
    return run_sql("features/windows", daily=daily, as_of_dates=date_table(as_of_dates, "as_of"))


def training_windows(daily: Relation, as_of_dates: Iterable[date | str]) -> pa.Table:
    """Examples with 14 context days and the label (alarm on any day as_of ... as_of + 13; null if unobserved)."""
    as_of = date_table(as_of_dates, "as_of")
    contexts = run_sql("features/windows", daily=daily, as_of_dates=as_of)
    labels = run_sql("features/window_labels", daily=daily, as_of_dates=as_of)
    joined = contexts.join(labels, keys=["vin", "as_of"], join_type="left outer")
    joined = joined.set_column(joined.column_names.index("label_days"), "label_days",
                               pc.fill_null(joined["label_days"], 0))
    features = [c for c in contexts.column_names if c not in KEY_COLUMNS]
    return joined.select(KEY_COLUMNS + ["label", "label_days"] + features).sort_by([("vin", "ascending"), ("as_of", "ascending")])


def select_feature_set(windows: pa.Table, feature_set: str) -> pa.Table:
    """The key columns, the label when present, and the feature set's columns (`signals6`: the 84 reference values)."""
    label = [c for c in ("label", "label_days") if c in windows.column_names]
    return windows.select(KEY_COLUMNS + label + feature_columns(feature_set))
