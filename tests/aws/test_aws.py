"""pipelines/storage/aws.py: credentials from Airflow's aws_default or the standard chain, endpoints, resource names."""

from __future__ import annotations

import json
import re

import awswrangler as wr
import pytest

from pipelines.config import Settings
from pipelines.storage.aws import (
    aws_client,
    aws_session,
    endpoint_for,
    lake_credentials,
    point_awswrangler_at,
    resource_name,
)
from pipelines.storage.lake import Lake

CONNECTION = {"conn_type": "aws", "login": "AKIAFROMAIRFLOWCONN", "password": "not-a-real-secret"}


def test_clients_go_to_the_configured_endpoint_and_region(aws_settings: Settings, moto_endpoint: str, s3_bucket: str) -> None:
    for service in ("s3", "glue", "athena", "dynamodb", "sagemaker"):
        client = aws_client(service, aws_settings)
        assert (client.meta.endpoint_url, client.meta.region_name) == (moto_endpoint, "eu-west-1")
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 10}
    assert s3_bucket in [b["Name"] for b in aws_client("s3", aws_settings).list_buckets()["Buckets"]]


def test_s3_may_have_its_own_endpoint(aws_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLGUARD_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    from pipelines.config import load_settings

    settings = load_settings()
    assert endpoint_for("s3", settings) == "http://127.0.0.1:9000"
    assert endpoint_for("glue", settings) == aws_settings.aws_endpoint_url
    point_awswrangler_at(settings)
    assert (wr.config.s3_endpoint_url, wr.config.glue_endpoint_url, wr.config.athena_endpoint_url) == (
        "http://127.0.0.1:9000", aws_settings.aws_endpoint_url, aws_settings.aws_endpoint_url)
    point_awswrangler_at(aws_settings)
    assert wr.config.s3_endpoint_url == aws_settings.aws_endpoint_url


def test_outside_airflow_credentials_come_from_the_standard_chain(aws_settings: Settings) -> None:
    credentials = aws_session(aws_settings).get_credentials()
    assert (credentials.access_key, credentials.method) == ("testing", "env")
    assert lake_credentials(aws_settings) is None  # pyarrow finds the same chain itself


def test_inside_an_airflow_task_credentials_come_from_aws_default(aws_settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                                   s3_bucket: str) -> None:
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "bms_ingest")  # what Airflow's task runner exports before a task runs
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(CONNECTION))
    session = aws_session(aws_settings)
    credentials = session.get_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("AKIAFROMAIRFLOWCONN", "not-a-real-secret")
    assert session.region_name == "eu-west-1"
    assert lake_credentials(aws_settings) == {"access_key": "AKIAFROMAIRFLOWCONN", "secret_key": "not-a-real-secret"}
    lake = Lake.from_settings(aws_settings)
    lake.write_bytes("probe.txt", b"written with the connection's keys")
    assert lake.read_bytes("probe.txt") == b"written with the connection's keys"

    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT")  # no connection: Airflow falls back to the standard chain
    assert aws_session(aws_settings).get_credentials().access_key == "testing"


@pytest.mark.parametrize("run_id", [
    "manual__2026-11-22T11:34:19.123456+00:00",
    "scheduled__2026-11-22T00:00:00+00:00",
    "asset_triggered__2026-11-22T11:34:19.123456+00:00_a1b2c3d4",
])
def test_resource_names_from_airflow_run_ids_are_valid_and_distinct(run_id: str) -> None:
    name = resource_name("cellguard-train-full", run_id)
    assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", name) and len(name) <= 63
    assert "--" not in name
    assert name == resource_name("cellguard-train-full", run_id)  # deterministic: a retried task finds its job
    assert name != resource_name("cellguard-train-full", run_id.replace("-22T", "-23T"))  # the next run
    assert name != resource_name("cellguard-train-signals6", run_id)


def test_resource_names_keep_what_is_already_valid_and_hash_what_is_not() -> None:
    assert resource_name("cellguard", "train", "20260101t000000z") == "cellguard-train-20260101t000000z"
    assert re.fullmatch(r"cellguard-run-1-[0-9a-f]{10}", resource_name("cellguard", "Run_1"))
    assert resource_name("cellguard", "Run_1") != resource_name("cellguard", "run-1")  # different ids, different names
    assert resource_name("2026-run").startswith("cg-2026-run")  # a name starts with a letter
    long = resource_name("cellguard-endpoint", "x" * 100)
    assert len(long) == 63 and long.startswith("cellguard-endpoint-xxx")
    assert len(resource_name("a" * 40, "b" * 40, max_length=32)) == 32
    with pytest.raises(ValueError, match="needs at least one non-empty part"):
        resource_name("", " ")
