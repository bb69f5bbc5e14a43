"""The frame suite is built from rules.py: every rule, bound and required column appears once."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.quality.rules import METRIC_COLUMNS, RANGE_RULES, REQUIRED_COLUMNS, SET_RULES, VIN_PATTERN
from pipelines.quality.suite import (
    EARLIEST_TS_PARAMETER,
    LATEST_TS_PARAMETER,
    LIST_PRESENCE_METRICS,
    build_frame_suite,
    metrics_for_validation,
    metrics_schema,
    suite_parameters,
)
from pipelines.schema import FRAME_SCHEMA


@pytest.fixture(scope="module")
def suite():
    return build_frame_suite()


def _find(suite, expectation_type: str, **kwargs):
    """The suite's expectations of this type whose configuration includes kwargs."""
    return [
        e
        for e in suite.expectations
        if e.expectation_type == expectation_type
        and all(e.configuration.kwargs.get(k) == v for k, v in kwargs.items())
    ]


@pytest.mark.parametrize("rule", RANGE_RULES, ids=lambda r: f"{r.name}:{r.column}")
def test_every_range_rule_is_a_between_expectation_with_its_bounds(suite, rule):
    (expectation,) = _find(suite, "expect_column_values_to_be_between", column=rule.column)
    assert expectation.configuration.kwargs["min_value"] == rule.low
    assert expectation.configuration.kwargs["max_value"] == rule.high
    assert expectation.meta == {"rule": rule.name}
    assert expectation.notes == rule.meaning


@pytest.mark.parametrize("rule", SET_RULES, ids=lambda r: r.name)
def test_every_set_rule_is_an_in_set_expectation(suite, rule):
    (expectation,) = _find(suite, "expect_column_values_to_be_in_set", column=rule.column)
    assert list(expectation.configuration.kwargs["value_set"]) == list(rule.allowed)
    assert expectation.meta == {"rule": rule.name}


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_every_required_column_is_checked(suite, column):
    if column in metrics_schema().names:
        assert len(_find(suite, "expect_column_values_to_not_be_null", column=column)) == 1
    else:  # a list column: a null list has 0 items, which the count metric's range rule rejects
        metric = LIST_PRESENCE_METRICS[column]
        (expectation,) = _find(suite, "expect_column_values_to_be_between", column=metric)
        assert expectation.configuration.kwargs["min_value"] >= 1


def test_vin_regex_ts_window_uniqueness_and_columns(suite):
    assert len(_find(suite, "expect_column_values_to_match_regex", column="vin", regex=VIN_PATTERN)) == 1
    (ts,) = _find(suite, "expect_column_values_to_be_between", column="ts")
    assert ts.configuration.kwargs["min_value"] == {"$PARAMETER": EARLIEST_TS_PARAMETER}
    assert ts.configuration.kwargs["max_value"] == {"$PARAMETER": LATEST_TS_PARAMETER}
    assert len(_find(suite, "expect_compound_columns_to_be_unique", column_list=["vin", "ts"])) == 1
    (columns,) = _find(suite, "expect_table_columns_to_match_set")
    scalars = [f.name for f in FRAME_SCHEMA if not pa.types.is_list(f.type)]
    assert columns.exact_match is True
    assert set(columns.column_set) == set(scalars) | set(METRIC_COLUMNS)


def test_suite_has_nothing_but_the_rules(suite):
    required = [c for c in REQUIRED_COLUMNS if c in metrics_schema().names]
    # rules + required + column set + vin regex + ts window + (vin, ts) uniqueness
    assert len(suite.expectations) == len(RANGE_RULES) + len(SET_RULES) + len(required) + 4


def test_suite_parameters_are_utc_datetimes():
    parameters = suite_parameters(
        "2016-01-01", dt.datetime(2024, 6, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    )
    assert parameters == {
        EARLIEST_TS_PARAMETER: dt.datetime(2016, 1, 1, tzinfo=dt.UTC),
        LATEST_TS_PARAMETER: dt.datetime(2024, 6, 1, 2, tzinfo=dt.UTC),
    }
    with pytest.raises(ValueError, match="after latest_ts"):
        suite_parameters("2025-01-01", "2024-01-01")


def test_metrics_for_validation_widens_integers_for_vectorised_checks(make_frames):
    from pipelines.quality.rules import frame_metrics

    frames = make_frames(3, overrides={"vehicle_state": {1: None}})
    table = metrics_for_validation(frame_metrics(frames))
    assert str(table["alarm_flags"].dtype) == "int64"
    assert str(table["vehicle_state"].dtype) == "float64"  # a null makes it float
    assert str(table["ts"].dtype) == "datetime64[ms, UTC]"
    assert table["cell_max_mv"].tolist() == [3305.0] * 3


def test_importing_the_quality_modules_does_not_import_great_expectations():
    code = (
        "import sys, pipelines.quality.suite, pipelines.quality.runner; "
        "print('great_expectations' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"
