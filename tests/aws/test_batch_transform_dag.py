"""bms_batch_inference through Airflow's dag.test() with CELLGUARD_BACKEND=aws: Batch Transform, DynamoDB, S3, Glue.

Everything AWS is the session's moto server. moto's transform jobs run nothing, so the test-only stand-in of
test_sagemaker_batch_transform runs the job's Model (inference.py from its code tarball, the registry archive) over
the job's input parts and writes their `.out` objects, as Batch Transform would. What this proves: on the aws
backend the DAG scores its windows with one transform job named from the Airflow run id, reads the probabilities
back in row order (they equal predict_fn's on the same windows), writes predictions to the S3 lake and DynamoDB,
opens alert episodes there, registers the Glue tables, and a second run changes nothing.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from e2e.airflow_events import migrate_airflow_db
from serving.registry_builders import promote
from training.daily_builders import write_synthetic_daily

from pipelines.config import Settings
from pipelines.features.windows import daily_columns_for, inference_window_matrix
from pipelines.serving.inference import predict_fn
from pipelines.serving.model_loading import load_registered
from pipelines.serving.sagemaker_deploy import model_name
from pipelines.storage import daily_zone
from pipelines.storage.aws import aws_client, resource_name
from pipelines.storage.dynamodb_event_store import DynamoDbEventStore
from pipelines.storage.lake import Lake

from .test_sagemaker_batch_transform import model_archive, transform_stand_in  # noqa: F401 (fixtures)
from .test_sagemaker_training import sagemaker, sagemaker_settings  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
AS_OF = [date(2026, 3, 10), date(2026, 3, 11)]


def _run(conf: dict):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "bms_batch_inference.py"))
    assert bag.import_errors == {}
    return bag.dags["bms_batch_inference"].test(run_conf=conf)


def _batch_objects(lake: Lake, version: str) -> dict[str, bytes]:
    keys = [f"predictions/dt={day.isoformat()}/batch-{version}.parquet" for day in AS_OF]
    return {key: lake.read_bytes(key) for key in keys}


def test_bms_batch_inference_scores_on_batch_transform_and_publishes(sagemaker_settings: Settings,  # noqa: F811
                                                                     sagemaker,  # noqa: F811
                                                                     model_archive: bytes,  # noqa: F811
                                                                     transform_stand_in) -> None:  # noqa: F811
    client, _ = sagemaker
    migrate_airflow_db()
    lake = Lake.from_settings(sagemaker_settings)
    write_synthetic_daily(lake)
    version = promote(lake, model_archive)  # the signals6 champion

    run = _run({"dates": [day.isoformat() for day in AS_OF], "feature_set": "signals6"})

    assert run.state == "success"
    (job,) = client.list_transform_jobs()["TransformJobSummaries"]
    name = job["TransformJobName"]
    assert name.startswith(resource_name("cellguard-transform", run.run_id, "")[:40]) and len(name) <= 63
    assert transform_stand_in.jobs == [name]
    assert client.describe_transform_job(TransformJobName=name)["ModelName"] == model_name(version)

    # the transform's probabilities, row by row, are predict_fn's on the same windows
    loaded = load_registered(lake, version)
    daily = daily_zone.read_daily(lake, AS_OF[0] - timedelta(days=14), AS_OF[-1] - timedelta(days=1),
                                  columns=daily_columns_for(loaded.model.feature_names))
    windows = inference_window_matrix(daily, AS_OF, loaded.model.feature_names)
    keys = zip(windows.keys["vin"].to_pylist(), windows.keys["as_of"].to_pylist(), strict=True)
    expected = dict(zip(keys, predict_fn(windows.matrix(np.float32), loaded.model).tolist(), strict=True))
    objects = _batch_objects(lake, version)
    published = [row for data in objects.values() for row in pq.read_table(pa.BufferReader(data)).to_pylist()]
    assert len(published) == len(expected) == 48  # 24 vehicles × 2 dates
    for row in published:
        assert np.float32(row["probability"]) == np.float32(expected[(row["vin"], row["as_of"])])
        assert row["source"] == "batch" and row["model_version"] == version

    store = DynamoDbEventStore.from_settings(sagemaker_settings)
    stored = store.predictions_between(AS_OF[0], AS_OF[-1])
    assert sorted(r["request_id"] for r in stored) == sorted(r["request_id"] for r in published)
    alarming_first_day = {r["vin"] for r in published if r["alarm"] and r["as_of"] == AS_OF[0]}
    episodes = store.alerts_between(AS_OF[0], AS_OF[-1])
    assert alarming_first_day and alarming_first_day <= {e["vin"] for e in episodes}
    assert len({(e["vin"], e["feature_set"]) for e in episodes}) == len(episodes)  # one episode per run of alarms
    glue = aws_client("glue", sagemaker_settings)
    tables = {t["Name"] for t in glue.get_tables(DatabaseName=sagemaker_settings.glue_database)["TableList"]}
    assert {"predictions_objects", "alerts"} <= tables  # predictions_objects is under the `predictions` view

    again = _run({"dates": [day.isoformat() for day in AS_OF], "feature_set": "signals6"})

    assert again.state == "success"
    assert _batch_objects(lake, version) == objects  # the same bytes
    assert len(store.predictions_between(AS_OF[0], AS_OF[-1])) == len(stored)
    assert len(store.alerts_between(AS_OF[0], AS_OF[-1])) == len(episodes)
    assert len(client.list_transform_jobs()["TransformJobSummaries"]) == 2  # a new run id: a job of its own
