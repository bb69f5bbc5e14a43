"""The local catalog: a DuckDB file holding only views over the lake's Parquet, rebuilt atomically (`refresh_catalog`
chooses it or, when CELLGUARD_BACKEND=aws, the Glue catalog)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.schema import MANIFEST_SCHEMA
from pipelines.storage.lake import Lake

# view name -> (lake prefix, glob below it, reader). Views over an empty zone are defined on an empty schema.
VIEWS: dict[str, tuple[str, str, str]] = {
    "frames": ("frames", "dt=*/*.parquet", "parquet"),
    "daily": ("daily", "dt=*/*.parquet", "parquet"),
    "cell_daily": ("cell_daily", "dt=*/*.parquet", "parquet"),
    "quarantine": ("quarantine/rows", "*.parquet", "parquet"),
    "manifest": ("_manifest", "*.json", "json"),
    "predictions": ("predictions", "dt=*/*.parquet", "parquet"),
    "alerts": ("alerts", "dt=*/*.parquet", "parquet"),
}

EMPTY_DEFINITIONS = {
    "frames": "select null::varchar as vin, null::timestamptz as ts, null::date as dt where false",
    "daily": "select null::varchar as vin, null::date as dt, null::boolean as alarm where false",
    "cell_daily": "select null::varchar as vin, null::date as dt, null::integer as cell_index where false",
    "quarantine": "select null::varchar as source_key, null::varchar as rule, null::varchar as reason where false",
    "manifest": "select null::varchar as key, null::varchar as status where false",
    "predictions": ("select null::varchar as vin, null::date as as_of, null::varchar as model_version, "
                    "null::varchar as feature_set, null::double as probability, null::boolean as alarm, "
                    "null::double as threshold, null::integer as suspect_cell, "
                    "null::struct(feature varchar, contribution double, value double)[] as reasons, "
                    "null::varchar as source, null::varchar as request_id, null::timestamptz as created_at, "
                    "null::date as dt where false"),
    "alerts": ("select null::varchar as vin, null::varchar as feature_set, null::date as first_as_of, "
               "null::varchar as model_version, null::double as probability, null::double as threshold, "
               "null::integer as suspect_cell, null::timestamptz as created_at, null::timestamptz as notified_at, "
               "null::varchar as channel, null::date as dt where false"),
}


def _duckdb_type(arrow_type: pa.DataType) -> str:
    """DuckDB's name for the few Arrow types the manifest uses."""
    if pa.types.is_map(arrow_type):
        return f"MAP(VARCHAR, {_duckdb_type(arrow_type.item_type)})"
    if pa.types.is_list(arrow_type):
        return f"{_duckdb_type(arrow_type.value_type)}[]"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    return {pa.string(): "VARCHAR", pa.int64(): "BIGINT"}[arrow_type]


def _view_sql(lake: Lake, name: str) -> str:
    prefix, pattern, reader = VIEWS[name]
    if not lake.list(prefix):
        return EMPTY_DEFINITIONS[name]
    location = f"{lake.path(prefix)}/{pattern}" if lake.is_local else f"{lake.url(prefix)}/{pattern}"
    if reader == "json":
        # An explicit schema: inferring one over thousands of small JSON files exhausts DuckDB's memory.
        columns = ", ".join(f"'{f.name}': '{_duckdb_type(f.type)}'" for f in MANIFEST_SCHEMA)
        return f"select * from read_json('{location}', format='unstructured', columns={{{columns}}})"
    if name in ("daily", "cell_daily"):
        # These files carry dt themselves. A date's computed row wins over an imported summary of the same vehicle-day.
        return (f"select * exclude (filename) from read_parquet('{location}', union_by_name=true, filename=true) "
                "qualify row_number() over (partition by vin, dt order by filename not like '%/frames.parquet', filename) = 1"
                if name == "daily" else f"select * from read_parquet('{location}', union_by_name=true)")
    if name == "predictions":
        # The contract's columns plus the partition's dt (= as_of; a filter on it prunes files, as on Athena, and
        # reaches the files through the window because dt leads its partition).
        # A crash between writing an object and stamping its rows in the event store can leave a prediction in
        # two objects (pipelines/storage/predictions_zone.py): one row per key is kept.
        return (f"select * exclude (filename) from read_parquet('{location}', union_by_name=true, filename=true, "
                "hive_partitioning=true) "
                "qualify row_number() over (partition by dt, vin, as_of, model_version, source, request_id "
                "order by filename) = 1")
    partitioning = ", hive_partitioning=true" if "dt=" in pattern else ""
    return f"select * from read_parquet('{location}', union_by_name=true{partitioning})"


def build_catalog(lake: Lake, catalog_path: Path) -> Path:
    """Write a fresh catalog next to the old one, then rename it over: readers never see a half-built file."""
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = catalog_path.with_name(f".{catalog_path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    # v1.0.0 storage keeps the file readable by the duckdb CLI (duckdb-cli on PyPI trails the Python package).
    with duckdb.connect(str(tmp), config={"storage_compatibility_version": "v1.0.0"}) as con:
        for name in VIEWS:
            con.execute(f"create or replace view {name} as {_view_sql(lake, name)}")
    os.replace(tmp, catalog_path)
    return catalog_path


def connect_read_only(catalog_path: Path) -> duckdb.DuckDBPyConnection:
    """How every reader (API, dashboards, analysts) opens the catalog."""
    return duckdb.connect(str(catalog_path), read_only=True)


def refresh_local_catalog() -> Path | None:
    """Rebuild the catalog the settings point at (local backend only; on AWS, Glue is the catalog)."""
    from pipelines.config import load_settings

    settings = load_settings()
    if settings.backend != "local":
        return None
    return build_catalog(Lake.from_settings(settings), settings.catalog_path)


def refresh_catalog() -> str:
    """Refresh the catalog of the configured backend; returns where it is (the DuckDB file, or glue://database).

    local: the DuckDB file of views. aws: the Glue tables and Athena views (pipelines/storage/glue_catalog.py),
    touched only where they differ, so every DAG run may call it."""
    from pipelines.config import load_settings

    settings = load_settings()
    if settings.backend == "aws":
        from pipelines.storage.glue_catalog import refresh

        return refresh(settings).location
    return str(build_catalog(Lake.from_settings(settings), settings.catalog_path))
