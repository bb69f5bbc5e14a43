"""The Great Expectations suite of the frame contract, built from the rules in `rules.py`.

Great Expectations is imported inside the functions only: importing it takes seconds, and modules
under `pipelines/` must stay cheap to import (DAG parsing, the CLI).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipelines.quality.rules import RANGE_RULES, REQUIRED_COLUMNS, SET_RULES, VIN_PATTERN, frame_metrics
from pipelines.schema import FRAME_SCHEMA

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuite

SUITE_NAME = "frame_contract"
# The ts bounds move with every run (now + clock skew), so the suite names them and each run passes values.
EARLIEST_TS_PARAMETER = "earliest_ts"
LATEST_TS_PARAMETER = "latest_ts"
UNIQUE_KEY = ("vin", "ts")
# A required list column has no scalar of its own in frame_metrics; its presence is its item count,
# which a null list leaves at 0 and a range rule (low >= 1) rejects.
LIST_PRESENCE_METRICS = {"cell_mv": "cell_count"}


def import_great_expectations() -> Any:
    """Import great_expectations quietly: no analytics, no INFO flood from its import-time registry."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def metrics_schema() -> pa.Schema:
    """Columns and Arrow types of `frame_metrics` for a contract-conforming frames table."""
    return frame_metrics(FRAME_SCHEMA.empty_table()).schema


def metrics_for_validation(metrics: pa.Table) -> pd.DataFrame:
    """The metrics table as the pandas frame GE checks: integers widened to int64 (float64 where null).

    GE's pandas `between` check is vectorised only for int64/float64 columns; int8 or uint32 columns
    fall back to a Python call per value, which is ~100x slower.
    """
    columns = []
    for field, column in zip(metrics.schema, metrics.columns, strict=True):
        if pa.types.is_integer(field.type) and field.type != pa.int64():
            column = column.cast(pa.int64())
        columns.append(column)
    return pa.table(columns, names=metrics.column_names).to_pandas()


def suite_parameters(earliest_ts: Any, latest_ts: Any) -> dict[str, dt.datetime]:
    """Runtime values for the suite's $PARAMETERs, as timezone-aware UTC datetimes (naive means UTC)."""
    import pandas as pd

    values = {}
    for name, value in ((EARLIEST_TS_PARAMETER, earliest_ts), (LATEST_TS_PARAMETER, latest_ts)):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        values[name] = stamp.to_pydatetime()
    if values[EARLIEST_TS_PARAMETER] > values[LATEST_TS_PARAMETER]:
        raise ValueError(f"earliest_ts {earliest_ts!r} is after latest_ts {latest_ts!r}")
    return values


def build_frame_suite(name: str = SUITE_NAME) -> ExpectationSuite:
    """One expectation per rule of rules.py, plus the column set, the ts window and (vin, ts) uniqueness."""
    gx = import_great_expectations()
    import great_expectations.expectations as gxe

    schema = metrics_schema()
    columns = set(schema.names)
    expectations: list[Any] = []

    def add(expectation: Any, rule: str, meaning: str) -> None:
        expectation.meta = {"rule": rule}
        expectation.notes = meaning
        expectations.append(expectation)

    # Existence only: types are the Arrow schema's contract, and pandas dtypes no longer carry them
    # (an int8 column with a null arrives as float64).
    add(
        gxe.ExpectTableColumnsToMatchSet(column_set=list(schema.names), exact_match=True),
        "frame_columns",
        "frame_metrics of a frame-contract table: the frame's scalar columns and the derived metrics",
    )
    for column in REQUIRED_COLUMNS:
        if column in columns:
            add(gxe.ExpectColumnValuesToNotBeNull(column=column), "required", f"{column} is required")
        elif not _presence_is_checked(column):
            raise ValueError(f"required column {column!r} has no metric GE could check")

    for rule in RANGE_RULES:
        if rule.column not in columns:
            raise ValueError(f"rule {rule.name} names column {rule.column!r}, which frame_metrics lacks")
        add(
            gxe.ExpectColumnValuesToBeBetween(column=rule.column, min_value=rule.low, max_value=rule.high),
            rule.name,
            rule.meaning,
        )
    for rule in SET_RULES:
        add(
            gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.allowed)),
            rule.name,
            rule.meaning,
        )

    add(
        gxe.ExpectColumnValuesToMatchRegex(column="vin", regex=VIN_PATTERN),
        "vin_format",
        "VIN is 17 characters of ISO 3779 (never I, O or Q)",
    )
    add(
        gxe.ExpectColumnValuesToBeBetween(
            column="ts",
            min_value={"$PARAMETER": EARLIEST_TS_PARAMETER},
            max_value={"$PARAMETER": LATEST_TS_PARAMETER},
        ),
        "ts_window",
        "sample time lies between the earliest accepted date and now plus the allowed clock skew",
    )
    add(
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(UNIQUE_KEY)),
        "unique_vin_ts",
        "one frame per vehicle and sample time",
    )
    # Given to the constructor, not added one by one: add_expectation needs an active data context.
    meta = {"contract": "frame", "source": "pipelines/quality/rules.py"}
    return gx.ExpectationSuite(name=name, expectations=expectations, meta=meta)


def _presence_is_checked(column: str) -> bool:
    """True when a required list column's item count has a range rule that rejects 0 (a null list)."""
    metric = LIST_PRESENCE_METRICS.get(column)
    return metric is not None and any(
        rule.column == metric and rule.low is not None and rule.low >= 1 for rule in RANGE_RULES
    )
