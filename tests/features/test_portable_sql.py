"""The portability guard: every query under sql/ transpiles to Trino, and DuckDB-only SQL is refused by name."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlglot

from pipelines.features import portable_sql
from pipelines.features.portable_sql import NonPortableSQLError, check_all, to_trino, trino_sql
from pipelines.features.sql_files import SQL_DIR, all_sql_files
from pipelines.features.window_sql import WINDOW_FILE, render

EXPECTED_QUERIES = {"features/cell_daily", "features/suspect_cells", "features/daily_features",
                    "features/windows", "features/window_labels", "marts/fleet_daily"}


def test_every_query_under_sql_is_portable_to_athena() -> None:
    translated = check_all()
    names = {p.relative_to(SQL_DIR).with_suffix("").as_posix() for p in translated}
    assert names >= EXPECTED_QUERIES
    for path, trino in translated.items():
        assert sqlglot.parse_one(trino, read="trino") is not None, path


def test_queries_follow_the_sql_conventions() -> None:
    for path in all_sql_files():
        text = path.read_text()
        code = "\n".join(line.split("--")[0] for line in text.splitlines())
        assert code == code.lower(), f"{path}: SQL is lowercase"
        assert code.lstrip().startswith("with"), f"{path}: one CTE per step, then the final select"
        assert len(sqlglot.parse(text, read="duckdb")) == 1, f"{path}: one query per file"


@pytest.mark.parametrize(("sql", "named"), [
    ("select vin, list_stddev_samp(cell_mv) as spread from frames", "list_stddev_samp()"),
    ("select vin, median(pack_voltage_v) as v from frames group by vin", "median()"),
    ("select time_bucket(interval '1 hour', ts) as hour_start from frames", "time_bucket()"),
    ("select len(cell_mv) as cells from frames", "len()"),
    ("select epoch_ms(ts) as ms from frames", "epoch_ms()"),
    ("select quantile_cont(pack_voltage_v, 0.95) as p95 from frames", "quantile_cont()"),
    ("select vin, count(*) as n from frames group by all", "GROUP BY ALL"),
    ("select * exclude (cell_mv) from frames", "* EXCLUDE"),
    ("select * replace (pack_voltage_v * 1000 as pack_voltage_v) from frames", "* REPLACE"),
    ("select vin from frames order by all", "ORDER BY ALL"),
    ("select f.vin from frames as f positional join dates as d", "POSITIONAL JOIN"),
    ("select cell_health(cell_mv) as h from frames", "cell_health() is unknown"),
    ("select list_transform(cell_mv, lambda x: x + 1) as l from frames", "lambdas"),
])
def test_duckdb_only_sql_is_refused_by_name(sql: str, named: str) -> None:
    with pytest.raises(NonPortableSQLError) as error:
        to_trino(sql, source="sql/features/bad.sql")
    assert "sql/features/bad.sql" in str(error.value) and named in str(error.value)


@pytest.mark.parametrize(("sql", "named"), [
    ("select median(x) as m from t", "percentile_cont()"),  # sqlglot writes PERCENTILE_CONT: Trino has none
    ("select time_bucket(interval '1 hour', ts) as h from t", "date_bin()"),
    ("select list_stddev_samp(l) as s from t", "list_stddev_samp() is unknown"),
    ("select len(l) as n from t", "length()"),
])
def test_the_trino_side_check_catches_rewrites_on_its_own(monkeypatch: pytest.MonkeyPatch, sql: str, named: str) -> None:
    monkeypatch.setattr(portable_sql, "DUCKDB_ONLY_FUNCTIONS", {})
    monkeypatch.setattr(portable_sql, "DUCKDB_ONLY_PREFIXES", {})
    with pytest.raises(NonPortableSQLError, match=named.replace("(", r"\(").replace(")", r"\)")):
        to_trino(sql)


def test_epoch_ms_is_caught_only_in_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # sqlglot turns epoch_ms(ts) into FROM_UNIXTIME(ts / 1000): valid Trino, the opposite conversion
    monkeypatch.setattr(portable_sql, "DUCKDB_ONLY_FUNCTIONS", {})
    assert "FROM_UNIXTIME" in to_trino("select epoch_ms(ts) as ms from t")


def test_a_bad_file_added_under_sql_fails_the_check_with_its_name(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.sql", tmp_path / "fleet_median.sql"
    good.write_text("with v as (select dt, count(*) as n from daily group by dt)\nselect dt, n from v\n")
    bad.write_text("with v as (select dt, median(cell_range_mean_mv) as m from daily group by dt)\nselect * from v\n")
    with pytest.raises(NonPortableSQLError) as error:
        check_all([good, bad])
    assert "fleet_median.sql" in str(error.value) and "median()" in str(error.value)
    assert "good.sql" not in str(error.value)


def test_one_query_per_file() -> None:
    with pytest.raises(NonPortableSQLError, match="2 statements"):
        to_trino("select 1 as a; select 2 as b", source="two.sql")


def test_trino_text_of_a_named_query() -> None:
    text = trino_sql("features/daily_features")
    assert "BITWISE_AND(f.alarm_flags, 1024)" in text
    assert "ARRAY_MAX(FILTER(f.cell_mv, mv -> NOT mv IS NULL))" in text
    cells = trino_sql("features/cell_daily")
    assert "ARRAY_SORT(FILTER(f.cell_mv, mv -> NOT mv IS NULL))" in cells
    assert "SEQUENCE(1, CAST(CARDINALITY(cell_mv) AS BIGINT))" in cells and "CROSS JOIN UNNEST(fm.cell_indexes)" in cells


# The null filter is the one lambda allowed: DuckDB 2 reads `lambda x:`, sqlglot writes Trino's `x ->`.
@pytest.mark.parametrize(("sql", "trino"), [
    ("select filter(cell_mv, lambda x: x is not null) as v from frames", "FILTER(cell_mv, x -> NOT x IS NULL)"),
    ("select list_max(filter(cell_mv, lambda mv: mv is not null)) as m from frames",
     "ARRAY_MAX(FILTER(cell_mv, mv -> NOT mv IS NULL))"),
    ("select list_min(filter(probe_temp_c, lambda c: not c is null)) as m from frames",
     "ARRAY_MIN(FILTER(probe_temp_c, c -> NOT c IS NULL))"),
    ("select array_sort(filter(cell_mv, lambda x: x is not null))[1] as lowest from frames",
     "ARRAY_SORT(FILTER(cell_mv, x -> NOT x IS NULL))[1]"),
])
def test_the_null_filter_and_extremes_over_it_are_portable(sql: str, trino: str) -> None:
    assert trino in to_trino(sql)


@pytest.mark.parametrize(("sql", "named"), [
    ("select filter(cell_mv, lambda x: x > 3000) as v from frames", "lambdas"),  # only the null filter
    ("select filter(cell_mv, lambda x: y is not null) as v from frames", "lambdas"),  # not its own variable
    ("select filter(cell_mv, x -> x is not null) as v from frames", "'->' is refused by DuckDB 2"),
    ("select list_max(cell_mv) as m from frames", "list_max() / array_max() over a list that may hold nulls"),
    ("select list_min(filter(cell_mv, lambda x: x > 3000)) as m from frames", "list_min() / array_min()"),
    ("select list_filter(cell_mv, lambda x: x is not null) as v from frames", "list_filter() is DuckDB-only"),
])
def test_other_lambdas_and_extremes_over_nullable_lists_are_refused(sql: str, named: str) -> None:
    with pytest.raises(NonPortableSQLError, match=named.replace("(", r"\(").replace(")", r"\)")):
        to_trino(sql)


def test_duckdb_reads_the_null_filter_as_trino_documents_it() -> None:
    # Trino (docs, functions/array): filter keeps the items its function is true for, in order; array_max /
    # array_min of an empty array are NULL; subscripts are 1-based. The same on DuckDB:
    [row] = duckdb.sql("""
        select filter(l, lambda x: x is not null) as kept,
               list_max(filter(l, lambda x: x is not null)) as highest,
               list_min(filter(e, lambda x: x is not null)) as none_left,
               array_sort(filter(l, lambda x: x is not null))[1] as lowest,
               generate_series(1, cast(cardinality(l) as bigint)) as indexes
        from (select [3702, null, 3650, 3700]::usmallint[] as l, [null]::usmallint[] as e)
    """).fetchall()
    assert row == ([3702, 3650, 3700], 3702, None, 3650, [1, 2, 3, 4])


def test_window_query_is_generated_from_the_signal_list() -> None:
    assert WINDOW_FILE.read_text() == render(), "sql/features/windows.sql is stale: run `python -m pipelines.features.window_sql`"
