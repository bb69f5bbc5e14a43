"""Run the sql/ queries on Athena (CELLGUARD_BACKEND=aws): daily rows for given dates, written into the lake's zones.

The SQL is the same files `run_sql` runs on DuckDB. Each input relation a query reads (`frames`, `dates`,
`cell_daily`, `suspect_cells`) becomes a CTE put in front of it, over the Glue tables of
pipelines/storage/glue_catalog.py; the whole query, bindings included, then goes through the guarded transpiler
(portable_sql.to_trino), so what Athena receives is checked Trino text. Per chunk of dates:

1. CTAS: cell_daily.sql into a per-run temporary table, Parquet (zstd) under a run-id staging prefix of the lake;
2. UNLOAD: daily_features.sql, its suspect_cells read from the Glue cell_daily table for the trailing days and
   from the temporary table for the chunk's dates, Parquet (zstd) under the same staging prefix;
3. the staged files are read back, checked and written to `daily/dt=D/frames.parquet` and
   `cell_daily/dt=D/frames.parquet` by daily_zone.write_computed, as the local path writes them;
4. the temporary table and the staging prefix are removed, also when a step failed.

Nothing in the zones changes until both queries succeeded and every date with frames got daily rows, so a failed
run leaves the previous rows, and a re-run (an Airflow retry keeps its run id) replaces them with the same objects.
Athena never writes into a zone itself: UNLOAD and CTAS need an empty destination and name their files themselves,
while every reader of the zones expects one `frames.parquet` per date.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot.tokens import TokenType

from pipelines.config import Settings
from pipelines.features.daily import SUSPECT_TRAILING_DAYS
from pipelines.features.portable_sql import to_trino
from pipelines.features.sql_files import input_relations, load_sql
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.storage import daily_zone
from pipelines.storage.athena import run_statement
from pipelines.storage.aws import aws_client, aws_session, resource_name
from pipelines.storage.lake import Lake

PARTITION_KEY = "dt"
STAGING_PREFIX = "_athena/features"  # below the lake root; removed after each chunk
TEMP_TABLE_PREFIX = "cellguard_tmp_cell_daily"
# The contract's Arrow types as SQL types both engines name alike.
SQL_TYPES = {pa.string(): "varchar", pa.int32(): "integer", pa.int64(): "bigint", pa.float64(): "double",
             pa.bool_(): "boolean", pa.date32(): "date"}
_STAGED_OBJECT = re.compile(r"(?:^|/)dt=(?P<dt>\d{4}-\d{2}-\d{2})/[^/]+$")

log = logging.getLogger(__name__)


class AthenaOutputMissing(RuntimeError):
    """Athena reported success but wrote no daily rows for dates that have frames: its tables do not see them.

    Retrying cannot help (the same catalog gives the same answer), so the DAG fails the task without retries."""


# ---------------------------------------------------------------------------------------------- relations and SQL


def sql_date(day: date) -> str:
    """A date literal both engines read."""
    return f"date '{day.isoformat()}'"


def glue_table(database: str, name: str) -> str:
    """A Glue table as a query names it: qualified, so a CTE of the same name never hides it."""
    return f'"{database}"."{name}"'


def dates_relation(days: Iterable[date]) -> str:
    """The `dates(dt)` relation as a query of literal rows (what `date_table` registers on DuckDB)."""
    rows = ", ".join(f"({sql_date(d)})" for d in sorted(set(days)))
    return f"select dt from (values {rows}) as dates_values (dt)"


def frames_relation(database: str, days: Iterable[date]) -> str:
    """The frames of these dates: a filter on the partition column, so Athena reads only their partitions."""
    listed = ", ".join(sql_date(d) for d in sorted(set(days)))
    return f"select * from {glue_table(database, 'frames')} where {PARTITION_KEY} in ({listed})"


def cell_history_relation(database: str, temp_table: str, days: list[date]) -> str:
    """cell_daily for suspect_cells: the zone's rows of the trailing days, the chunk's own rows from the temporary table."""
    columns = ", ".join(CELL_DAILY_SCHEMA.names)
    first = min(days) - timedelta(days=SUSPECT_TRAILING_DAYS - 1)
    listed = ", ".join(sql_date(d) for d in sorted(set(days)))
    return (f"select {columns} from {glue_table(database, 'cell_daily')}\n"
            f"where {PARTITION_KEY} between {sql_date(first)} and {sql_date(max(days))} and {PARTITION_KEY} not in ({listed})\n"
            f"union all\n"
            f"select {columns} from {glue_table(database, temp_table)}")


def bind_relations(sql: str, relations: Mapping[str, str], source: str) -> str:
    """A query (DuckDB dialect, one statement) with a CTE in front for each relation it reads, in the given order."""
    needed = input_relations(sql)
    missing, unknown = sorted(needed - relations.keys()), sorted(relations.keys() - needed)
    if missing or unknown:
        raise ValueError(f"{source}: every relation it reads needs a binding (missing: {missing or 'none'}; "
                         f"not read by it: {unknown or 'none'})")
    bindings = ",\n".join(f"{name} as (\n{body.strip()}\n)" for name, body in relations.items())
    text = sql.strip().rstrip(";")
    first = sqlglot.tokenize(text, read="duckdb")[0]
    if first.token_type != TokenType.WITH:
        return f"with\n{bindings}\n{text}"
    # The bindings go right after the query's own `with` (comments before it stay where they are).
    return f"{text[:first.end + 1]}\n{bindings},\n{text[first.end + 1:].lstrip()}"


def contract_select(sql: str, schema: pa.Schema) -> str:
    """The query's rows in the zone's contract: each column cast to its type, dt last (CTAS and UNLOAD partition by it)."""
    ordered = [f for f in schema if f.name != PARTITION_KEY] + [schema.field(PARTITION_KEY)]
    columns = ",\n".join(f"    cast({f.name} as {SQL_TYPES[f.type]}) as {f.name}" for f in ordered)
    return f"select\n{columns}\nfrom (\n{sql}\n) as result"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ctas_statement(database: str, table: str, location: str, query: str) -> str:
    """CREATE TABLE ... AS: the query's rows as Parquet (zstd) at `location`, one folder per dt, in a new Glue table."""
    return (f"CREATE TABLE {glue_table(database, table)}\n"
            f"WITH (format = 'PARQUET', write_compression = 'ZSTD', external_location = {_quoted(location)}, "
            f"partitioned_by = ARRAY['{PARTITION_KEY}'])\n"
            f"AS\n{query}")


def unload_statement(location: str, query: str) -> str:
    """UNLOAD: the query's rows as Parquet (zstd) at `location`, one folder per dt, no table."""
    return (f"UNLOAD (\n{query}\n)\n"
            f"TO {_quoted(location)}\n"
            f"WITH (format = 'PARQUET', compression = 'ZSTD', partitioned_by = ARRAY['{PARTITION_KEY}'])")


# ---------------------------------------------------------------------------------------------- one chunk's plan


def run_name(run_id: str) -> str:
    """The run id as a name S3 prefixes and Glue tables take (lowercase, hashed when it had to change)."""
    return resource_name("features", run_id)


@dataclass(frozen=True)
class ChunkPlan:
    """What one chunk of dates sends to Athena and where the results land before they are placed in the zones."""

    days: tuple[date, ...]
    temp_table: str
    staging_prefix: str  # lake key prefix, ends with /
    cell_daily_location: str  # s3:// URL under the staging prefix, ends with /
    daily_location: str
    cell_daily_statement: str  # CTAS into temp_table
    daily_statement: str  # UNLOAD


def chunk_queries(database: str, temp_table: str, days: list[date]) -> tuple[str, str]:
    """The chunk's two queries in DuckDB's dialect, relations bound to the Glue tables, rows in the zones' contracts:
    cell_daily (for the temporary table), then daily (reading it)."""
    dates = dates_relation(days)
    frames = frames_relation(database, days)
    cell_daily = bind_relations(load_sql("features/cell_daily"), {"dates": dates, "frames": frames},
                                "sql/features/cell_daily.sql")
    suspects = bind_relations(load_sql("features/suspect_cells"),
                              {"dates": dates, "cell_daily": cell_history_relation(database, temp_table, days)},
                              "sql/features/suspect_cells.sql")
    daily = bind_relations(load_sql("features/daily_features"),
                           {"dates": dates, "frames": frames, "suspect_cells": suspects},
                           "sql/features/daily_features.sql")
    return contract_select(cell_daily, CELL_DAILY_SCHEMA), contract_select(daily, DAILY_SCHEMA)


def plan_chunk(database: str, lake: Lake, run_id: str, days: Iterable[date]) -> ChunkPlan:
    """The statements and names for one chunk: deterministic for a run id and dates, so a retry reuses them."""
    days = sorted(set(days))
    if not days:
        raise ValueError("a chunk needs at least one date")
    name = run_name(run_id)
    temp_table = f"{TEMP_TABLE_PREFIX}_{name.replace('-', '_')}_{days[0]:%Y%m%d}"
    staging = f"{STAGING_PREFIX}/{name}/{days[0]}_{days[-1]}/"
    cell_daily_location = lake.url(f"{staging}cell_daily/")
    daily_location = lake.url(f"{staging}daily/")
    cell_daily, daily = chunk_queries(database, temp_table, days)
    return ChunkPlan(
        days=tuple(days), temp_table=temp_table, staging_prefix=staging,
        cell_daily_location=cell_daily_location, daily_location=daily_location,
        cell_daily_statement=ctas_statement(database, temp_table, cell_daily_location,
                                            to_trino(cell_daily, "sql/features/cell_daily.sql bound for Athena")),
        daily_statement=unload_statement(daily_location,
                                         to_trino(daily, "sql/features/daily_features.sql bound for Athena")),
    )


# ---------------------------------------------------------------------------------------------- running statements


# ---------------------------------------------------------------------------------------------- staged results


def _bucket_key(lake: Lake, key: str) -> tuple[str, str]:
    """The bucket and object key of a lake key."""
    bucket, _, object_key = lake.path(key).partition("/")
    return bucket, object_key


def delete_prefix(s3: Any, lake: Lake, prefix: str) -> int:
    """Delete every object below a lake prefix, directory markers included (an UNLOAD or CTAS destination must be
    empty, and pyarrow's deletes leave markers); returns how many were deleted."""
    bucket, key_prefix = _bucket_key(lake, prefix)
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise RuntimeError(f"could not delete s3://{bucket}/{first['Key']}: {first.get('Message')}")
            deleted += len(keys)
    return deleted


def read_staged(lake: Lake, prefix: str, schema: pa.Schema) -> pa.Table:
    """Every Parquet object Athena wrote below prefix (in dt=YYYY-MM-DD/ folders, dt not in the files) as one table."""
    without_dt = schema.remove(schema.get_field_index(PARTITION_KEY))
    tables = []
    for info in lake.list(prefix):
        match = _STAGED_OBJECT.search(info.key[len(prefix):])
        if not match:
            raise ValueError(f"Athena wrote {info.key!r} outside a dt=YYYY-MM-DD/ folder: not a result of this run")
        table = lake.read_parquet(info.key)
        missing = [name for name in without_dt.names if name not in table.column_names]
        if missing:
            raise ValueError(f"Athena's output {info.key!r} lacks the contract columns {missing}")
        table = table.select(without_dt.names).cast(without_dt)
        day = pa.array([date.fromisoformat(match["dt"])] * table.num_rows, pa.date32())
        tables.append(table.append_column(schema.field(PARTITION_KEY), day).select(schema.names))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _rows_of(table: pa.Table, day: date) -> pa.Table:
    return table.filter(pc.equal(table[PARTITION_KEY], pa.scalar(day, pa.date32())))


# ---------------------------------------------------------------------------------------------- daily features


def new_run_id(now: datetime | None = None) -> str:
    """A run id for a run outside Airflow (the CLI), like ingest's."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


class AthenaDailyFeatures:
    """The daily and cell_daily rows of chunks of dates, computed on Athena and written to the lake's zones."""

    def __init__(self, settings: Settings, lake: Lake, run_id: str | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if lake.is_local or not settings.lake_uri.startswith("s3://"):
            raise ValueError(f"CELLGUARD_BACKEND=aws computes daily rows on Athena, which reads the lake through Glue: "
                             f"CELLGUARD_LAKE_URI must be s3://bucket/prefix, not {settings.lake_uri!r}")
        if lake.uri != settings.lake_uri.rstrip("/"):
            raise ValueError(f"the lake {lake.uri!r} is not the one the Glue tables describe ({settings.lake_uri!r})")
        self.settings = settings
        self.lake = lake
        self.run_id = run_id or new_run_id()
        self.sleep = sleep
        session = aws_session(settings)
        self.athena = aws_client("athena", settings, session)
        self.glue = aws_client("glue", settings, session)
        self.s3 = aws_client("s3", settings, session)
        self.query_ids: list[str] = []

    def compute_chunk(self, days: list[date], days_with_frames: set[date]) -> int:
        """Recompute and replace the daily and cell rows of `days`; returns the daily row count written."""
        if not any(d in days_with_frames for d in days):  # as on DuckDB: nothing to query, computed rows are removed
            empty_daily, empty_cells = DAILY_SCHEMA.empty_table(), CELL_DAILY_SCHEMA.empty_table()
            return sum(daily_zone.write_computed(self.lake, d, empty_daily, empty_cells) for d in days)
        plan = plan_chunk(self.settings.glue_database, self.lake, self.run_id, days)
        self._clean(plan)  # what an earlier try of this run may have left: CTAS and UNLOAD need empty destinations
        try:
            self.stage(plan)
            return self.place(plan, days_with_frames)
        finally:
            self._clean(plan)

    def stage(self, plan: ChunkPlan) -> None:
        """Run the chunk's CTAS, then its UNLOAD (which reads the CTAS table): both results land under the staging prefix."""
        for statement in (plan.cell_daily_statement, plan.daily_statement):
            execution = run_statement(statement, self.settings, self.athena, sleep=self.sleep)
            self.query_ids.append(execution["QueryExecutionId"])

    def place(self, plan: ChunkPlan, days_with_frames: set[date]) -> int:
        """Write the staged rows to each date's computed objects (no rows: the objects are removed); the daily row count.

        Raises AthenaOutputMissing, before writing anything, when a date with frames got no daily rows."""
        cells = read_staged(self.lake, f"{plan.staging_prefix}cell_daily/", CELL_DAILY_SCHEMA)
        daily = read_staged(self.lake, f"{plan.staging_prefix}daily/", DAILY_SCHEMA)
        written = set(daily[PARTITION_KEY].to_pylist())
        missing = [d.isoformat() for d in plan.days if d in days_with_frames and d not in written]
        if missing:
            raise AthenaOutputMissing(
                f"Athena's UNLOAD to {plan.daily_location} succeeded but wrote no daily rows for {', '.join(missing)}, "
                f"which have frames in {self.lake.url('frames')}/: the Glue table {self.settings.glue_database}.frames "
                f"does not see them (check its location and partition projection range); the daily zone was left "
                f"as it was")
        return sum(daily_zone.write_computed(self.lake, d, _rows_of(daily, d), _rows_of(cells, d)) for d in plan.days)

    def _clean(self, plan: ChunkPlan) -> None:
        """Drop the chunk's temporary table (Glue only: it has no data of its own) and delete its staged objects."""
        with contextlib.suppress(self.glue.exceptions.EntityNotFoundException):
            self.glue.delete_table(DatabaseName=self.settings.glue_database, Name=plan.temp_table)
        delete_prefix(self.s3, self.lake, plan.staging_prefix)
