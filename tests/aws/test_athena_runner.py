"""pipelines/features/athena_runner.py: the sql/ files on Athena, for given dates, into the lake's zones.

What these tests prove, and how:
- the SQL logic: the exact queries sent to Athena, before transpilation, run on DuckDB over tables shaped like the
  Glue tables and give the rows the local path gives (DuckDB runs them; Athena does not run here);
- the Trino text: every statement re-parses as Trino and calls only functions Trino has;
- the requests to moto's Athena: statement text, database, workgroup, result location, order, polling with backoff;
- naming from the run id, and the S3 side: what is cleared before and after, what is placed, and that placing again
  leaves the same objects. moto's Athena writes no files, so placement is proved on objects written here the way
  Athena lays out CTAS and UNLOAD output (dt=... folders, its own file names, no dt column in the files).
No test here claims an Athena result.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests
import sqlglot
from features.builders import VIN_A, VIN_B, frame, frames_table
from sqlglot import exp

from pipelines.config import Settings
from pipelines.features.athena_runner import (
    STAGING_PREFIX,
    AthenaDailyFeatures,
    AthenaOutputMissing,
    bind_relations,
    chunk_queries,
    plan_chunk,
    run_name,
)
from pipelines.features.daily import build_daily, with_partition_date
from pipelines.features.pipeline import compute_daily
from pipelines.features.portable_sql import trino_problems
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA, FRAME_PARQUET_OPTIONS
from pipelines.storage import daily_zone
from pipelines.storage.athena import AthenaQueryFailed, failure_message, run_statement
from pipelines.storage.aws import aws_client as settings_client
from pipelines.storage.lake import Lake

FIRST = date(2026, 1, 1)
RUN_ID = "manual__2026-01-05T00:00:00+00:00"
UNLOAD = re.compile(r"^UNLOAD \(\n(?P<query>.*)\n\)\nTO '(?P<location>[^']+)'\n"
                    r"WITH \(format = 'PARQUET', compression = 'ZSTD', partitioned_by = ARRAY\['dt'\]\)$", re.S)


def day(offset: int) -> date:
    return FIRST + timedelta(days=offset)


def frames_of(offset: int) -> list[dict]:
    """VIN_A's cell 2 sits 10 * (offset + 1) mV low, at rest and under load; VIN_B is balanced."""
    stamp, low = day(offset).isoformat(), 10 * (offset + 1)
    return [frame(VIN_A, f"{stamp}T08:00:00", current=0.5, cells=[3700, 3700 - low, 3700, 3701]),
            frame(VIN_A, f"{stamp}T09:00:00", current=20.0, cells=[3690, 3690 - low, 3690, None], flags=0x400),
            frame(VIN_B, f"{stamp}T10:00:00", current=0.0, cells=[3600, 3600, 3601])]


def sort_rows(table: pa.Table, schema: pa.Schema) -> pa.Table:
    keys = [k for k in ("vin", "dt", "cell_index") if k in schema.names]
    return table.select(schema.names).cast(schema).sort_by([(k, "ascending") for k in keys])


def athena_executions(aws_client, database: str) -> list[dict]:
    """What moto's Athena received in one Glue database, oldest first."""
    athena = aws_client("athena")
    executions = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]
                  for i in athena.list_query_executions()["QueryExecutionIds"]]
    mine = [e for e in executions if e.get("QueryExecutionContext", {}).get("Database") == database]
    return sorted(mine, key=lambda e: e["Status"]["SubmissionDateTime"])


def bucket_objects(aws_client, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object below a prefix with its bytes, as S3 itself lists them (markers included)."""
    s3 = aws_client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for page in pages for item in page.get("Contents", [])}


# ---------------------------------------------------------------------------------------------- SQL, on DuckDB


def test_the_bound_queries_on_duckdb_give_the_rows_of_the_local_path() -> None:
    """Days 2-3 recomputed: the zone holds day 0-1 cell rows (history), stale rows of day 2 and an old row of day -9."""
    frames = with_partition_date(frames_table([row for offset in range(4) for row in frames_of(offset)]))
    history = build_daily(frames, [day(0), day(1)]).cell_daily
    local = build_daily(frames, [day(2), day(3)], history)
    stale = history.filter(pc.equal(history["dt"], pa.scalar(day(0), pa.date32())))
    zone_cells = pa.concat_tables([
        history,
        stale.set_column(1, "dt", pa.array([day(2)] * stale.num_rows, pa.date32()))  # day 2's previous rows
             .set_column(3, "cell_dev_mv", pa.array([500.0] * stale.num_rows)),
        stale.set_column(1, "dt", pa.array([day(-9)] * stale.num_rows, pa.date32()))  # outside the 7-day window
             .set_column(3, "cell_dev_mv", pa.array([-900.0] * stale.num_rows)),
    ])

    cell_query, daily_query = chunk_queries("glue_db", "tmp_cells", [day(3), day(2)])
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute("create schema glue_db")
        con.register("frames_rows", frames)
        con.execute("create table glue_db.frames as select * from frames_rows")
        con.register("zone_cells", zone_cells)
        con.execute("create table glue_db.cell_daily as select * from zone_cells")
        cells = con.sql(cell_query).to_arrow_table()
        con.register("staged_cells", cells)
        con.execute("create table glue_db.tmp_cells as select * from staged_cells")
        daily = con.sql(daily_query).to_arrow_table()

    assert cells.column_names[-1] == daily.column_names[-1] == "dt"  # CTAS and UNLOAD partition by the last column
    assert cells.schema.field("cell_index").type == pa.int32() and daily.schema.field("frame_count").type == pa.int64()
    assert sort_rows(cells, CELL_DAILY_SCHEMA).equals(sort_rows(local.cell_daily, CELL_DAILY_SCHEMA))
    assert sort_rows(daily, DAILY_SCHEMA).equals(sort_rows(local.daily, DAILY_SCHEMA))
    last = {(r["vin"], r["dt"]): r for r in daily.to_pylist()}[(VIN_A, day(3))]
    # cell 2: -40 mV today; its 7-day mean over days 0-3 is -25 mV (the stale +500 and the old -900 left out)
    assert (last["suspect_cell"], last["suspect_cell_dev_mv"], last["suspect_cell_dev_7d_mv"]) == (2, -40.0, -25.0)
    assert (last["suspect_cell_days_7d"], last["alarm_frames"], last["alarm"]) == (4, 1, True)


def test_bindings_go_in_front_of_the_query_and_must_match_what_it_reads() -> None:
    query = "-- reads t\nwith\n\n-- first step\nx as (select a from t)\nselect a from x"
    bound = bind_relations(query, {"t": "select 1 as a"}, "q.sql")
    assert bound == "-- reads t\nwith\nt as (\nselect 1 as a\n),\n-- first step\nx as (select a from t)\nselect a from x"
    assert duckdb.sql(bound).fetchall() == [(1,)]
    assert bind_relations("select a from t", {"t": "select 2 as a"}, "q.sql") == "with\nt as (\nselect 2 as a\n)\nselect a from t"
    with pytest.raises(ValueError, match=r"q.sql: every relation it reads needs a binding \(missing: \['t'\]; not read by it: \['u'\]\)"):
        bind_relations("select a from t", {"u": "select 1"}, "q.sql")


# ---------------------------------------------------------------------------------------------- statements and names


def test_every_statement_is_trino_with_its_relations_bound_to_glue_tables() -> None:
    plan = plan_chunk("glue_db", Lake("s3://lake-bucket/lake"), RUN_ID, [day(5), day(4)])
    assert plan.days == (day(4), day(5))

    ctas = sqlglot.parse_one(plan.cell_daily_statement, read="trino")
    assert isinstance(ctas, exp.Create) and ctas.this.sql(dialect="trino") == f'"glue_db"."{plan.temp_table}"'
    assert plan.cell_daily_statement.splitlines()[1] == (
        f"WITH (format = 'PARQUET', write_compression = 'ZSTD', external_location = "
        f"'s3://lake-bucket/lake/{plan.staging_prefix}cell_daily/', partitioned_by = ARRAY['dt'])")
    unload = UNLOAD.match(plan.daily_statement)
    assert unload and unload["location"] == f"s3://lake-bucket/lake/{plan.staging_prefix}daily/"

    for query, schema in ((ctas.expression.sql(dialect="trino"), CELL_DAILY_SCHEMA), (unload["query"], DAILY_SCHEMA)):
        tree = sqlglot.parse_one(query, read="trino")
        assert trino_problems(query) == []  # the guard's own check: only functions Trino documents
        assert tree.named_selects == [*(n for n in schema.names if n != "dt"), "dt"]
        tables = {t.sql(dialect="trino") for t in tree.find_all(exp.Table) if t.args.get("db")}
        assert tables <= {'"glue_db"."frames"', '"glue_db"."cell_daily"', f'"glue_db"."{plan.temp_table}"'}
        # Only the chunk's partitions are read, by a filter Athena prunes on.
        assert ("FROM \"glue_db\".\"frames\" WHERE dt IN (CAST('2026-01-05' AS DATE), CAST('2026-01-06' AS DATE))"
                in " ".join(query.split()))
    # suspect_cells' history: the trailing 6 days from the zone, the chunk's own days from the CTAS table.
    assert "dt BETWEEN CAST('2025-12-30' AS DATE) AND CAST('2026-01-06' AS DATE)" in " ".join(unload["query"].split())
    assert f'FROM "glue_db"."{plan.temp_table}"' in unload["query"]


@pytest.mark.parametrize("run_id", [RUN_ID, "asset_triggered__2026-01-05T00:00:00.123456+00:00_AbC"])
def test_names_come_from_the_run_id_and_are_stable_for_a_retry(run_id: str) -> None:
    lake = Lake("s3://lake-bucket/lake")
    plan = plan_chunk("glue_db", lake, run_id, [day(4), day(5)])
    again = plan_chunk("glue_db", lake, run_id, [day(5), day(4)])
    other = plan_chunk("glue_db", lake, f"{run_id}-2", [day(4), day(5)])
    assert plan == again and plan.temp_table != other.temp_table and plan.staging_prefix != other.staging_prefix
    assert plan.staging_prefix == f"{STAGING_PREFIX}/{run_name(run_id)}/2026-01-05_2026-01-06/"
    assert re.fullmatch(r"features-[a-z0-9-]+", run_name(run_id)) and len(run_name(run_id)) <= 63
    assert re.fullmatch(r"cellguard_tmp_cell_daily_[a-z0-9_]+_20260105", plan.temp_table) and len(plan.temp_table) <= 255


def test_a_failed_query_is_reported_with_athenas_reason() -> None:
    execution = {"QueryExecutionId": "q-1", "Query": "UNLOAD (\nSELECT 1\n) TO 's3://b/x/'",
                 "Status": {"State": "FAILED", "StateChangeReason": "HIVE_PATH_ALREADY_EXISTS: Target directory for "
                            "table 'glue_db.tmp' already exists: s3://b/x/",
                            "AthenaError": {"ErrorCategory": 2, "ErrorType": 1001, "Retryable": False}}}
    assert failure_message(execution) == ("Athena query q-1 ended FAILED ('UNLOAD ('): HIVE_PATH_ALREADY_EXISTS: Target "
                                          "directory for table 'glue_db.tmp' already exists: s3://b/x/")


# ---------------------------------------------------------------------------------------------- against moto


@pytest.fixture
def s3_lake(aws_settings: Settings, aws_client) -> Lake:
    """The aws settings' lake with four days of frames, computed rows of day 2 from an earlier run, its Glue database."""
    aws_client("glue").create_database(DatabaseInput={"Name": aws_settings.glue_database})
    lake = Lake.from_settings(aws_settings)
    for offset in range(4):
        lake.write_parquet(f"frames/dt={day(offset)}/upload-{offset}.parquet", frames_table(frames_of(offset)),
                           FRAME_PARQUET_OPTIONS)
    earlier = build_daily(with_partition_date(frames_table(frames_of(2))), [day(2)])
    daily_zone.write_computed(lake, day(2), earlier.daily, earlier.cell_daily)
    return lake


@pytest.fixture
def moto_transitions(moto_endpoint: str):
    """Set how moto advances Athena's query states (QUEUED, RUNNING, SUCCEEDED); back to immediate afterwards."""
    url = f"{moto_endpoint}/moto-api/state-manager"

    def manual(times: int) -> None:
        requests.post(f"{url}/set-transition", json={"model_name": "athena::execution",
                                                     "transition": {"progression": "manual", "times": times}}, timeout=10)

    yield manual
    requests.post(f"{url}/unset-transition", json={"model_name": "athena::execution"}, timeout=10)


def test_compute_daily_on_aws_sends_the_ctas_then_the_unload_and_refuses_an_empty_answer(
        aws_settings: Settings, s3_lake: Lake, aws_client, s3_bucket: str) -> None:
    before = bucket_objects(aws_client, s3_bucket, "lake/")
    with pytest.raises(AthenaOutputMissing) as refused:
        compute_daily([day(2)], lake=s3_lake, run_id=RUN_ID)

    plan = plan_chunk(aws_settings.glue_database, s3_lake, RUN_ID, [day(2), day(3)])  # day 3's 7-day mean reads day 2
    sent = athena_executions(aws_client, aws_settings.glue_database)
    assert [e["Query"] for e in sent] == [plan.cell_daily_statement, plan.daily_statement]
    for execution in sent:
        assert execution["WorkGroup"] == "primary"
        assert execution["ResultConfiguration"]["OutputLocation"] == (
            f"s3://{s3_bucket}/lake/_athena/{execution['QueryExecutionId']}.csv")
        assert execution["Status"]["State"] == "SUCCEEDED"  # moto's word only: it ran nothing and wrote nothing
    assert str(refused.value) == (
        f"Athena's UNLOAD to s3://{s3_bucket}/lake/{plan.staging_prefix}daily/ succeeded but wrote no daily rows for "
        f"2026-01-03, 2026-01-04, which have frames in s3://{s3_bucket}/lake/frames/: the Glue table "
        f"{aws_settings.glue_database}.frames does not see them (check its location and partition projection range); "
        f"the daily zone was left as it was")
    # The earlier rows are still there, byte for byte; nothing of the run is left behind.
    assert bucket_objects(aws_client, s3_bucket, "lake/") == before
    assert aws_client("glue").get_tables(DatabaseName=aws_settings.glue_database)["TableList"] == []


def test_what_an_earlier_try_left_is_cleared_before_the_statements(aws_settings: Settings, s3_lake: Lake, aws_client,
                                                                    s3_bucket: str) -> None:
    """A try that died after its CTAS left the temporary table and staged rows; a retry must not place those rows."""
    plan = plan_chunk(aws_settings.glue_database, s3_lake, RUN_ID, [day(3)])
    glue = aws_client("glue")
    glue.create_table(DatabaseName=aws_settings.glue_database, TableInput={"Name": plan.temp_table})
    staged = build_daily(with_partition_date(frames_table(frames_of(3))), [day(3)]).daily.drop_columns(["dt"])
    buffer = io.BytesIO()
    pq.write_table(staged, buffer)
    s3 = aws_client("s3")
    s3.put_object(Bucket=s3_bucket, Key=f"lake/{plan.staging_prefix}daily/dt={day(3)}/20260105_000000_00001_abcde_x",
                  Body=buffer.getvalue())
    s3.put_object(Bucket=s3_bucket, Key=f"lake/{plan.staging_prefix}cell_daily/", Body=b"")  # a directory marker

    with pytest.raises(AthenaOutputMissing, match="wrote no daily rows for 2026-01-04"):
        compute_daily([day(3)], lake=s3_lake, run_id=RUN_ID)  # had the staged rows stayed, they would have been placed
    assert bucket_objects(aws_client, s3_bucket, f"lake/{STAGING_PREFIX}/") == {}
    assert not s3_lake.exists(daily_zone.partition_key("daily", day(3)))
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_table(DatabaseName=aws_settings.glue_database, Name=plan.temp_table)


def athena_parquet(table: pa.Table) -> bytes:
    """A table as Athena's UNLOAD writes it: Parquet without the partition column."""
    buffer = io.BytesIO()
    pq.write_table(table.drop_columns(["dt"]), buffer, compression="zstd")
    return buffer.getvalue()


def test_staged_rows_replace_each_dates_objects_and_placing_again_changes_nothing(
        aws_settings: Settings, s3_lake: Lake, aws_client, s3_bucket: str) -> None:
    frames = with_partition_date(frames_table([row for offset in range(4) for row in frames_of(offset)]))
    computed = build_daily(frames, [day(2), day(3), day(9)])
    imported = computed.daily.slice(0, 1)
    daily_zone.write_imported(s3_lake, day(2), imported, "1")
    s3_lake.write_parquet(daily_zone.partition_key("daily", day(9)), s3_lake.read_parquet(
        daily_zone.partition_key("daily", day(2))))  # stale computed rows of a date that has no frames now
    plan = plan_chunk(aws_settings.glue_database, s3_lake, RUN_ID, [day(2), day(3), day(9)])
    s3 = aws_client("s3")
    for zone, table in (("daily", computed.daily), ("cell_daily", computed.cell_daily)):
        for offset in (2, 3):
            rows = table.filter(pc.equal(table["dt"], pa.scalar(day(offset), pa.date32())))
            halves = (rows.slice(0, rows.num_rows // 2), rows.slice(rows.num_rows // 2))  # Athena writes in parallel
            for half in halves:
                key = f"lake/{plan.staging_prefix}{zone}/dt={day(offset)}/20260105_000000_00001_abcde_{uuid.uuid4()}"
                s3.put_object(Bucket=s3_bucket, Key=key, Body=athena_parquet(half))

    runner = AthenaDailyFeatures(aws_settings, s3_lake, RUN_ID)
    assert runner.place(plan, {day(2), day(3)}) == 4
    placed = bucket_objects(aws_client, s3_bucket, "lake/daily/") | bucket_objects(aws_client, s3_bucket, "lake/cell_daily/")
    assert runner.place(plan, {day(2), day(3)}) == 4
    assert bucket_objects(aws_client, s3_bucket, "lake/daily/") | bucket_objects(aws_client, s3_bucket, "lake/cell_daily/") == placed

    assert sorted(k for k in placed if k.endswith(".parquet")) == [
        f"lake/cell_daily/dt={day(2)}/frames.parquet", f"lake/cell_daily/dt={day(3)}/frames.parquet",
        f"lake/daily/dt={day(2)}/frames.parquet", f"lake/daily/dt={day(2)}/import-1.parquet",
        f"lake/daily/dt={day(3)}/frames.parquet"]  # day 9's stale computed rows are gone, the import stays
    assert sort_rows(daily_zone.read_daily(s3_lake), DAILY_SCHEMA).equals(sort_rows(computed.daily, DAILY_SCHEMA))
    assert sort_rows(daily_zone.read_cell_daily(s3_lake, day(2)), CELL_DAILY_SCHEMA).equals(
        sort_rows(computed.cell_daily, CELL_DAILY_SCHEMA))
    assert s3_lake.read_parquet(daily_zone.partition_key("daily", day(3))).schema == DAILY_SCHEMA


def test_polling_backs_off_until_the_query_ends(aws_settings: Settings, moto_transitions) -> None:
    moto_transitions(3)  # moto moves QUEUED -> RUNNING -> SUCCEEDED every third look
    slept: list[float] = []
    execution = run_statement("SELECT 1", aws_settings, settings_client("athena", aws_settings), sleep=slept.append,
                              first_poll=0.5, max_poll=2.0)
    assert execution["Status"]["State"] == "SUCCEEDED"
    assert slept == [0.5, 1.0, 2.0, 2.0, 2.0]  # six looks: doubling, capped at max_poll


def test_a_cancelled_query_raises_with_its_state(aws_settings: Settings, moto_transitions, aws_client) -> None:
    moto_transitions(1000)  # stays QUEUED until stopped
    athena = settings_client("athena", aws_settings)
    statement = f"SELECT 1 AS cancelled_{uuid.uuid4().hex}"

    def stop_it(_: float) -> None:
        (execution,) = [e for e in athena_executions(aws_client, aws_settings.glue_database) if e["Query"] == statement]
        athena.stop_query_execution(QueryExecutionId=execution["QueryExecutionId"])

    with pytest.raises(AthenaQueryFailed, match=rf"^Athena query [0-9a-f-]+ ended CANCELLED \('{statement}'\): no reason given$"):
        run_statement(statement, aws_settings, athena, sleep=stop_it)


def test_a_chunk_without_frames_sends_nothing_and_removes_its_computed_rows(aws_settings: Settings, s3_lake: Lake,
                                                                            aws_client) -> None:
    stale = s3_lake.read_parquet(daily_zone.partition_key("daily", day(2)))
    s3_lake.write_parquet(daily_zone.partition_key("daily", day(20)), stale)
    summary = compute_daily([day(20)], lake=s3_lake, run_id=RUN_ID)
    assert (summary.computed, summary.without_frames, summary.daily_rows) == (["2026-01-21"], ["2026-01-21"], 0)
    assert not s3_lake.exists(daily_zone.partition_key("daily", day(20)))
    assert athena_executions(aws_client, aws_settings.glue_database) == []


def test_athena_computes_only_for_the_s3_lake_the_glue_tables_describe(aws_settings: Settings, tmp_path) -> None:
    with pytest.raises(ValueError, match="CELLGUARD_LAKE_URI must be s3://bucket/prefix"):
        AthenaDailyFeatures(aws_settings, Lake((tmp_path / "lake").as_uri()))
    with pytest.raises(ValueError, match="is not the one the Glue tables describe"):
        AthenaDailyFeatures(aws_settings, Lake(f"{aws_settings.lake_uri}-copy", aws_settings.s3_endpoint_url))
