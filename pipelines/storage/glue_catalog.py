"""The AWS catalog (CELLGUARD_BACKEND=aws): the lake's zones as Glue tables, and Athena views where a rule needs SQL.

It mirrors the DuckDB catalog (pipelines/storage/catalog.py): the same seven names to query, over the same objects.

    frames, cell_daily,   Glue tables over frames/, cell_daily/ and alerts/, partitioned by dt
    alerts
    quarantine, manifest  Glue tables over quarantine/rows/ (Parquet) and _manifest/ (JSON), unpartitioned
    daily                 Athena view over the Glue table daily_objects (every object under daily/): one row per
                          (vin, dt), the row computed from frames winning over an imported summary
    predictions           Athena view over predictions_objects: one row per prediction key (a crash can leave a
                          prediction in two objects, see predictions_zone.py)

Partitions are never registered one by one (no MSCK REPAIR, no ADD PARTITION per run): each dt-partitioned table
carries Athena partition projection, dt a date from CELLGUARD_EARLIEST_TS to a week ahead of today, at
`<zone>/dt=yyyy-MM-dd/`, so a partition written a second ago is queryable at once. The views' SQL is written in
DuckDB's dialect and goes through the guarded transpiler (pipelines/features/portable_sql.py), like sql/.

`refresh` is idempotent: a Glue table already as described is not touched (no new table version), and a view
Athena already holds with the same SQL is not re-created; anything else is created or replaced.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pyarrow as pa

from pipelines.config import Settings, load_settings
from pipelines.features.portable_sql import to_trino
from pipelines.schema import (
    ALERT_SCHEMA,
    CELL_DAILY_SCHEMA,
    DAILY_SCHEMA,
    FRAME_SCHEMA,
    MANIFEST_SCHEMA,
    PREDICTION_SCHEMA,
    QUARANTINE_SCHEMA,
)
from pipelines.storage.athena import run_statement
from pipelines.storage.aws import aws_client, aws_session, point_awswrangler_at

PARTITION_KEY = "dt"
PROJECTION_END = "NOW+7DAYS"  # frames may be stamped a day ahead (clock skew), predictions are for the next day
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
_PRESTO_VIEW = ("/* Presto View: ", " */")  # how Athena stores a view's definition in Glue (ViewOriginalText)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZoneTable:
    """One Glue table over one zone of the lake."""

    name: str
    prefix: str  # below the lake root
    schema: pa.Schema  # the columns in the objects (dt, when partitioned, comes from the path instead)
    file_format: str  # parquet | json
    partitioned: bool  # dt=YYYY-MM-DD/ below the prefix
    description: str


@dataclass(frozen=True)
class ZoneView:
    """An Athena view that applies a de-duplication rule to one Glue table."""

    name: str
    table: str
    columns: tuple[str, ...]
    partition_by: tuple[str, ...]  # one row is kept per these columns
    order_by: str  # which row is kept: the first in this order (DuckDB SQL; "$path" is the object's path)


def _without(schema: pa.Schema, name: str) -> pa.Schema:
    return schema.remove(schema.get_field_index(name)) if name in schema.names else schema


TABLES: tuple[ZoneTable, ...] = (
    ZoneTable("frames", "frames", FRAME_SCHEMA, "parquet", True,
              "Validated BMS frames (the frame contract), one partition per UTC date."),
    ZoneTable("daily_objects", "daily", _without(DAILY_SCHEMA, PARTITION_KEY), "parquet", True,
              "Every row of every daily object, computed and imported; query the view `daily` (one row per vin and dt)."),
    ZoneTable("cell_daily", "cell_daily", _without(CELL_DAILY_SCHEMA, PARTITION_KEY), "parquet", True,
              "Per-cell daily deviations from the frame median (the suspect cell's history)."),
    ZoneTable("predictions_objects", "predictions", PREDICTION_SCHEMA, "parquet", True,
              "Every row of every predictions object; query the view `predictions` (one row per prediction key)."),
    ZoneTable("alerts", "alerts", ALERT_SCHEMA, "parquet", True,
              "Alarm episodes (one row per vehicle, feature set and first_as_of = dt), copied from the event store."),
    ZoneTable("quarantine", "quarantine/rows", QUARANTINE_SCHEMA, "parquet", False,
              "Rejected rows with rule, column, value, reason and the raw row."),
    ZoneTable("manifest", "_manifest", MANIFEST_SCHEMA, "json", False,
              "One record per landing object: key, size, sha256, counts, status (ingested_at as ISO-8601 text)."),
)

VIEWS: tuple[ZoneView, ...] = (
    # One row per vin and dt: the row computed from frames (daily/dt=D/frames.parquet) wins over imported summaries.
    ZoneView("daily", "daily_objects", tuple(DAILY_SCHEMA.names), ("vin", PARTITION_KEY),
             '"$path" not like \'%/frames.parquet\', "$path"'),
    # One row per prediction key, with dt (= as_of) so that a filter on it prunes partitions.
    ZoneView("predictions", "predictions_objects", (*PREDICTION_SCHEMA.names, PARTITION_KEY),
             (PARTITION_KEY, "vin", "as_of", "model_version", "source", "request_id"), '"$path"'),
)


@dataclass(frozen=True)
class GlueRefresh:
    """What one refresh did: tables created, updated or left as they were; views submitted to Athena or kept."""

    database: str
    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    views_submitted: tuple[str, ...]
    views_unchanged: tuple[str, ...]

    @property
    def location(self) -> str:
        """Where the catalog is, as the DAG tasks report it."""
        return f"glue://{self.database}"


# ---------------------------------------------------------------------------------------------- types and tables


def athena_type(arrow_type: pa.DataType, json_text: bool = False) -> str:
    """The Glue/Athena column type an Arrow type is read as (`json_text`: timestamps stay the text JSON holds)."""
    if pa.types.is_list(arrow_type):
        return f"array<{athena_type(arrow_type.value_type, json_text)}>"
    if pa.types.is_map(arrow_type):
        return f"map<{athena_type(arrow_type.key_type, json_text)},{athena_type(arrow_type.item_type, json_text)}>"
    if pa.types.is_struct(arrow_type):
        return "struct<" + ",".join(f"{f.name}:{athena_type(f.type, json_text)}" for f in arrow_type) + ">"
    if pa.types.is_timestamp(arrow_type):
        return "string" if json_text else "timestamp"
    # Unsigned Parquet integers are read into the next wider signed type (uint16 cell millivolts reach 65535).
    simple = {pa.string(): "string", pa.large_string(): "string", pa.bool_(): "boolean", pa.int8(): "tinyint",
              pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint", pa.uint8(): "smallint",
              pa.uint16(): "int", pa.uint32(): "bigint", pa.float32(): "float", pa.float64(): "double",
              pa.date32(): "date"}
    if arrow_type not in simple:
        raise ValueError(f"no Athena type for the Arrow type {arrow_type}")
    return simple[arrow_type]


def projection_start(settings: Settings) -> str:
    """The first projected dt: the date of CELLGUARD_EARLIEST_TS (nothing older passes ingest)."""
    try:
        return date.fromisoformat(settings.earliest_ts[:10]).isoformat()
    except ValueError:
        raise ValueError(f"CELLGUARD_EARLIEST_TS must start with a date (YYYY-MM-DD) for the Glue tables' partition "
                         f"projection, not {settings.earliest_ts!r}") from None


def table_location(settings: Settings, table: ZoneTable) -> str:
    """The S3 folder a table reads, with the trailing slash Glue stores."""
    return f"{settings.lake_uri.rstrip('/')}/{table.prefix}/"


def projection_parameters(table: ZoneTable, location: str, settings: Settings) -> dict[str, str]:
    """The table parameters that make Athena project the dt partitions instead of looking them up."""
    if not table.partitioned:
        return {"projection.enabled": "false"}
    return {
        "projection.enabled": "true",
        f"projection.{PARTITION_KEY}.type": "date",
        f"projection.{PARTITION_KEY}.format": "yyyy-MM-dd",
        f"projection.{PARTITION_KEY}.range": f"{projection_start(settings)},{PROJECTION_END}",
        "storage.location.template": f"{location}{PARTITION_KEY}=${{{PARTITION_KEY}}}",
    }


def desired_definition(table: ZoneTable, settings: Settings) -> dict[str, Any]:
    """What the Glue table should hold, in the shape `glue_definition` reads from Glue."""
    location = table_location(settings, table)
    return {
        "columns": [(f.name, athena_type(f.type, json_text=table.file_format == "json")) for f in table.schema],
        "partition_keys": [(PARTITION_KEY, "date")] if table.partitioned else [],
        "location": location,
        "serde": PARQUET_SERDE if table.file_format == "parquet" else JSON_SERDE,
        "parameters": projection_parameters(table, location, settings),
        "description": table.description,
    }


def glue_definition(glue_table: dict[str, Any]) -> dict[str, Any]:
    """The parts of a Glue table (as get_table returns it) that CellGuard decides."""
    storage = glue_table.get("StorageDescriptor", {})
    parameters = glue_table.get("Parameters", {})
    return {
        "columns": [(c["Name"], c["Type"]) for c in storage.get("Columns", [])],
        "partition_keys": [(c["Name"], c["Type"]) for c in glue_table.get("PartitionKeys", [])],
        "location": storage.get("Location"),
        "serde": storage.get("SerdeInfo", {}).get("SerializationLibrary"),
        "parameters": {k: v for k, v in parameters.items() if k.startswith("projection.") or k == "storage.location.template"},
        "description": glue_table.get("Description"),
    }


def _write_table(table: ZoneTable, definition: dict[str, Any], database: str, session: Any) -> None:
    """Create or replace one Glue table with awswrangler (no table version is archived)."""
    import awswrangler as wr

    arguments: dict[str, Any] = {
        "database": database, "table": table.name, "path": definition["location"],
        "columns_types": dict(definition["columns"]), "partitions_types": dict(definition["partition_keys"]) or None,
        "description": table.description, "mode": "overwrite", "catalog_versioning": False, "boto3_session": session,
    }
    if table.partitioned:
        parameters = definition["parameters"]
        arguments["athena_partition_projection_settings"] = {
            "projection_types": {PARTITION_KEY: "date"},
            "projection_ranges": {PARTITION_KEY: parameters[f"projection.{PARTITION_KEY}.range"]},
            "projection_formats": {PARTITION_KEY: parameters[f"projection.{PARTITION_KEY}.format"]},
            "projection_storage_location_template": parameters["storage.location.template"],
        }
    if table.file_format == "json":
        wr.catalog.create_json_table(**arguments, serde_library=JSON_SERDE)
    else:
        wr.catalog.create_parquet_table(**arguments, compression="zstd")


# ---------------------------------------------------------------------------------------------- views


def view_sql(view: ZoneView) -> str:
    """The view's query in DuckDB's dialect (the one sql/ is written in): the first row per key, by `order_by`."""
    ranked_columns = "".join(f"    {name},\n" for name in view.columns)
    kept_columns = ",\n".join(f"  {name}" for name in view.columns)
    return (f"with ranked as (\n"
            f"  select\n{ranked_columns}"
            f"    row_number() over (partition by {', '.join(view.partition_by)} order by {view.order_by}) as copy_number\n"
            f"  from {view.table}\n"
            f")\n"
            f"select\n{kept_columns}\n"
            f"from ranked\n"
            f"where copy_number = 1")


def view_query(view: ZoneView) -> str:
    """The view's query as Athena runs it, through the guarded transpiler."""
    return to_trino(view_sql(view), source=f"glue_catalog view {view.name}")


def view_ddl(view: ZoneView) -> str:
    """The Athena statement that creates or replaces the view."""
    return f'CREATE OR REPLACE VIEW "{view.name}" AS\n{view_query(view)}'


def stored_view_query(glue_table: dict[str, Any] | None) -> str | None:
    """The query of a view as Athena stored it in Glue (`/* Presto View: <base64 JSON> */`); None if not a view."""
    if not glue_table or glue_table.get("TableType") != "VIRTUAL_VIEW":
        return None
    text = glue_table.get("ViewOriginalText", "")
    if not (text.startswith(_PRESTO_VIEW[0]) and text.endswith(_PRESTO_VIEW[1])):
        return None
    try:
        return json.loads(base64.b64decode(text[len(_PRESTO_VIEW[0]):-len(_PRESTO_VIEW[1])]))["originalSql"]
    except (ValueError, KeyError, TypeError):
        return None


def _submit_ddl(statement: str, database: str, settings: Settings, session: Any) -> str:
    """Run one DDL statement on Athena and wait for it; returns the query execution id."""
    return run_statement(statement, replace(settings, glue_database=database),
                         aws_client("athena", settings, session))["QueryExecutionId"]


# ---------------------------------------------------------------------------------------------- refresh


def _get_table(glue: Any, database: str, name: str) -> dict[str, Any] | None:
    try:
        return glue.get_table(DatabaseName=database, Name=name)["Table"]
    except glue.exceptions.EntityNotFoundException:
        return None


def refresh(settings: Settings | None = None) -> GlueRefresh:
    """Make the Glue database, tables and Athena views match the lake's zones; touch only what differs."""
    import awswrangler as wr

    settings = settings or load_settings()
    if not settings.lake_uri.startswith("s3://"):
        raise ValueError(f"the Glue catalog describes an S3 lake: CELLGUARD_LAKE_URI must be s3://bucket/prefix "
                         f"when CELLGUARD_BACKEND=aws, not {settings.lake_uri!r}")
    session = aws_session(settings)
    point_awswrangler_at(settings)
    glue = aws_client("glue", settings, session)
    database = settings.glue_database
    wr.catalog.create_database(name=database, exist_ok=True, boto3_session=session,
                               description="CellGuard: the lake's zones (tables) and their de-duplicated views.")

    created, updated, unchanged = [], [], []
    for table in TABLES:
        wanted = desired_definition(table, settings)
        existing = _get_table(glue, database, table.name)
        if existing is not None and glue_definition(existing) == wanted:
            unchanged.append(table.name)
            continue
        _write_table(table, wanted, database, session)
        (created if existing is None else updated).append(table.name)

    submitted, kept = [], []
    for view in VIEWS:
        if (stored_view_query(_get_table(glue, database, view.name)) or "").strip() == view_query(view).strip():
            kept.append(view.name)
            continue
        query_id = _submit_ddl(view_ddl(view), database, settings, session)
        log.info("Athena view %s.%s (re)created by query %s", database, view.name, query_id)
        submitted.append(view.name)
    return GlueRefresh(database, tuple(created), tuple(updated), tuple(unchanged), tuple(submitted), tuple(kept))
