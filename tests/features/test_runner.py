"""The runner: relations by name, clear errors for missing ones and unknown queries."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.features.runner import run_sql
from pipelines.features.sql_files import input_relations, load_sql

from .builders import VIN_A, daily_row, daily_table


def test_a_query_reports_the_relations_it_needs() -> None:
    assert input_relations(load_sql("features/daily_features")) == {"frames", "dates", "suspect_cells"}
    with pytest.raises(ValueError, match="reads as_of_dates: pass them"):
        run_sql("features/windows", daily=daily_table([]))


def test_an_unknown_query_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match="features/daily_features"):
        run_sql("features/nope")


def test_dataframes_are_accepted_like_arrow_tables() -> None:
    daily = daily_table([daily_row(VIN_A, "2026-01-05", frame_count=10)]).to_pandas()
    assert isinstance(daily, pd.DataFrame)
    [row] = run_sql("marts/fleet_daily", daily=daily).to_pylist()
    assert (row["vehicles_reporting"], row["frames"]) == (1, 10)
