"""Every CellGuard setting, read from CELLGUARD_* environment variables in one place."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

# name -> (default, description); the README's configuration table is generated from this.
SETTINGS_DOC: dict[str, tuple[str, str]] = {
    "CELLGUARD_BACKEND": ("local", "`local` (folder lake, DuckDB catalog, SQL event store) or `aws` (an `s3://` lake, Glue tables and Athena views as the catalog, DynamoDB as the event store)."),
    "CELLGUARD_HOME": ("./var", "Folder for local state: the lake, the catalog, Airflow's home."),
    "CELLGUARD_LAKE_URI": ("file://$CELLGUARD_HOME/lake", "Root of the lake: `file:///…` or `s3://bucket/prefix`."),
    "CELLGUARD_CATALOG_PATH": ("$CELLGUARD_HOME/catalog.duckdb", "DuckDB catalog file (views over the lake)."),
    "CELLGUARD_MAPPINGS_DIR": ("", "Extra column-mapping YAML files; they override built-ins of the same name."),
    "CELLGUARD_MAX_CLOCK_SKEW_HOURS": ("24", "Frames stamped further than this in the future are quarantined."),
    "CELLGUARD_EARLIEST_TS": ("2016-01-01", "Frames stamped before this date are quarantined (GB/T 32960-2016)."),
    "CELLGUARD_INGEST_MAX_OBJECTS": ("1000", "Most landing objects one ingest run takes; the rest wait for the next run."),
    "CELLGUARD_DATA_DOCS": ("1", "`0` skips building Great Expectations Data Docs HTML (validation still runs)."),
    "CELLGUARD_S3_ENDPOINT_URL": ("$CELLGUARD_AWS_ENDPOINT_URL", "S3-compatible endpoint of an `s3://` lake (MinIO, moto) instead of AWS's; only S3 goes there."),
    "CELLGUARD_PROMOTION_AP_MARGIN": ("0.02", "A challenger replaces the champion unless its average precision on the same test window is lower by more than this."),
    "CELLGUARD_MODEL_SERVER_PORT": ("8081", "Port of `cellguard serve-model` (8080 is Airflow's UI locally; use 8080 inside a SageMaker-style container)."),
    "CELLGUARD_MODEL_POLL_SECONDS": ("30", "How often the model server checks the champion pointers and swaps in a new champion."),
    "CELLGUARD_EVENT_STORE_URL": ("sqlite:///$CELLGUARD_HOME/events.sqlite", "Event store of every prediction and alert (SQLAlchemy URL): SQLite, or PostgreSQL such as `postgresql+psycopg://user@host/db` once a driver is installed (leave the password out: libpq reads `PGPASSWORD` or `~/.pgpass`)."),
    "CELLGUARD_PREDICTION_FLUSH_ROWS": ("500", "The prediction API writes its buffered predictions to the lake's `predictions/` zone when this many are waiting."),
    "CELLGUARD_PREDICTION_FLUSH_SECONDS": ("30", "The prediction API also writes them when the oldest has waited this many seconds."),
    "CELLGUARD_ALERT_WEBHOOK": ("", "Webhook (`https://…`, Slack-compatible JSON `{\"text\": …}`) that each new alarm episode and each failed `bms_batch_inference` run is posted to; unset: alerts go to the event store's `alerts` table only. Treat it as a secret (Slack's URL holds a token): it is never logged."),
    "CELLGUARD_ALERT_QUIET_DAYS": ("3", "An alarm episode ends only after this many days in a row without an alarm: an alarm within them continues the episode without a new alert (1: the first quiet day ends it). A hysteresis, so a vehicle hovering at the threshold is announced once."),
    "CELLGUARD_API_TOKEN": ("", "Bearer token every prediction API route but `/healthz` requires (16+ characters of `A–Z a–z 0–9 . _ ~ + / = -`). Unset: `cellguard serve-api` generates one at each start, prints it and writes it to `$CELLGUARD_HOME/api-token` (mode 600)."),
    "CELLGUARD_API_PORT": ("8000", "Port of `cellguard serve-api`, the prediction API."),
    "CELLGUARD_SAGEMAKER_ROLE_ARN": ("", "IAM role SageMaker training jobs, models and transform jobs run as (`arn:aws:iam::<account>:role/<name>`); required when `CELLGUARD_BACKEND=aws` trains or deploys."),
    "CELLGUARD_SAGEMAKER_TRAINING_INSTANCE_TYPE": ("ml.m5.xlarge", "Instance type of SageMaker training jobs."),
    "CELLGUARD_SAGEMAKER_ENDPOINT_INSTANCE_TYPE": ("ml.m5.large", "Instance type of the SageMaker endpoint serving each champion."),
    "CELLGUARD_SAGEMAKER_TRANSFORM_INSTANCE_TYPE": ("ml.m5.xlarge", "Instance type of SageMaker Batch Transform jobs."),
    "CELLGUARD_BATCH_SCORING": ("auto", "Where `bms_batch_inference` scores its windows: `transform` (a SageMaker Batch Transform job of the champion), `in-process` (XGBoost on the Airflow worker) or `auto` (Batch Transform when `CELLGUARD_BACKEND=aws`, else in process). Reasons are computed in process either way."),
    "CELLGUARD_SAGEMAKER_POLL_SECONDS": ("30", "How often a DAG task checks a SageMaker job or endpoint it waits for (at most 600)."),
    "CELLGUARD_SUPERSET_PORT": ("8088", "Port of Superset (`make superset`), on 127.0.0.1."),
    "CELLGUARD_API_WORKERS": ("1", "Processes of `cellguard serve-api`. Scoring a request is Python work that holds the GIL, so one process uses about one core: give it one per core the API may use. Workers read their settings from the environment and share the event store and the lake."),
    "CELLGUARD_API_ACCESS_LOG": ("0", "`1` logs one line per prediction API request (uvicorn's access log). Off by default: under load, writing it costs the API more than scoring a request; errors are logged either way."),
    "CELLGUARD_API_MAX_ITEMS": ("500", "Most items one `POST /v1/predictions` list may hold (the body is also limited to 1 MB)."),
    "CELLGUARD_AWS_REGION": ("", "AWS region of every AWS resource; unset: the standard AWS chain's (`AWS_REGION`, `AWS_DEFAULT_REGION`, the profile). Credentials never come from CellGuard settings: inside Airflow tasks from the `aws_default` connection, elsewhere (and when that connection is missing) from the standard AWS chain."),
    "CELLGUARD_AWS_ENDPOINT_URL": ("", "One endpoint for every AWS client CellGuard opens (Glue, Athena, DynamoDB, SageMaker, and S3 unless `CELLGUARD_S3_ENDPOINT_URL` is set), such as a moto server or LocalStack; unset: AWS's own endpoints. Set it here rather than `AWS_ENDPOINT_URL`: boto3 honours that variable, pyarrow's S3 filesystem does not."),
    "CELLGUARD_GLUE_DATABASE": ("cellguard", "Glue database holding the lake's tables and the Athena views (`CELLGUARD_BACKEND=aws`); lowercase letters, digits and `_`."),
    "CELLGUARD_ATHENA_WORKGROUP": ("primary", "Athena workgroup the catalog's view DDL and the SQL run in."),
    "CELLGUARD_ATHENA_OUTPUT": ("$CELLGUARD_LAKE_URI/_athena/", "Where Athena writes query results (`s3://…`); a workgroup that enforces its own location overrides it."),
    "CELLGUARD_DYNAMODB_TABLE_PREFIX": ("cellguard-", "Prefix of the DynamoDB event store's tables (`<prefix>predictions`, `<prefix>alerts`) when `CELLGUARD_BACKEND=aws`."),
}


@dataclass(frozen=True)
class Secret:
    """A setting never shown: str() and repr() hide it (so `cellguard config` does not print it); reveal() gives it."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        """The secret itself."""
        return self.value

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with `load_settings()`."""

    backend: str
    home: Path
    lake_uri: str
    catalog_path: Path
    mappings_dir: Path | None
    max_clock_skew_hours: float
    earliest_ts: str
    ingest_max_objects: int
    data_docs: bool
    s3_endpoint_url: str | None
    promotion_ap_margin: float
    model_server_port: int
    model_poll_seconds: float
    event_store_url: str
    prediction_flush_rows: int
    prediction_flush_seconds: float
    alert_quiet_days: int
    alert_webhook: Secret | None  # a webhook URL often holds its token: shown as ***
    api_token: Secret | None
    api_port: int
    api_max_items: int
    api_access_log: bool
    api_workers: int
    superset_port: int
    sagemaker_role_arn: str | None
    sagemaker_training_instance_type: str
    sagemaker_endpoint_instance_type: str
    sagemaker_transform_instance_type: str
    sagemaker_poll_seconds: float
    batch_scoring: str
    aws_region: str | None
    aws_endpoint_url: str | None
    glue_database: str
    athena_workgroup: str
    athena_output: str | None  # None when the lake is not on S3 and no location is set
    dynamodb_table_prefix: str


def _env(name: str) -> str:
    return os.environ.get(name, "").strip() or SETTINGS_DOC[name][0]


def _promotion_ap_margin() -> float:
    """CELLGUARD_PROMOTION_AP_MARGIN as a float in [0, 1]."""
    text = _env("CELLGUARD_PROMOTION_AP_MARGIN")
    try:
        margin = float(text)
    except ValueError:
        margin = float("nan")
    if not 0.0 <= margin <= 1.0:  # also rejects NaN
        raise ValueError(f"CELLGUARD_PROMOTION_AP_MARGIN must be a number between 0 and 1 (an average precision "
                         f"difference), not {text!r}")
    return margin


def _port(name: str) -> int:
    """A CELLGUARD_*_PORT setting as a TCP port number."""
    text = _env(name)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{name} must be a port number between 1 and 65535, not {text!r}")
    return int(text)


def _positive_seconds(name: str) -> float:
    """A CELLGUARD_* setting as a positive, finite number of seconds."""
    text = _env(name)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0.0 < seconds < float("inf"):  # also rejects NaN
        raise ValueError(f"{name} must be a number of seconds above 0, not {text!r}")
    return seconds


def _event_store_url(home: Path) -> str:
    """CELLGUARD_EVENT_STORE_URL: a SQLite or PostgreSQL SQLAlchemy URL (default: events.sqlite in the home)."""
    url = os.environ.get("CELLGUARD_EVENT_STORE_URL", "").strip() or f"sqlite:///{home / 'events.sqlite'}"
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)  # never echo a password
        raise ValueError(f"CELLGUARD_EVENT_STORE_URL must be a SQLAlchemy URL of SQLite or PostgreSQL, such as "
                         f"sqlite:////abs/path/events.sqlite or postgresql+psycopg://user@host/db, not {shown!r}")
    return url


def _prediction_flush_rows() -> int:
    """CELLGUARD_PREDICTION_FLUSH_ROWS as a positive whole number."""
    text = _env("CELLGUARD_PREDICTION_FLUSH_ROWS")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"CELLGUARD_PREDICTION_FLUSH_ROWS must be a whole number of predictions above 0, not {text!r}")
    return int(text)


def _alert_webhook() -> Secret | None:
    """CELLGUARD_ALERT_WEBHOOK: an http(s) URL (kept as a Secret), or None when unset."""
    url = os.environ.get("CELLGUARD_ALERT_WEBHOOK", "").strip()
    if not url:
        return None
    match = re.match(r"^(https?)://([^/?#@\s]+)(?:[/?#]\S*)?$", url)
    if not match:
        shown = re.sub(r"^((?:[^:/]*://)?[^/]*)/.*$", r"\1/…", url)  # the path may hold a token: never echo it
        raise ValueError(f"CELLGUARD_ALERT_WEBHOOK must be an http:// or https:// URL such as "
                         f"https://hooks.slack.com/services/…, not {shown!r}")
    return Secret(url)


def _api_token() -> Secret | None:
    """CELLGUARD_API_TOKEN (None when unset): a bearer token of 16+ URL-safe characters."""
    text = os.environ.get("CELLGUARD_API_TOKEN", "").strip()
    if not text:
        return None
    if not re.fullmatch(r"[A-Za-z0-9._~+/=-]{16,}", text):  # RFC 6750 token characters; the value is never echoed
        raise ValueError(f"CELLGUARD_API_TOKEN must be at least 16 characters of A-Z a-z 0-9 . _ ~ + / = - "
                         f"(it has {len(text)}); unset it and `cellguard serve-api` generates one")
    return Secret(text)


def _alert_quiet_days() -> int:
    """CELLGUARD_ALERT_QUIET_DAYS as a whole number of days from 1 to 30."""
    text = _env("CELLGUARD_ALERT_QUIET_DAYS")
    if not text.isdigit() or not 1 <= int(text) <= 30:
        raise ValueError(f"CELLGUARD_ALERT_QUIET_DAYS must be a whole number of days from 1 to 30, not {text!r}")
    return int(text)


def _api_max_items() -> int:
    """CELLGUARD_API_MAX_ITEMS as a positive whole number."""
    text = _env("CELLGUARD_API_MAX_ITEMS")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"CELLGUARD_API_MAX_ITEMS must be a whole number of request items above 0, not {text!r}")
    return int(text)


def _endpoint_url(name: str) -> str | None:
    """An endpoint setting (None when unset) as an http:// or https:// URL with a host."""
    url = os.environ.get(name, "").strip().rstrip("/")
    if url and not re.fullmatch(r"https?://[^/?#@\s]+", url):
        raise ValueError(f"{name} must be an http:// or https:// URL of a host and port, such as http://127.0.0.1:5000, "
                         f"not {url!r}")
    return url or None


def _batch_scoring() -> str:
    """CELLGUARD_BATCH_SCORING: auto, transform or in-process."""
    text = _env("CELLGUARD_BATCH_SCORING").lower()
    if text not in ("auto", "transform", "in-process"):
        raise ValueError(f"CELLGUARD_BATCH_SCORING must be auto, transform or in-process, not {text!r}")
    return text


def _aws_region() -> str | None:
    """CELLGUARD_AWS_REGION (None when unset): an AWS region name such as eu-west-1."""
    region = os.environ.get("CELLGUARD_AWS_REGION", "").strip()
    if region and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", region):
        raise ValueError(f"CELLGUARD_AWS_REGION must be an AWS region name such as eu-west-1, not {region!r}")
    return region or None


def _glue_database() -> str:
    """CELLGUARD_GLUE_DATABASE: a name Glue and Athena both accept without quoting."""
    name = _env("CELLGUARD_GLUE_DATABASE")
    if not re.fullmatch(r"[a-z0-9_]{1,255}", name):
        raise ValueError(f"CELLGUARD_GLUE_DATABASE must be 1-255 lowercase letters, digits or _ (Athena's rule), not {name!r}")
    return name


def _athena_workgroup() -> str:
    """CELLGUARD_ATHENA_WORKGROUP: a workgroup name (1-128 of A-Z a-z 0-9 . _ -)."""
    name = _env("CELLGUARD_ATHENA_WORKGROUP")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", name):
        raise ValueError(f"CELLGUARD_ATHENA_WORKGROUP must be 1-128 of A-Z a-z 0-9 . _ -, not {name!r}")
    return name


def _athena_output(lake_uri: str) -> str | None:
    """CELLGUARD_ATHENA_OUTPUT, by default `_athena/` below an S3 lake (None for a local lake)."""
    location = os.environ.get("CELLGUARD_ATHENA_OUTPUT", "").strip()
    if not location:
        return f"{lake_uri.rstrip('/')}/_athena/" if lake_uri.startswith("s3://") else None
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?", location):
        raise ValueError(f"CELLGUARD_ATHENA_OUTPUT must be an s3://bucket/prefix/ location, not {location!r}")
    return location if location.endswith("/") else f"{location}/"


def _dynamodb_table_prefix() -> str:
    """CELLGUARD_DYNAMODB_TABLE_PREFIX: leaves room for the longest table name within DynamoDB's 255 characters."""
    prefix = _env("CELLGUARD_DYNAMODB_TABLE_PREFIX")
    if not re.fullmatch(r"[A-Za-z0-9._-]{0,200}", prefix):
        raise ValueError(f"CELLGUARD_DYNAMODB_TABLE_PREFIX must be at most 200 of A-Z a-z 0-9 . _ -, not {prefix!r}")
    return prefix


def _api_workers() -> int:
    """CELLGUARD_API_WORKERS: 1 to 64 processes."""
    text = _env("CELLGUARD_API_WORKERS")
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ValueError(f"CELLGUARD_API_WORKERS must be a whole number of processes from 1 to 64, not {text!r}")
    return int(text)


def _sagemaker_role_arn() -> str | None:
    """CELLGUARD_SAGEMAKER_ROLE_ARN: an IAM role ARN, or None when unset."""
    role = os.environ.get("CELLGUARD_SAGEMAKER_ROLE_ARN", "").strip()
    if role and not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", role):
        raise ValueError(f"CELLGUARD_SAGEMAKER_ROLE_ARN must be the ARN of the IAM role SageMaker jobs and models "
                         f"run as, such as arn:aws:iam::123456789012:role/cellguard-sagemaker, not {role!r}")
    return role or None


def _instance_type(name: str) -> str:
    """A CELLGUARD_SAGEMAKER_*_INSTANCE_TYPE setting: ml.<family>.<size>."""
    value = _env(name)
    if not re.fullmatch(r"ml\.[a-z0-9-]+\.[a-z0-9]+", value):
        raise ValueError(f"{name} must be a SageMaker instance type such as ml.m5.xlarge, not {value!r}")
    return value


def _sagemaker_poll_seconds() -> float:
    """CELLGUARD_SAGEMAKER_POLL_SECONDS: seconds in (0, 600]."""
    text = _env("CELLGUARD_SAGEMAKER_POLL_SECONDS")
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 600:  # also refuses NaN
        raise ValueError(f"CELLGUARD_SAGEMAKER_POLL_SECONDS must be a number of seconds in (0, 600], not {text!r}")
    return seconds


def load_settings() -> Settings:
    """Read the environment now (not at import), so tests and tasks see current values."""
    home = Path(_env("CELLGUARD_HOME")).expanduser().resolve()
    lake_uri = os.environ.get("CELLGUARD_LAKE_URI", "").strip() or (home / "lake").as_uri()
    catalog = os.environ.get("CELLGUARD_CATALOG_PATH", "").strip() or str(home / "catalog.duckdb")
    backend = _env("CELLGUARD_BACKEND")
    if backend not in ("local", "aws"):
        raise ValueError(f"CELLGUARD_BACKEND must be 'local' or 'aws', not {backend!r}")
    mappings = os.environ.get("CELLGUARD_MAPPINGS_DIR", "").strip()
    aws_endpoint_url = _endpoint_url("CELLGUARD_AWS_ENDPOINT_URL")
    return Settings(
        backend=backend,
        home=home,
        lake_uri=lake_uri,
        catalog_path=Path(catalog).expanduser().resolve(),
        mappings_dir=Path(mappings).expanduser().resolve() if mappings else None,
        max_clock_skew_hours=float(_env("CELLGUARD_MAX_CLOCK_SKEW_HOURS")),
        earliest_ts=_env("CELLGUARD_EARLIEST_TS"),
        ingest_max_objects=int(_env("CELLGUARD_INGEST_MAX_OBJECTS")),
        data_docs=_env("CELLGUARD_DATA_DOCS") not in ("0", "false", "no"),
        s3_endpoint_url=_endpoint_url("CELLGUARD_S3_ENDPOINT_URL") or aws_endpoint_url,
        promotion_ap_margin=_promotion_ap_margin(),
        model_server_port=_port("CELLGUARD_MODEL_SERVER_PORT"),
        model_poll_seconds=_positive_seconds("CELLGUARD_MODEL_POLL_SECONDS"),
        event_store_url=_event_store_url(home),
        prediction_flush_rows=_prediction_flush_rows(),
        prediction_flush_seconds=_positive_seconds("CELLGUARD_PREDICTION_FLUSH_SECONDS"),
        alert_quiet_days=_alert_quiet_days(),
        alert_webhook=_alert_webhook(),
        api_token=_api_token(),
        api_port=_port("CELLGUARD_API_PORT"),
        api_max_items=_api_max_items(),
        api_access_log=_env("CELLGUARD_API_ACCESS_LOG") not in ("0", "false", "no"),
        api_workers=_api_workers(),
        superset_port=_port("CELLGUARD_SUPERSET_PORT"),
        sagemaker_role_arn=_sagemaker_role_arn(),
        sagemaker_training_instance_type=_instance_type("CELLGUARD_SAGEMAKER_TRAINING_INSTANCE_TYPE"),
        sagemaker_endpoint_instance_type=_instance_type("CELLGUARD_SAGEMAKER_ENDPOINT_INSTANCE_TYPE"),
        sagemaker_transform_instance_type=_instance_type("CELLGUARD_SAGEMAKER_TRANSFORM_INSTANCE_TYPE"),
        sagemaker_poll_seconds=_sagemaker_poll_seconds(),
        batch_scoring=_batch_scoring(),
        aws_region=_aws_region(),
        aws_endpoint_url=aws_endpoint_url,
        glue_database=_glue_database(),
        athena_workgroup=_athena_workgroup(),
        athena_output=_athena_output(lake_uri),
        dynamodb_table_prefix=_dynamodb_table_prefix(),
    )


def settings_table_markdown() -> str:
    """The configuration table for the README."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{default or '(unset)'}` | {text} |" for name, (default, text) in SETTINGS_DOC.items()]
    return "\n".join(rows)


assert len(SETTINGS_DOC) == len(fields(Settings)), "every setting is documented"
