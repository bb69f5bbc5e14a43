"""AWS tests: one moto server on loopback for the whole session, fake credentials, and settings pointing at it.

Every AWS test takes its endpoint from here (`moto_endpoint`, or `aws_settings` which sets CELLGUARD_BACKEND=aws
and CELLGUARD_AWS_ENDPOINT_URL). Each test gets its own bucket, Glue database and DynamoDB table prefix, so tests
share the server without seeing each other's resources.

What moto proves and what it does not: S3, Glue and DynamoDB keep state like AWS does, so reads after writes,
conditions and listings are real. Athena accepts queries and returns no rows, and SageMaker jobs write no
artifacts: tests of those prove request shapes, naming, idempotency and retries, never a query result.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from pipelines.config import Settings, load_settings

REGION = "eu-west-1"
# Fake, and only ever sent to the moto server on loopback.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Whatever the shell holds would otherwise reach boto3 or pyarrow before the fake keys, or send them elsewhere.
CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
           "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_GLUE",
           "AWS_ENDPOINT_URL_ATHENA", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SAGEMAKER",
           "AWS_ENDPOINT_URL_STS", "AIRFLOW_CTX_DAG_ID")


@pytest.fixture(scope="session", autouse=True)
def aws_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake credentials and a region for the session; no shared config files, no instance metadata lookups."""
    empty = tmp_path_factory.mktemp("aws-config")
    with pytest.MonkeyPatch.context() as patch:
        for name in CLEARED:
            patch.delenv(name, raising=False)
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_REGION", REGION)
        patch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(autouse=True)
def outside_airflow_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts outside any Airflow task: dag.test() leaves AIRFLOW_CTX_* exported in this process, which
    would make pipelines/storage/aws.py look for the aws_default connection."""
    for name in [name for name in os.environ if name.startswith("AIRFLOW_CTX_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def moto_endpoint(aws_environment: None) -> Iterator[str]:
    """The one moto server of the session, on 127.0.0.1 and a free port: its http:// URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request buries a failure's log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_client(moto_endpoint: str) -> Callable[..., Any]:
    """A boto3 client of the moto server, for a test to look at what the code under test did."""

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION,
                            config=Config(retries={"mode": "standard", "max_attempts": 3}))

    return client


def unique_name(prefix: str) -> str:
    """A fresh resource name: tests share the server, never a resource."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_bucket(aws_client: Callable[..., Any]) -> str:
    """A new, empty bucket."""
    name = unique_name("cellguard-test-")
    aws_client("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture
def aws_settings(tmp_path: Path, isolate_settings, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str,
                 s3_bucket: str) -> Settings:
    """CELLGUARD_BACKEND=aws: the lake in a fresh bucket, every client at the moto server, fresh Glue and DynamoDB names."""
    isolate_settings(tmp_path / "home", lake_uri=f"s3://{s3_bucket}/lake")
    monkeypatch.setenv("CELLGUARD_BACKEND", "aws")
    monkeypatch.setenv("CELLGUARD_AWS_REGION", REGION)
    monkeypatch.setenv("CELLGUARD_AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("CELLGUARD_GLUE_DATABASE", unique_name("cellguard_").replace("-", "_"))
    monkeypatch.setenv("CELLGUARD_DYNAMODB_TABLE_PREFIX", unique_name("cg-") + "-")
    return load_settings()
