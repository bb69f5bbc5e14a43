"""bms_ingest and bms_features through Airflow's dag.test() with CELLGUARD_BACKEND=aws, against the moto server.

A tiny simulated batch lands in S3; bms_ingest reads it with pyarrow, validates it with Great Expectations, writes
frames, quarantine and manifest to S3 and refreshes the Glue catalog. What that proves is real: moto's S3 and Glue
keep state as AWS does. bms_features then sends its sql/ queries to Athena (a CTAS and an UNLOAD per chunk of
dates). moto's Athena accepts them and writes nothing, so the run must stop with AthenaOutputMissing, without
retries and without touching the daily zone: these tests prove the statements sent (text, database, workgroup,
result location, names from the run id) and that refusal, never an Athena result.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from e2e.airflow_events import asset_event_extra
from features.builders import VIN_A, frame, frames_table

from pipelines.config import load_settings
from pipelines.features.athena_runner import STAGING_PREFIX, plan_chunk, run_name
from pipelines.ingest.data_docs_mirror import fetch, mirror_folder, mirrored_site
from pipelines.ingest.manifest import load_manifest
from pipelines.quality.runner import validate_frames
from pipelines.simulate import SimulationParams, simulate_fleet
from pipelines.storage.lake import Lake

from .conftest import REGION, unique_name

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]


def _run(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id].test()


def _task_states(run) -> dict[str, tuple[str, int]]:
    """Each task's final state and how many tries it took."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        instances = session.query(TaskInstance).filter(TaskInstance.run_id == run.run_id,
                                                       TaskInstance.dag_id == run.dag_id).all()
        return {ti.task_id: (str(ti.state), ti.try_number) for ti in instances}


def _bucket_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="module")
def aws_flow(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A simulated batch in a fresh bucket's landing zone, then bms_ingest and bms_features, as the scheduler chains them."""
    home = tmp_path_factory.mktemp("aws-dags")
    bucket = unique_name("cellguard-dags-")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("CELLGUARD_")]:
            env.delenv(name)
        env.setenv("CELLGUARD_HOME", str(home))
        env.setenv("CELLGUARD_BACKEND", "aws")
        env.setenv("CELLGUARD_LAKE_URI", f"s3://{bucket}/lake")
        env.setenv("CELLGUARD_AWS_REGION", REGION)
        env.setenv("CELLGUARD_AWS_ENDPOINT_URL", moto_endpoint)
        env.setenv("CELLGUARD_GLUE_DATABASE", unique_name("cellguard_dags_"))
        env.setenv("CELLGUARD_DYNAMODB_TABLE_PREFIX", unique_name("cg-") + "-")
        env.setenv("CELLGUARD_DATA_DOCS", "1")
        migrated = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                                  timeout=600)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        settings = load_settings()
        lake = Lake.from_settings(settings)
        params = SimulationParams(vehicles=2, days=len(DAYS), start_date=DAYS[0], interval_s=30, seed=7,
                                  fault_fraction=0.5, file_format="mixed")
        simulated = simulate_fleet(params, lake)
        before = set(os.environ)
        ingest = _run("bms_ingest")
        features = _run("bms_features")
        for name in set(os.environ) - before:  # dag.test() leaves the task context (AIRFLOW_CTX_*) exported
            if name.startswith("AIRFLOW_CTX_"):
                del os.environ[name]
        yield {"settings": settings, "lake": lake, "bucket": bucket, "s3": s3, "simulated": simulated,
               "ingest": ingest, "features": features, "athena": boto3.client("athena", endpoint_url=moto_endpoint,
                                                                                region_name=REGION),
               "glue": boto3.client("glue", endpoint_url=moto_endpoint, region_name=REGION)}


def _athena_executions(flow: dict) -> list[dict]:
    """The statements moto's Athena received in this flow's Glue database, oldest first."""
    athena, database = flow["athena"], flow["settings"].glue_database
    executions = [athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]
                  for i in athena.list_query_executions()["QueryExecutionIds"]]
    mine = [e for e in executions if e.get("QueryExecutionContext", {}).get("Database") == database]
    return sorted(mine, key=lambda e: e["Status"]["SubmissionDateTime"])


def test_bms_ingest_on_s3_writes_frames_manifest_and_the_glue_catalog(aws_flow: dict) -> None:
    run, lake, s3, bucket = aws_flow["ingest"], aws_flow["lake"], aws_flow["s3"], aws_flow["bucket"]
    assert run.state == "success"
    assert _task_states(run) == {"wait_for_landing_objects": ("success", 1), "ingest": ("success", 1),
                                 "refresh_catalog": ("success", 1)}

    manifest = load_manifest(lake)
    landing = [key.removeprefix("lake/") for key in _bucket_keys(s3, bucket, "lake/landing/")]
    assert sorted(manifest) == landing and len(landing) == 4  # 2 vehicles x 2 days, every upload recorded
    assert all(entry.status == "ingested" and entry.reconciles() for entry in manifest.values())
    accepted = sum(e.accepted for e in manifest.values())
    assert accepted == aws_flow["simulated"].frames
    frame_keys = _bucket_keys(s3, bucket, "lake/frames/")
    assert {key.split("/")[2] for key in frame_keys} == {f"dt={d}" for d in DAYS}
    assert sum(lake.read_parquet(key.removeprefix("lake/")).num_rows for key in frame_keys) == accepted

    extra = asset_event_extra("frames", run.run_id)
    assert extra["dates"] == [d.isoformat() for d in DAYS] and extra["accepted"] == accepted

    tables = aws_flow["glue"].get_tables(DatabaseName=aws_flow["settings"].glue_database)["TableList"]
    assert {t["Name"] for t in tables} >= {"frames", "daily_objects", "cell_daily", "manifest", "quarantine"}
    frames_table = next(t for t in tables if t["Name"] == "frames")
    assert frames_table["StorageDescriptor"]["Location"] == f"s3://{bucket}/lake/frames/"


def test_bms_ingest_publishes_data_docs_to_the_lake(aws_flow: dict) -> None:
    extra = asset_event_extra("frames", aws_flow["ingest"].run_id)
    assert extra["data_docs"] == f"s3://{aws_flow['bucket']}/lake/reports/data_docs/index.html"
    keys = _bucket_keys(aws_flow["s3"], aws_flow["bucket"], "lake/reports/data_docs/")
    run_name = f"ingest_{extra['run_id']}"
    pages = [key for key in keys if key.startswith("lake/reports/data_docs/validations/")]
    assert len(pages) == 1 and f"/validations/frame_contract/{run_name}/" in pages[0] and pages[0].endswith(".html")
    assert run_name in aws_flow["lake"].read_bytes("reports/data_docs/index.html").decode()


def test_bms_features_sends_its_queries_to_athena_and_refuses_an_empty_answer(aws_flow: dict) -> None:
    run, settings, lake = aws_flow["features"], aws_flow["settings"], aws_flow["lake"]
    assert run.state == "failed"
    states = _task_states(run)
    assert states["touched_dates"] == ("success", 1)
    assert states["compute_daily"] == ("failed", 1)  # AthenaOutputMissing is final: no retry asks Athena again
    assert states["refresh_catalog"][0] == "upstream_failed"

    plan = plan_chunk(settings.glue_database, lake, run.run_id, DAYS)
    features = [e for e in _athena_executions(aws_flow) if not e["Query"].startswith("CREATE OR REPLACE VIEW")]
    assert [e["Query"] for e in features] == [plan.cell_daily_statement, plan.daily_statement]
    for execution in features:
        assert execution["WorkGroup"] == "primary"
        assert execution["ResultConfiguration"]["OutputLocation"] == (
            f"{settings.athena_output}{execution['QueryExecutionId']}.csv")
    name = run_name(run.run_id)
    assert plan.staging_prefix == f"{STAGING_PREFIX}/{name}/2026-01-01_2026-01-02/"
    assert f"external_location = 's3://{aws_flow['bucket']}/lake/{plan.staging_prefix}cell_daily/'" in plan.cell_daily_statement

    # Nothing was placed, and nothing of the run is left: no staged object, no temporary table.
    s3, bucket = aws_flow["s3"], aws_flow["bucket"]
    assert _bucket_keys(s3, bucket, "lake/daily/") == [] and _bucket_keys(s3, bucket, "lake/cell_daily/") == []
    assert _bucket_keys(s3, bucket, f"lake/{STAGING_PREFIX}/") == []
    tables = {t["Name"] for t in aws_flow["glue"].get_tables(DatabaseName=settings.glue_database)["TableList"]}
    assert plan.temp_table not in tables


# ---------------------------------------------------------------------------------------------- ingest's Data Docs on S3


def _validate_into(site: Path, batch: str) -> None:
    """One Great Expectations validation of two good frames, its Data Docs written into `site`."""
    frames = frames_table([frame(VIN_A, "2026-01-05T08:00:00", current=0.5, cells=[3700, 3690]),
                           frame(VIN_A, "2026-01-05T08:00:30", current=0.5, cells=[3701, 3690])])
    report = validate_frames(frames, batch, site, dt.datetime(2016, 1, 1, tzinfo=dt.UTC),
                             dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert report.success


def test_the_data_docs_mirror_uploads_only_what_a_run_changed(aws_settings, aws_client, s3_bucket: str) -> None:
    lake = Lake.from_settings(aws_settings)
    s3 = aws_client("s3")
    with mirrored_site(lake, "reports/data_docs", aws_settings) as site:
        _validate_into(site, "ingest first")
    first = {key: s3.head_object(Bucket=s3_bucket, Key=key)["ETag"]
             for key in _bucket_keys(s3, s3_bucket, "lake/reports/data_docs/")}
    assert s3.head_object(Bucket=s3_bucket, Key="lake/reports/data_docs/index.html")["ContentType"] == "text/html"
    assert s3.head_object(Bucket=s3_bucket, Key="lake/reports/data_docs/static/styles/data_docs_default_styles.css"
                          )["ContentType"] == "text/css"

    with mirrored_site(lake, "reports/data_docs", aws_settings) as site:
        _validate_into(site, "ingest second")
    second = {key: s3.head_object(Bucket=s3_bucket, Key=key)["ETag"]
              for key in _bucket_keys(s3, s3_bucket, "lake/reports/data_docs/")}
    added = sorted(second.keys() - first.keys())
    assert len(added) == 2 and all("/ingest_second/" in key for key in added)  # its result and its page
    assert first.keys() <= second.keys()
    assert second["lake/reports/data_docs/index.html"] != first["lake/reports/data_docs/index.html"]
    index = lake.read_bytes("reports/data_docs/index.html").decode()
    assert "ingest_first" in index and "ingest_second" in index
    static = [key for key in first if "/static/" in key]
    assert static and all(second[key] == first[key] for key in static)


def test_the_data_docs_mirror_follows_the_lake_and_deletes_what_ge_removed(aws_settings, aws_client, s3_bucket: str,
                                                                          tmp_path: Path) -> None:
    lake = Lake.from_settings(aws_settings)
    with mirrored_site(lake, "reports/data_docs", aws_settings) as site:
        (site / "validations").mkdir()
        (site / "validations" / "old.html").write_text("<p>old</p>")
        (site / "index.html").write_text("<p>index</p>")
    with mirrored_site(lake, "reports/data_docs", aws_settings) as site:
        (site / "validations" / "old.html").unlink()  # as GE prunes a result's page
    assert _bucket_keys(aws_client("s3"), s3_bucket, "lake/reports/data_docs/") == ["lake/reports/data_docs/index.html"]

    # A run that died between GE and publishing left a local edit: the next fetch puts the lake's copy back.
    folder = mirror_folder(aws_settings, lake, "reports/data_docs")
    (folder / "index.html").write_text("<p>unpublished</p>")
    assert fetch(lake, "reports/data_docs", folder) == 1
    assert (folder / "index.html").read_text() == "<p>index</p>"
    # A fresh worker (another home) fetches the whole site.
    other = tmp_path / "other-site"
    assert fetch(lake, "reports/data_docs", other) == 1 and (other / "index.html").read_text() == "<p>index</p>"
