"""Run one query under sql/ on an in-process DuckDB over Arrow tables, DataFrames or Parquet files."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from pipelines.features.sql_files import input_relations, load_sql

# A Path or str names Parquet: a file, a glob or a folder; a list names several (e.g. only the touched partitions).
Relation = pa.Table | pd.DataFrame | Path | str | list[Path | str]


def _parquet_glob(location: Path | str) -> str:
    """A folder means every Parquet file below it (hive partitions such as dt=2026-01-05 become columns)."""
    text = str(location)
    return f"{text.rstrip('/')}/**/*.parquet" if Path(text).is_dir() else text


def _register(con: duckdb.DuckDBPyConnection, name: str, relation: Relation) -> None:
    if isinstance(relation, Path | str | list):
        locations = [_parquet_glob(r) for r in relation] if isinstance(relation, list) else _parquet_glob(relation)
        con.read_parquet(locations, hive_partitioning=True, union_by_name=True).create_view(name)
    elif isinstance(relation, pa.Table | pd.DataFrame):
        con.register(name, relation)
    else:
        raise TypeError(f"relation {name!r}: expected an Arrow table, a DataFrame or a Parquet path, got {type(relation).__name__}")


def run_sql(name: str, **relations: Relation) -> pa.Table:
    """Run sql/<name>.sql with each keyword argument visible as a table of that name; the result as Arrow."""
    sql = load_sql(name)
    missing = input_relations(sql) - relations.keys()
    if missing:
        raise ValueError(f"sql/{name}.sql reads {', '.join(sorted(missing))}: pass them as keyword arguments")
    with duckdb.connect(":memory:") as con:
        # hour(ts) and date casts of timestamptz follow the session zone; the lake's dates are UTC dates.
        con.execute("set TimeZone = 'UTC'")
        for relation_name, relation in relations.items():
            _register(con, relation_name, relation)
        return con.sql(sql).to_arrow_table()
