"""pipelines/storage/glue_catalog.py: Glue tables and Athena views for the lake's zones, against moto.

What these tests prove: the Glue tables moto stores (columns, types, partition keys, projection parameters,
locations, formats), that a second refresh writes nothing, and the exact Athena requests for the views (statement,
database, workgroup, result location). moto's Athena runs nothing, so no test here claims a view's result: the
views' de-duplication is proved on DuckDB with the same SQL before transpilation, and the Trino text is checked
as text.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pytest
import sqlglot

from pipelines.config import Settings, load_settings
from pipelines.schema import DAILY_SCHEMA, PREDICTION_SCHEMA
from pipelines.storage import glue_catalog
from pipelines.storage.catalog import refresh_catalog
from pipelines.storage.glue_catalog import (
    TABLES,
    VIEWS,
    athena_type,
    refresh,
    stored_view_query,
    view_ddl,
    view_query,
    view_sql,
)

ALL_TABLES = ("frames", "daily_objects", "cell_daily", "predictions_objects", "alerts", "quarantine", "manifest")
PARTITIONED = ("frames", "daily_objects", "cell_daily", "predictions_objects", "alerts")


def glue_tables(aws_client, database: str) -> dict[str, dict]:
    pages = aws_client("glue").get_paginator("get_tables").paginate(DatabaseName=database)
    return {t["Name"]: t for page in pages for t in page["TableList"]}


def athena_queries(aws_client) -> list[dict]:
    """Every query execution moto's Athena recorded, oldest first."""
    athena = aws_client("athena")
    ids = athena.list_query_executions()["QueryExecutionIds"]
    executions = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]
    return sorted(executions, key=lambda e: e["Status"]["SubmissionDateTime"])


def test_refresh_registers_every_zone_as_a_glue_table(aws_settings: Settings, aws_client, s3_bucket: str) -> None:
    result = refresh(aws_settings)
    assert (result.created, result.updated, result.unchanged) == (ALL_TABLES, (), ())
    assert result.location == f"glue://{aws_settings.glue_database}"

    tables = glue_tables(aws_client, aws_settings.glue_database)
    assert sorted(tables) == sorted(ALL_TABLES)  # the views live in Athena: moto's Athena creates nothing
    frames = tables["frames"]
    assert [(c["Name"], c["Type"]) for c in frames["StorageDescriptor"]["Columns"]] == [
        ("vin", "string"), ("ts", "timestamp"), ("vehicle_state", "tinyint"), ("charge_state", "tinyint"),
        ("speed_kmh", "double"), ("odometer_km", "double"), ("pack_voltage_v", "double"), ("pack_current_a", "double"),
        ("soc_pct", "double"), ("insulation_kohm", "double"), ("cell_mv", "array<int>"), ("probe_temp_c", "array<smallint>"),
        ("alarm_level", "tinyint"), ("alarm_flags", "bigint")]
    for name in PARTITIONED:
        table = tables[name]
        prefix = next(t.prefix for t in TABLES if t.name == name)
        location = f"s3://{s3_bucket}/lake/{prefix}/"
        assert table["PartitionKeys"] == [{"Name": "dt", "Type": "date"}]
        assert table["StorageDescriptor"]["Location"] == location
        assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == glue_catalog.PARQUET_SERDE
        assert {k: v for k, v in table["Parameters"].items() if k.startswith(("projection", "storage"))} == {
            "projection.enabled": "true", "projection.dt.type": "date", "projection.dt.format": "yyyy-MM-dd",
            "projection.dt.range": "2016-01-01,NOW+7DAYS", "storage.location.template": f"{location}dt=${{dt}}"}
        assert "dt" not in [c["Name"] for c in table["StorageDescriptor"]["Columns"]]  # the path's dt, not the file's
    assert aws_client("glue").get_partitions(DatabaseName=aws_settings.glue_database, TableName="frames")["Partitions"] == []

    predictions = dict((c["Name"], c["Type"]) for c in tables["predictions_objects"]["StorageDescriptor"]["Columns"])
    assert (predictions["as_of"], predictions["created_at"], predictions["suspect_cell"]) == ("date", "timestamp", "int")
    assert predictions["reasons"] == "array<struct<feature:string,contribution:double,value:double>>"
    daily = [c["Name"] for c in tables["daily_objects"]["StorageDescriptor"]["Columns"]]
    assert daily == [n for n in DAILY_SCHEMA.names if n != "dt"]

    for name, location, serde in (("quarantine", "quarantine/rows/", glue_catalog.PARQUET_SERDE),
                                  ("manifest", "_manifest/", glue_catalog.JSON_SERDE)):
        table = tables[name]
        assert table["PartitionKeys"] == []
        assert table["Parameters"]["projection.enabled"] == "false"
        assert table["StorageDescriptor"]["Location"] == f"s3://{s3_bucket}/lake/{location}"
        assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == serde
    manifest = dict((c["Name"], c["Type"]) for c in tables["manifest"]["StorageDescriptor"]["Columns"])
    assert (manifest["sentinels"], manifest["dates"], manifest["ingested_at"], manifest["size"]) == (
        "map<string,bigint>", "array<string>", "string", "bigint")


def test_a_second_refresh_writes_nothing_to_glue(aws_settings: Settings, aws_client) -> None:
    refresh(aws_settings)
    glue = aws_client("glue")
    database = aws_settings.glue_database
    before = {name: glue.get_table_versions(DatabaseName=database, TableName=name)["TableVersions"] for name in ALL_TABLES}
    again = refresh(aws_settings)
    assert (again.created, again.updated, again.unchanged) == ((), (), ALL_TABLES)
    after = {name: glue.get_table_versions(DatabaseName=database, TableName=name)["TableVersions"] for name in ALL_TABLES}
    assert after == before


def test_a_drifted_table_is_put_back(aws_settings: Settings, aws_client) -> None:
    refresh(aws_settings)
    glue = aws_client("glue")
    database = aws_settings.glue_database
    frames = glue.get_table(DatabaseName=database, Name="frames")["Table"]
    table_input = {k: frames[k] for k in ("Name", "StorageDescriptor", "PartitionKeys", "TableType", "Parameters")}
    table_input["StorageDescriptor"]["Columns"] = table_input["StorageDescriptor"]["Columns"][:3]  # someone dropped columns
    table_input["Parameters"] = {**frames["Parameters"], "projection.dt.range": "2020-01-01,NOW"}
    glue.update_table(DatabaseName=database, TableInput=table_input)

    result = refresh(aws_settings)
    assert (result.created, result.updated) == ((), ("frames",))
    restored = glue.get_table(DatabaseName=database, Name="frames")["Table"]
    assert len(restored["StorageDescriptor"]["Columns"]) == 14
    assert restored["Parameters"]["projection.dt.range"] == "2016-01-01,NOW+7DAYS"
    assert refresh(aws_settings).unchanged == ALL_TABLES


def test_views_are_created_through_athena_with_the_transpiled_sql(aws_settings: Settings, aws_client, s3_bucket: str) -> None:
    before = {e["QueryExecutionId"] for e in athena_queries(aws_client)}
    result = refresh(aws_settings)
    assert result.views_submitted == ("daily", "predictions")
    mine = [e for e in athena_queries(aws_client) if e["QueryExecutionId"] not in before]
    assert [e["Query"] for e in mine] == [view_ddl(VIEWS[0]), view_ddl(VIEWS[1])]
    for execution in mine:
        assert execution["QueryExecutionContext"]["Database"] == aws_settings.glue_database
        assert execution["WorkGroup"] == "primary"
        assert execution["ResultConfiguration"]["OutputLocation"] == (  # the location asked for, and the query's file
            f"s3://{s3_bucket}/lake/_athena/{execution['QueryExecutionId']}.csv")
        assert execution["Status"]["State"] == "SUCCEEDED"  # moto's word only: it ran nothing


def presto_view(query: str, database: str) -> str:
    """A view's ViewOriginalText the way Athena writes it into Glue."""
    definition = {"originalSql": query, "catalog": "awsdatacatalog", "schema": database, "columns": [], "owner": "test"}
    return f"/* Presto View: {base64.b64encode(json.dumps(definition).encode()).decode()} */"


def test_a_view_athena_already_holds_is_not_submitted_again(aws_settings: Settings, aws_client) -> None:
    """Given a view stored the way Athena stores it (a Glue VIRTUAL_VIEW with the query base64-encoded)."""
    database = aws_settings.glue_database
    refresh(aws_settings)
    glue = aws_client("glue")
    glue.create_table(DatabaseName=database, TableInput={
        "Name": "daily", "TableType": "VIRTUAL_VIEW", "ViewOriginalText": presto_view(view_query(VIEWS[0]), database),
        "ViewExpandedText": "/* Presto View */", "StorageDescriptor": {"Columns": []}})
    glue.create_table(DatabaseName=database, TableInput={
        "Name": "predictions", "TableType": "VIRTUAL_VIEW", "ViewOriginalText": presto_view("select 1 as old", database),
        "ViewExpandedText": "/* Presto View */", "StorageDescriptor": {"Columns": []}})
    result = refresh(aws_settings)
    assert (result.views_unchanged, result.views_submitted) == (("daily",), ("predictions",))  # an outdated view is replaced
    assert stored_view_query(glue.get_table(DatabaseName=database, Name="daily")["Table"]) == view_query(VIEWS[0])
    assert stored_view_query(glue.get_table(DatabaseName=database, Name="frames")["Table"]) is None


def test_view_ddl_text_is_trino_and_keeps_the_rules() -> None:
    daily, predictions = (view_ddl(v) for v in VIEWS)
    assert daily.startswith('CREATE OR REPLACE VIEW "daily" AS\nWITH ranked AS (')
    assert ("ROW_NUMBER() OVER (PARTITION BY vin, dt ORDER BY \"$path\" NOT LIKE '%/frames.parquet', \"$path\") "
            "AS copy_number") in daily
    assert ('ROW_NUMBER() OVER (PARTITION BY dt, vin, as_of, model_version, source, request_id ORDER BY "$path") '
            "AS copy_number") in predictions
    for ddl in (daily, predictions):
        assert ddl.endswith("FROM ranked\nWHERE\n  copy_number = 1")
        parsed = sqlglot.parse_one(ddl, read="trino")
        assert isinstance(parsed, sqlglot.exp.Create) and parsed.args["replace"]
    selected = sqlglot.parse_one(view_query(VIEWS[1]), read="trino").named_selects
    assert selected == [*PREDICTION_SCHEMA.names, "dt"]
    assert sqlglot.parse_one(view_query(VIEWS[0]), read="trino").named_selects == DAILY_SCHEMA.names


def test_view_sql_keeps_the_computed_daily_row_and_one_row_per_prediction() -> None:
    """The views' rules, run on DuckDB over tables shaped like the Glue tables, with Athena's "$path" column."""
    con = duckdb.connect()
    day = date(2026, 1, 5)
    daily = pa.Table.from_pylist(
        [{name: None for name in DAILY_SCHEMA.names} | {"vin": vin, "dt": day, "total_voltage": volts}
         for vin, volts in (("LSVAB1234CD567890", 300.0), ("LSVAB1234CD567890", 352.1), ("LSVAB1234CD567890", 301.0),
                            ("LFV2A2156K3000001", 351.0), ("LFV2A2156K3000001", 350.0))], schema=DAILY_SCHEMA)
    paths = [f"s3://b/lake/daily/dt=2026-01-05/{part}.parquet" for part in ("import-a", "frames", "import-b", "import-b", "import-a")]
    con.register("daily_rows", daily.append_column("$path", pa.array(paths)))
    con.execute("create table daily_objects as select * from daily_rows")
    rows = con.execute(f"select vin, total_voltage from ({view_sql(VIEWS[0])}) order by vin").fetchall()
    assert rows == [("LFV2A2156K3000001", 350.0), ("LSVAB1234CD567890", 352.1)]  # computed first, else the first object

    made = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    predictions = pa.Table.from_pylist([
        {"vin": "LSVAB1234CD567890", "as_of": day, "model_version": "v1", "feature_set": "full", "probability": p,
         "alarm": True, "threshold": 0.5, "suspect_cell": 3, "reasons": [], "source": "api", "request_id": request,
         "created_at": made} for p, request in ((0.7, "r1"), (0.71, "r1"), (0.2, "r2"))], schema=PREDICTION_SCHEMA)
    predictions = predictions.append_column("dt", predictions["as_of"]).append_column("$path", pa.array(
        [f"s3://b/lake/predictions/dt=2026-01-05/{name}.parquet" for name in ("api-r1-bb", "api-r1-aa", "api-r2-cc")]))
    con.register("prediction_rows", predictions)
    con.execute("create table predictions_objects as select * from prediction_rows")
    kept = con.execute(f"select request_id, probability, dt from ({view_sql(VIEWS[1])}) order by 1").fetchall()
    assert kept == [("r1", 0.71, day), ("r2", 0.2, day)]  # of a key's copies, the one in the first object by path


def test_athena_types_of_the_contracts() -> None:
    assert athena_type(pa.list_(pa.uint16())) == "array<int>"
    assert athena_type(pa.uint32()) == "bigint"
    assert athena_type(pa.map_(pa.string(), pa.int64())) == "map<string,bigint>"
    assert athena_type(pa.timestamp("ms", tz="UTC")) == "timestamp"
    assert athena_type(pa.timestamp("us", tz="UTC"), json_text=True) == "string"
    with pytest.raises(ValueError, match="no Athena type for the Arrow type decimal128"):
        athena_type(pa.decimal128(10, 2))


def test_the_glue_catalog_needs_an_s3_lake(aws_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CELLGUARD_LAKE_URI", (tmp_path / "lake").as_uri())
    with pytest.raises(ValueError, match="CELLGUARD_LAKE_URI must be s3://bucket/prefix when CELLGUARD_BACKEND=aws"):
        refresh(load_settings())
    monkeypatch.setenv("CELLGUARD_LAKE_URI", aws_settings.lake_uri)
    monkeypatch.setenv("CELLGUARD_EARLIEST_TS", "recently")
    with pytest.raises(ValueError, match="CELLGUARD_EARLIEST_TS must start with a date"):
        refresh(load_settings())


def test_refresh_catalog_dispatches_by_backend(aws_settings: Settings, aws_client, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path) -> None:
    assert refresh_catalog() == f"glue://{aws_settings.glue_database}"
    assert sorted(glue_tables(aws_client, aws_settings.glue_database)) == sorted(ALL_TABLES)
    monkeypatch.setenv("CELLGUARD_BACKEND", "local")
    monkeypatch.setenv("CELLGUARD_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CELLGUARD_CATALOG_PATH", str(tmp_path / "catalog.duckdb"))
    assert refresh_catalog() == str(tmp_path / "catalog.duckdb")
    assert (tmp_path / "catalog.duckdb").is_file()
