"""AWS sessions and clients for the `aws` backend: one place that decides credentials, region and endpoints.

Credentials never come from CellGuard settings. Inside an Airflow task they come from the `aws_default`
connection (Airflow's AwsBaseHook, which falls back to the standard chain when the connection is missing or
empty); everywhere else (the CLI, the API, tests) from the standard AWS chain (environment, profile, instance or
container role). The region is CELLGUARD_AWS_REGION, else the chain's. Every client goes to
CELLGUARD_AWS_ENDPOINT_URL when it is set (a moto server, LocalStack), S3 to CELLGUARD_S3_ENDPOINT_URL (MinIO).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING, Any

from pipelines.config import Settings

if TYPE_CHECKING:
    import boto3

AIRFLOW_CONNECTION = "aws_default"
MAX_RESOURCE_NAME = 63  # SageMaker job, model and endpoint names; S3 bucket names
_RETRIES = {"mode": "standard", "total_max_attempts": 10}  # throttling and 5xx, with botocore's backoff
_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")


def in_airflow_task() -> bool:
    """True inside a running Airflow task (its runner exports AIRFLOW_CTX_DAG_ID before the task starts)."""
    return bool(os.environ.get("AIRFLOW_CTX_DAG_ID"))


def aws_session(settings: Settings) -> boto3.Session:
    """A boto3 session: the `aws_default` connection's inside an Airflow task, the standard chain's elsewhere."""
    if in_airflow_task():
        try:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        except ImportError:  # Airflow without the amazon provider: the standard chain
            pass
        else:
            return AwsBaseHook(aws_conn_id=AIRFLOW_CONNECTION).get_session(region_name=settings.aws_region)
    import boto3

    return boto3.Session(region_name=settings.aws_region)


def endpoint_for(service: str, settings: Settings) -> str | None:
    """The endpoint a client of this service goes to (None: AWS's own, or the SDK's AWS_ENDPOINT_URL_*)."""
    return settings.s3_endpoint_url if service == "s3" else settings.aws_endpoint_url


def aws_client(service: str, settings: Settings, session: boto3.Session | None = None) -> Any:
    """A boto3 client for a service, at the configured endpoint, retrying throttling with backoff."""
    from botocore.config import Config

    session = session or aws_session(settings)
    return session.client(service, endpoint_url=endpoint_for(service, settings), region_name=settings.aws_region,
                          config=Config(retries=_RETRIES))


def lake_credentials(settings: Settings) -> dict[str, str] | None:
    """Keys for pyarrow's S3 filesystem when they come from the Airflow connection; None lets pyarrow use the chain.

    pyarrow's filesystem cannot ask Airflow for the connection, so inside a task it gets the session's current
    credentials (a role session's last at least an hour, longer than a task here)."""
    if not in_airflow_task():
        return None
    credentials = aws_session(settings).get_credentials()
    if credentials is None:
        return None
    frozen = credentials.get_frozen_credentials()
    keys = {"access_key": frozen.access_key, "secret_key": frozen.secret_key}
    if frozen.token:
        keys["session_token"] = frozen.token
    return keys


def point_awswrangler_at(settings: Settings) -> None:
    """Send awswrangler's S3, Glue, Athena, STS and DynamoDB clients to the configured endpoints.

    awswrangler takes endpoints from its process-wide config only, so this sets it (each call sets the same
    values from the settings; a process talks to one AWS)."""
    import awswrangler as wr

    for service in ("s3", "glue", "athena", "sts", "dynamodb"):
        setattr(wr.config, f"{service}_endpoint_url", endpoint_for(service, settings))


def resource_name(*parts: str, max_length: int = MAX_RESOURCE_NAME) -> str:
    """A name AWS accepts for jobs, models, endpoints and buckets, derived from its parts (a run id among them).

    Lowercase letters, digits and hyphens, starting with a letter, at most `max_length` characters. When the parts
    are longer, the end is cut and a hash of the whole is appended, so two different run ids never share a name."""
    if not parts or not any(p.strip() for p in parts):
        raise ValueError("an AWS resource name needs at least one non-empty part (a prefix or a run id)")
    if max_length < 20:
        raise ValueError(f"an AWS resource name of at most {max_length} characters leaves no room for its hash")
    joined = "-".join(parts)
    name = _NAME_UNSAFE.sub("-", joined.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"cg-{name}".rstrip("-")
    if name == joined and len(name) <= max_length:
        return name
    digest = hashlib.sha256(joined.encode()).hexdigest()[:10]  # the original text: 'Run_1' and 'run-1' differ
    return f"{name[:max_length - len(digest) - 1].rstrip('-')}-{digest}"
