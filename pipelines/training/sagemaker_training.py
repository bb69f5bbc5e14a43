"""SageMaker training for the `aws` backend: the same train.py in the XGBoost framework container (script mode).

One training run becomes one CreateTrainingJob request:

- image: the XGBoost framework container for the region, resolved by the sagemaker SDK from its bundled JSON
  (offline); XGBOOST_FRAMEWORK_VERSION matches the xgboost the local path trains with;
- code: a deterministic tarball of the `pipelines/` package, uploaded once per content to
  `_sagemaker/code/training-<sha>.tar.gz` in the lake; `sagemaker_program` names train.py inside it;
- channels `train` and `validation`: S3 prefixes holding the Parquet files the local path writes, under
  `_sagemaker/training/<job>/`;
- hyperparameters: the `--key value` arguments the local path passes, JSON-encoded as script mode expects;
- output: below the registry, `models/bms/_training/<job>/output/model.tar.gz`.

The job name derives from the run id, the feature set and a digest of everything the job would compute from,
so a retry of the same run with the same inputs finds its job and waits for it (or reuses its result) instead of
starting another; changed inputs get a new job. A job that failed or was stopped is never reused: the retry
starts `<name>-a2`, `<name>-a3`, ... The artifact SageMaker packs is rewritten in train.py's canonical form
(fixed times and owners), so a model gets the same bytes, fingerprint and registry entry as in the local path.

SageMaker needs an execution role and instance types, read here from CELLGUARD_SAGEMAKER_* variables
(`SageMakerConfig.from_environment`). Credentials come from `pipelines.storage.aws` (the `aws_default`
connection inside Airflow tasks, else the standard chain), never from these settings.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.config import Settings, load_settings
from pipelines.storage.aws import aws_client, resource_name
from pipelines.storage.lake import Lake
from pipelines.training import train

if TYPE_CHECKING:
    from pipelines.training.pipeline import TrainingRequest

log = logging.getLogger(__name__)

XGBOOST_FRAMEWORK_VERSION = "3.2-0"  # the container's XGBoost 3.2, as requirements.txt pins for the local path
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the `pipelines/` folder
TRAIN_ENTRY_POINT = "pipelines/training/train.py"  # relative to the code tarball's root
CODE_PREFIX = "_sagemaker/code/"
CHANNELS_PREFIX = "_sagemaker/training/"
OUTPUT_PREFIX = "models/bms/_training/"  # list_versions skips it: no version id matches `_training`
CHANNELS = ("train", "validation")
PARQUET = "application/x-parquet"
MAX_ATTEMPTS = 5  # jobs one run may start for the same inputs when earlier ones failed
RUNNING, DONE, BROKEN = {"InProgress", "Stopping"}, {"Completed"}, {"Failed", "Stopped"}
_TAG_UNSAFE = re.compile(r"[^\w.:/=+\-@ ]")


class SageMakerJobFailed(RuntimeError):
    """A SageMaker job ended Failed or Stopped; the message holds its name and SageMaker's reason."""


@dataclass(frozen=True)
class SageMakerConfig:
    """What SageMaker needs beyond credentials: the execution role, instance types, how long and how often to wait."""

    role_arn: str
    training_instance_type: str = "ml.m5.xlarge"
    endpoint_instance_type: str = "ml.m5.large"
    transform_instance_type: str = "ml.m5.xlarge"
    training_volume_gb: int = 30
    max_runtime_s: int = 4 * 3600
    poll_seconds: float = 30.0
    wait_timeout_s: float = 5 * 3600

    @classmethod
    def from_environment(cls) -> SageMakerConfig:
        """The CELLGUARD_SAGEMAKER_* settings (pipelines/config.py); the role is required here."""
        settings = load_settings()
        if settings.sagemaker_role_arn is None:
            raise ValueError("CELLGUARD_SAGEMAKER_ROLE_ARN must be the ARN of the IAM role SageMaker jobs and models "
                             "run as, such as arn:aws:iam::123456789012:role/cellguard-sagemaker, not unset")
        return cls(role_arn=settings.sagemaker_role_arn, poll_seconds=settings.sagemaker_poll_seconds,
                   training_instance_type=settings.sagemaker_training_instance_type,
                   endpoint_instance_type=settings.sagemaker_endpoint_instance_type,
                   transform_instance_type=settings.sagemaker_transform_instance_type)


# ---------------------------------------------------------------------------------------------- shared pieces


def region_of(settings: Settings, client: Any | None = None) -> str:
    """The region SageMaker runs in: CELLGUARD_AWS_REGION, else the client's (the standard chain's)."""
    region = settings.aws_region or (client.meta.region_name if client is not None else None)
    if not region:
        raise ValueError("no AWS region: set CELLGUARD_AWS_REGION (or AWS_REGION) for the SageMaker backend")
    return region


@functools.lru_cache(maxsize=8)
def xgboost_image_uri(region: str, scope: str = "training") -> str:
    """The XGBoost framework container image for a region ("training" or "inference"), from the SDK's bundled JSON."""
    from sagemaker.core import image_uris  # ~5 s to import: only where an image is needed

    try:
        return image_uris.retrieve("xgboost", region=region, version=XGBOOST_FRAMEWORK_VERSION, image_scope=scope)
    except ValueError as error:
        raise ValueError(f"no XGBoost {XGBOOST_FRAMEWORK_VERSION} {scope} image for region {region!r}: "
                         f"{str(error)[:200]}") from None


def s3_lake(settings: Settings, lake: Lake | None = None) -> Lake:
    """The lake, which must be on S3: SageMaker reads inputs from and writes outputs to S3 only."""
    lake = lake or Lake.from_settings(settings)
    if not lake.uri.startswith("s3://"):
        raise ValueError(f"SageMaker reads and writes S3 only: CELLGUARD_LAKE_URI must be s3://bucket/prefix with "
                         f"CELLGUARD_BACKEND=aws, not {lake.uri!r}")
    return lake


def lake_key(lake: Lake, url: str) -> str:
    """The lake key of an s3:// URL inside the lake; a ValueError for a URL outside it."""
    root = lake.uri.rstrip("/") + "/"
    if not url.startswith(root):
        raise ValueError(f"{url} is outside the lake {lake.uri}: SageMaker was told to write below it")
    return url[len(root):]


def deterministic_tar_gz(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A gzipped tar of (name, bytes) in the order given, with fixed times, owners and modes: same files, same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_once(lake: Lake, key_stem: str, data: bytes) -> str:
    """Write `data` at `<key_stem>-<sha256[:16]>.tar.gz` unless there already; its s3:// URL."""
    key = f"{key_stem}-{hashlib.sha256(data).hexdigest()[:16]}.tar.gz"
    if not lake.exists(key):
        lake.write_bytes(key, data)
    return lake.url(key)


def tag_value(text: str) -> str:
    """Text as a SageMaker tag value (at most 256 of letters, digits, spaces and _ . : / = + - @)."""
    return _TAG_UNSAFE.sub("_", text)[:256]


def job_names(base: str) -> list[str]:
    """The names one run may use for a job, in order: `base`, then `base-a2` ... after failed attempts."""
    return [base] + [resource_name(base, f"a{attempt}") for attempt in range(2, MAX_ATTEMPTS + 1)]


def describe_or_none(describe: Callable[[str], dict]) -> Callable[[str], dict | None]:
    """`describe` returning None where SageMaker answers that the resource does not exist (a ValidationException)."""

    def described(name: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return describe(name)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            if code in ("ValidationException", "ValidationError", "ResourceNotFound") and (
                    "not find" in message or "not exist" in message or "not found" in message):
                return None
            raise

    return described


def start_or_reuse_job(names: list[str], describe: Callable[[str], dict | None], status_key: str,
                       create: Callable[[str], None], say: Callable[[str], None]) -> str:
    """The first of `names` that is new (then created) or still good (running or completed, then reused).

    Failed and stopped jobs are skipped: SageMaker never accepts a job name twice, so a retry after a failure
    takes the next name."""
    from botocore.exceptions import ClientError

    for name in names:
        job = describe(name)
        if job is None:
            try:
                create(name)
            except ClientError as error:
                # A create whose response was lost and retried by botocore: the first call made the job.
                if error.response.get("Error", {}).get("Code") != "ResourceInUse":
                    raise
            say(f"started SageMaker job {name}")
            return name
        status = job[status_key]
        if status in RUNNING | DONE:
            say(f"reusing SageMaker job {name} ({status}) started by an earlier try of this run")
            return name
        say(f"SageMaker job {name} ended {status} ({job.get('FailureReason', 'no reason given')}); trying the next name")
    raise SageMakerJobFailed(f"every job name this run may use ({names[0]} … {names[-1]}) belongs to a failed or "
                             f"stopped job: look at the last one's FailureReason, fix the cause, and start a new run")


def wait_for_job(name: str, describe: Callable[[str], dict], status_key: str, config: SageMakerConfig,
                 say: Callable[[str], None], progress: Callable[[dict], str | None] | None = None) -> dict:
    """Poll a job until it completes (its description) or fails (SageMakerJobFailed), logging what changes."""
    deadline = time.monotonic() + config.wait_timeout_s
    last_said = None
    while True:
        job = describe(name)
        status = job[status_key]
        line = (progress(job) if progress else None) or status
        if line != last_said:
            say(f"{name}: {line}")
            last_said = line
        if status in DONE:
            return job
        if status in BROKEN:
            raise SageMakerJobFailed(f"SageMaker job {name} ended {status}: {job.get('FailureReason', 'no reason given')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"SageMaker job {name} still {status} after {config.wait_timeout_s:.0f} s; it keeps "
                               f"running: a retry of this run waits for it again")
        time.sleep(config.poll_seconds)


# ---------------------------------------------------------------------------------------------- training


def training_code_tarball(root: Path = PACKAGE_ROOT) -> bytes:
    """The `pipelines/` package as script mode's source tarball (train.py imports its feature lists from it)."""
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if (not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc"
                or any(part.startswith(".") for part in relative.parts)):
            continue
        files.append((f"{root.name}/{relative.as_posix()}", path.read_bytes()))
    return deterministic_tar_gz(sorted(files))


def training_hyperparameters(request: TrainingRequest) -> dict[str, object]:
    """train.py's arguments for a request: the same `--key value` pairs the local path passes."""
    return {"feature_set": request.feature_set, "num_round": request.num_round,
            "early_stopping_rounds": request.early_stopping_rounds, "verbose": "false", **request.params}


def script_mode_hyperparameters(hyperparameters: dict[str, object], code_url: str, region: str) -> dict[str, str]:
    """HyperParameters as the framework containers read them: JSON-encoded values plus the script-mode keys."""
    encoded = {str(key): json.dumps(value) for key, value in hyperparameters.items()}
    return {**encoded, "sagemaker_program": json.dumps(TRAIN_ENTRY_POINT),
            "sagemaker_submit_directory": json.dumps(code_url), "sagemaker_region": json.dumps(region),
            "sagemaker_container_log_level": json.dumps(logging.INFO)}


def channel_parquet(rows: pd.DataFrame) -> bytes:
    """A channel's Parquet bytes, as the local path writes them (same rows, no index)."""
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    return buffer.getvalue()


def training_job_base_name(run_id: str, feature_set: str, inputs_digest: str) -> str:
    """`cellguard-<feature set>-<run id>-<inputs digest>`, at most 63 characters (hashed when cut)."""
    return resource_name("cellguard", feature_set, run_id, inputs_digest[:8])


def training_job_request(name: str, *, image: str, role_arn: str, hyperparameters: dict[str, str],
                         channel_urls: dict[str, str], output_url: str, config: SageMakerConfig, run_id: str,
                         feature_set: str) -> dict:
    """The CreateTrainingJob request."""
    return {
        "TrainingJobName": name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {"ChannelName": channel, "ContentType": PARQUET, "InputMode": "File", "CompressionType": "None",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": url,
                                             "S3DataDistributionType": "FullyReplicated"}}}
            for channel, url in channel_urls.items()],
        "OutputDataConfig": {"S3OutputPath": output_url},
        "ResourceConfig": {"InstanceType": config.training_instance_type, "InstanceCount": 1,
                           "VolumeSizeInGB": config.training_volume_gb},
        "StoppingCondition": {"MaxRuntimeInSeconds": config.max_runtime_s},
        "Tags": [{"Key": "cellguard:run-id", "Value": tag_value(run_id)},
                 {"Key": "cellguard:feature-set", "Value": tag_value(feature_set)}],
    }


def training_progress(job: dict) -> str:
    """One line on where a training job is: its status, secondary status and the latest status message."""
    status, secondary = job["TrainingJobStatus"], job.get("SecondaryStatus", "")
    head = f"{status} ({secondary})" if secondary and secondary != status else status
    transitions = job.get("SecondaryStatusTransitions") or []
    message = transitions[-1].get("StatusMessage", "") if transitions else ""
    return f"{head} — {message}" if message else head


def canonical_archive(packed: bytes, source: str) -> bytes:
    """SageMaker's model.tar.gz rewritten as train.py writes it: `xgboost-model` + feature_names.json, fixed metadata."""
    wanted = {train.MODEL_FILE: None, train.FEATURE_NAMES_FILE: None}
    try:
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    wanted[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ValueError(f"{source}: not a readable model.tar.gz ({error})") from None
    missing = [name for name, data in wanted.items() if data is None]
    if missing:
        raise ValueError(f"{source}: the training job's model.tar.gz lacks {', '.join(missing)} (train.py writes both "
                         f"into SM_MODEL_DIR)")
    return deterministic_tar_gz(wanted.items())


@dataclass
class SageMakerTrainer:
    """Trains like `pipeline._train_with_entry_point` (same rows, same train.py arguments), as a SageMaker job."""

    settings: Settings
    config: SageMakerConfig
    run_id: str
    lake: Lake
    client: Any
    progress: Callable[[str], None] = log.info

    @classmethod
    def from_settings(cls, run_id: str, settings: Settings | None = None, lake: Lake | None = None,
                      client: Any | None = None, progress: Callable[[str], None] | None = None) -> SageMakerTrainer:
        """A trainer for one run (its id names the jobs) with the configured lake, role and SageMaker client."""
        if not run_id or not run_id.strip():
            raise ValueError("a SageMaker training run needs a run id (the Airflow run_id): it names the job")
        settings = settings or load_settings()
        return cls(settings=settings, config=SageMakerConfig.from_environment(), run_id=run_id,
                   lake=s3_lake(settings, lake), client=client or aws_client("sagemaker", settings),
                   progress=progress or log.info)

    def __call__(self, train_rows: pd.DataFrame, validation_rows: pd.DataFrame, request: TrainingRequest,
                 workdir: Path | None = None) -> bytes:
        """Train on SageMaker and return model.tar.gz in train.py's canonical form; same signature as the local path."""
        job = self.run(train_rows, validation_rows, request)
        url = job["ModelArtifacts"]["S3ModelArtifacts"]
        return canonical_archive(self.lake.read_bytes(lake_key(self.lake, url)), url)

    def run(self, train_rows: pd.DataFrame, validation_rows: pd.DataFrame, request: TrainingRequest) -> dict:
        """Start the run's job (or find it from an earlier try) and wait for it; its final description."""
        region = region_of(self.settings, self.client)
        image = xgboost_image_uri(region, "training")
        code_url = upload_once(self.lake, f"{CODE_PREFIX}training", training_code_tarball())
        hyperparameters = script_mode_hyperparameters(training_hyperparameters(request), code_url, region)
        channels = {"train": channel_parquet(train_rows), "validation": channel_parquet(validation_rows)}
        digest = hashlib.sha256()
        for part in (image, self.config.training_instance_type, json.dumps(hyperparameters, sort_keys=True),
                     *channels.values()):
            digest.update(part.encode() if isinstance(part, str) else part)
        base = training_job_base_name(self.run_id, request.feature_set, digest.hexdigest())
        describe = describe_or_none(lambda name: self.client.describe_training_job(TrainingJobName=name))

        def create(name: str) -> None:
            urls = {}
            for channel, data in channels.items():
                key = f"{CHANNELS_PREFIX}{name}/{channel}/{channel}.parquet"
                self.lake.write_bytes(key, data)
                urls[channel] = self.lake.url(f"{CHANNELS_PREFIX}{name}/{channel}/")
            self.client.create_training_job(**training_job_request(
                name, image=image, role_arn=self.config.role_arn, hyperparameters=hyperparameters,
                channel_urls=urls, output_url=self.lake.url(OUTPUT_PREFIX), config=self.config, run_id=self.run_id,
                feature_set=request.feature_set))

        say = self.progress
        say(f"training {request.feature_set} on SageMaker ({self.config.training_instance_type}, {image}) with "
            f"{len(train_rows):,} training and {len(validation_rows):,} validation windows")
        name = start_or_reuse_job(job_names(base), describe, "TrainingJobStatus", create, say)
        return wait_for_job(name, lambda n: self.client.describe_training_job(TrainingJobName=n), "TrainingJobStatus",
                            self.config, say, training_progress)


Trainer = Callable[[pd.DataFrame, pd.DataFrame, "TrainingRequest", Path], bytes]


def backend_trainer(run_id: str, progress: Callable[[str], None] | None = None,
                    settings: Settings | None = None) -> Trainer | None:
    """The trainer the configured backend uses: None (train.py in process) for `local`, SageMaker for `aws`."""
    settings = settings or load_settings()
    if settings.backend != "aws":
        return None
    return SageMakerTrainer.from_settings(run_id, settings=settings, progress=progress)
