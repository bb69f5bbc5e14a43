"""pipelines/training/sagemaker_training.py: train.py as a SageMaker training job, against moto.

What these tests prove: the exact CreateTrainingJob request (image, script-mode hyperparameters, channels, output
under the registry, resources, tags), the objects uploaded for it (code tarball, Parquet channels), the job's name
from the run id, that a retry of the same run reuses its job and a failed job is never reused, and clear errors.

What moto does not do: its training jobs run nothing and write no artifact (they are `Completed` at once). So a
test-only stand-in (`training_stand_in`) does what the SageMaker container would: right after moto records a job, it
downloads the job's code tarball and channels from S3, runs the tarball's train.py as script mode runs it (SM_*
variables, hyperparameters decoded and passed as --key value) and uploads the model folder, packed, where moto's
job says the artifact is. What it proves is that the request carries everything train.py needs and that the
artifact is fetched and registered as the local path registers its own; not that SageMaker's container runs it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends

# pytest puts tests/ on sys.path (its folders are packages, it is not), so the training tests' builders are `training.`
from training.builders import synthetic_windows

from pipelines.config import Settings, load_settings
from pipelines.storage.aws import aws_client
from pipelines.storage.lake import Lake
from pipelines.training import pipeline, registry, train
from pipelines.training.pipeline import TrainingRequest
from pipelines.training.sagemaker_training import (
    SageMakerConfig,
    SageMakerJobFailed,
    SageMakerTrainer,
    backend_trainer,
    canonical_archive,
    training_job_base_name,
    xgboost_image_uri,
)

from .conftest import REGION

ACCOUNT = "123456789012"  # moto's default account
ROLE = f"arn:aws:iam::{ACCOUNT}:role/cellguard-sagemaker"
RUN_ID = "manual__2026-11-22T10:00:00.123456+00:00"
REQUEST = TrainingRequest("signals6", params={"nthread": 1, "max_depth": 3}, num_round=12, early_stopping_rounds=4,
                          with_baseline=False)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def sagemaker_settings(aws_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The aws backend plus the SageMaker role, polling fast (moto's jobs finish at once anyway)."""
    monkeypatch.setenv("CELLGUARD_SAGEMAKER_ROLE_ARN", ROLE)
    monkeypatch.setenv("CELLGUARD_SAGEMAKER_POLL_SECONDS", "0.01")
    return load_settings()


class CallRecorder:
    """Every API call a boto3 client makes, with the parameters it was given (botocore's own event hook)."""

    def __init__(self, client: Any):
        self.calls: list[tuple[str, dict]] = []
        client.meta.events.register("before-parameter-build.*.*", self._record)

    def _record(self, params: dict, model: Any, **_: Any) -> None:
        self.calls.append((model.name, copy.deepcopy(params)))

    def named(self, operation: str) -> list[dict]:
        """The parameters of every call of one operation, in order."""
        return [params for name, params in self.calls if name == operation]


@pytest.fixture
def sagemaker(sagemaker_settings: Settings) -> tuple[Any, CallRecorder]:
    """The SageMaker client the code under test gets, with a recorder of its calls, on an empty moto SageMaker.

    Tests share the moto server and SageMaker names are account-wide (`cellguard-signals6` is every test's
    endpoint), so each test starts with moto's SageMaker state emptied."""
    sagemaker_backends[ACCOUNT][REGION].reset()
    client = aws_client("sagemaker", sagemaker_settings)
    return client, CallRecorder(client)


def run_like_script_mode(job: dict, s3: Any, workdir: Path) -> bytes:
    """What the framework container does with a training job: code and channels in, train.py run, model.tar.gz out."""
    def download(url: str) -> list[tuple[str, bytes]]:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return [(o["Key"][len(prefix):].lstrip("/") or o["Key"].rsplit("/", 1)[-1],
                 s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listed]

    hyperparameters = {key: json.loads(value) for key, value in job["HyperParameters"].items()}
    code = workdir / "code"
    (_, tarball), = download(hyperparameters["sagemaker_submit_directory"])
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        tar.extractall(code, filter="data")
    env = {**os.environ, "SM_MODEL_DIR": str(workdir / "model"), "SM_TRAINING_ENV": json.dumps({"job": job["TrainingJobName"]})}
    for channel in job["InputDataConfig"]:
        folder = workdir / "data" / channel["ChannelName"]
        for name, data in download(channel["DataSource"]["S3DataSource"]["S3Uri"]):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        env[f"SM_CHANNEL_{channel['ChannelName'].upper()}"] = str(folder)
    args = [arg for key in sorted(hyperparameters) if not key.startswith("sagemaker_")
            for arg in (f"--{key}", str(hyperparameters[key]))]
    env.pop("PYTHONPATH", None)  # the code tarball alone must be enough to import what train.py needs
    done = subprocess.run([sys.executable, hyperparameters["sagemaker_program"], *args], cwd=code, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:  # SageMaker packs the model folder's files
        for path in sorted((workdir / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return packed.getvalue()


@pytest.fixture
def training_stand_in(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, aws_client,
                      tmp_path: Path) -> Iterator[dict[str, bytes]]:
    """moto's CreateTrainingJob, followed by a script-mode run of the job (see the module doc); yields the artifacts."""
    original = SageMakerModelBackend.create_training_job
    artifacts: dict[str, bytes] = {}

    def create_and_run(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        job = original(backend, *args, **kwargs)
        description = backend.describe_training_job(job.training_job_name)
        packed = run_like_script_mode(description, aws_client("s3"), tmp_path / "stand-in" / job.training_job_name)
        bucket, _, key = description["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").partition("/")
        aws_client("s3").put_object(Bucket=bucket, Key=key, Body=packed)
        artifacts[job.training_job_name] = packed
        return job

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_and_run)
    yield artifacts


@pytest.fixture(scope="module")
def windows() -> pd.DataFrame:
    """Labelled signals6 windows, split in two by as_of."""
    frame = synthetic_windows(vehicles=8, days=60)
    return frame[frame["label"].notna()].reset_index(drop=True)


def split(windows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = windows["as_of"].sort_values().iloc[len(windows) * 2 // 3]
    return (windows[windows["as_of"] < cut].reset_index(drop=True),
            windows[windows["as_of"] >= cut].reset_index(drop=True))


def trainer(settings: Settings, client: Any, run_id: str = RUN_ID, said: list[str] | None = None) -> SageMakerTrainer:
    return SageMakerTrainer.from_settings(run_id, settings=settings, client=client,
                                          progress=(said.append if said is not None else None))


def moto_job(name: str) -> Any:
    """moto's own record of a training job (to play what moto cannot: a job that fails)."""
    return sagemaker_backends[ACCOUNT][REGION].training_jobs[name]


# ---------------------------------------------------------------------------------------------- the request


def test_the_job_runs_train_py_in_script_mode_on_the_channels_the_local_path_writes(
        sagemaker_settings: Settings, sagemaker, training_stand_in, windows: pd.DataFrame, s3_bucket: str,
        aws_client) -> None:
    client, recorder = sagemaker
    train_rows, validation_rows = split(windows)
    trainer(sagemaker_settings, client)(train_rows, validation_rows, REQUEST)

    (request,) = recorder.named("CreateTrainingJob")
    name = request["TrainingJobName"]
    lake = f"s3://{s3_bucket}/lake"
    code_url = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
    assert code_url.startswith(f"{lake}/_sagemaker/code/training-") and code_url.endswith(".tar.gz")
    assert request == {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": f"141502667606.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.2-0",
                                   "TrainingInputMode": "File"},
        "HyperParameters": {"feature_set": '"signals6"', "num_round": "12", "early_stopping_rounds": "4",
                            "verbose": '"false"', "nthread": "1", "max_depth": "3",
                            "sagemaker_program": '"pipelines/training/train.py"',
                            "sagemaker_submit_directory": json.dumps(code_url),
                            "sagemaker_region": f'"{REGION}"', "sagemaker_container_log_level": "20"},
        "InputDataConfig": [
            {"ChannelName": channel, "ContentType": "application/x-parquet", "InputMode": "File",
             "CompressionType": "None",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                             "S3Uri": f"{lake}/_sagemaker/training/{name}/{channel}/",
                                             "S3DataDistributionType": "FullyReplicated"}}}
            for channel in ("train", "validation")],
        "OutputDataConfig": {"S3OutputPath": f"{lake}/models/bms/_training/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 14400},
        "Tags": [{"Key": "cellguard:run-id", "Value": RUN_ID}, {"Key": "cellguard:feature-set", "Value": "signals6"}],
    }
    # the name: from the run id and feature set, hashed to stay unique, within SageMaker's 63 characters
    assert name.startswith("cellguard-signals6-manual-2026-11-22t10-00-00-") and len(name) <= 63

    s3 = aws_client("s3")
    for channel, rows in (("train", train_rows), ("validation", validation_rows)):
        key = f"lake/_sagemaker/training/{name}/{channel}/{channel}.parquet"
        stored = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()))
        pd.testing.assert_frame_equal(stored, rows)
    # moto keeps what it was sent: the job exists with this request
    described = client.describe_training_job(TrainingJobName=name)
    assert described["HyperParameters"] == request["HyperParameters"]
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == f"{lake}/models/bms/_training/{name}/output/model.tar.gz"


def test_the_archive_is_byte_for_byte_what_the_local_path_trains(sagemaker_settings: Settings, sagemaker,
                                                                 training_stand_in, windows: pd.DataFrame,
                                                                 tmp_path: Path) -> None:
    client, _ = sagemaker
    train_rows, validation_rows = split(windows)
    archive = trainer(sagemaker_settings, client)(train_rows, validation_rows, REQUEST)

    local = pipeline._train_with_entry_point(train_rows, validation_rows, REQUEST, tmp_path / "local")
    assert archive == local  # same train.py, same rows, same arguments: same model, same registry fingerprint
    (packed,) = training_stand_in.values()
    assert packed != archive and canonical_archive(packed, "job") == archive  # SageMaker's packing, normalised
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert tar.getnames() == [train.MODEL_FILE, train.FEATURE_NAMES_FILE]
        metadata = json.loads(tar.extractfile(train.FEATURE_NAMES_FILE).read())
    assert metadata["feature_set"] == "signals6" and len(metadata["feature_names"]) == 84
    assert metadata["num_round"] == 12 and metadata["params"]["max_depth"] == 3


# ---------------------------------------------------------------------------------------------- retries


def test_a_retry_of_the_same_run_reuses_its_job(sagemaker_settings: Settings, sagemaker, training_stand_in,
                                                windows: pd.DataFrame) -> None:
    client, recorder = sagemaker
    train_rows, validation_rows = split(windows)
    said: list[str] = []
    first = trainer(sagemaker_settings, client, said=said)(train_rows, validation_rows, REQUEST)
    second = trainer(sagemaker_settings, client, said=said)(train_rows, validation_rows, REQUEST)

    assert first == second
    assert len(recorder.named("CreateTrainingJob")) == 1 and len(training_stand_in) == 1
    (name,) = training_stand_in
    assert [p["TrainingJobName"] for p in recorder.named("DescribeTrainingJob")].count(name) >= 3
    assert f"started SageMaker job {name}" in said
    assert f"reusing SageMaker job {name} (Completed) started by an earlier try of this run" in said
    assert f"{name}: Completed — Preparing the instances for training" in said  # progress from the job's status


def test_another_run_or_changed_inputs_start_their_own_job(sagemaker_settings: Settings, sagemaker,
                                                           windows: pd.DataFrame) -> None:
    client, recorder = sagemaker
    train_rows, validation_rows = split(windows)
    trainer(sagemaker_settings, client).run(train_rows, validation_rows, REQUEST)
    trainer(sagemaker_settings, client, run_id="scheduled__2026-11-23T02:00:00+00:00").run(train_rows, validation_rows,
                                                                                            REQUEST)
    trainer(sagemaker_settings, client).run(train_rows.iloc[:-1], validation_rows, REQUEST)  # late data changed a row

    names = [p["TrainingJobName"] for p in recorder.named("CreateTrainingJob")]
    assert len(set(names)) == 3 and all(len(n) <= 63 for n in names)
    assert names[1].startswith("cellguard-signals6-scheduled-2026-11-23t02-00-00-")


def test_a_failed_job_is_never_reused_the_retry_takes_the_next_name(sagemaker_settings: Settings, sagemaker,
                                                                    windows: pd.DataFrame) -> None:
    client, recorder = sagemaker
    train_rows, validation_rows = split(windows)
    job = trainer(sagemaker_settings, client).run(train_rows, validation_rows, REQUEST)
    name = job["TrainingJobName"]
    failed = moto_job(name)
    failed.training_job_status, failed.failure_reason = "Failed", "AlgorithmError: out of memory"

    said: list[str] = []
    retried = trainer(sagemaker_settings, client, said=said).run(train_rows, validation_rows, REQUEST)

    names = [p["TrainingJobName"] for p in recorder.named("CreateTrainingJob")]
    assert names == [name, retried["TrainingJobName"]] and names[1] != name and len(names[1]) <= 63
    assert names[1].startswith(name[:40]) and retried["TrainingJobStatus"] == "Completed"
    assert f"SageMaker job {name} ended Failed (AlgorithmError: out of memory); trying the next name" in said


def test_a_job_that_fails_while_waited_for_is_an_error_with_its_reason(sagemaker_settings: Settings, sagemaker,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       windows: pd.DataFrame) -> None:
    client, _ = sagemaker
    original = SageMakerModelBackend.create_training_job

    def create_failing(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        job = original(backend, *args, **kwargs)
        job.training_job_status, job.failure_reason = "Failed", "ClientError: no labelled rows in /opt/ml/input"
        return job

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_failing)
    train_rows, validation_rows = split(windows)
    with pytest.raises(SageMakerJobFailed, match=r"ended Failed: ClientError: no labelled rows in /opt/ml/input"):
        trainer(sagemaker_settings, client)(train_rows, validation_rows, REQUEST)


# ---------------------------------------------------------------------------------------------- registration


def test_train_and_register_with_the_sagemaker_trainer_registers_the_jobs_model(sagemaker_settings: Settings,
                                                                              sagemaker, training_stand_in) -> None:
    from training.daily_builders import write_synthetic_daily

    client, recorder = sagemaker
    lake = Lake.from_settings(sagemaker_settings)
    write_synthetic_daily(lake)  # 24 vehicles x 90 days, half of them drifting into alarms
    now = datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
    request = replace(REQUEST, params={"nthread": 1}, num_round=40, early_stopping_rounds=20)

    result = pipeline.train_and_register(request, lake=lake, now=now, trainer=trainer(sagemaker_settings, client))

    (name,) = training_stand_in
    archive, card = registry.load_version(lake, result.version)
    assert archive == canonical_archive(training_stand_in[name], name)
    assert result.version == registry.new_version_id(now, "signals6", hashlib.sha256(archive).hexdigest())
    assert card["metrics"]["roc_auc"] > 0.95 and card["training_data"]["train_rows"] == 576
    assert result.champion == result.version
    assert result.decision["promoted"] and "first model for signals6" in result.decision["reason"]
    assert len(recorder.named("CreateTrainingJob")) == 1


# ---------------------------------------------------------------------------------------------- settings and errors


def test_the_local_backend_trains_in_process(isolate_settings, tmp_path: Path) -> None:
    isolate_settings(tmp_path / "home")
    assert backend_trainer("manual__x") is None


def test_the_aws_backend_trains_on_sagemaker(sagemaker_settings: Settings) -> None:
    chosen = backend_trainer("manual__x", settings=sagemaker_settings)
    assert isinstance(chosen, SageMakerTrainer) and chosen.config.role_arn == ROLE and chosen.run_id == "manual__x"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("CELLGUARD_SAGEMAKER_ROLE_ARN", "", "CELLGUARD_SAGEMAKER_ROLE_ARN must be the ARN of the IAM role .* not unset"),
    ("CELLGUARD_SAGEMAKER_ROLE_ARN", "cellguard-sagemaker", "not 'cellguard-sagemaker'"),
    ("CELLGUARD_SAGEMAKER_TRAINING_INSTANCE_TYPE", "m5.xlarge",
     "CELLGUARD_SAGEMAKER_TRAINING_INSTANCE_TYPE must be a SageMaker instance type such as ml.m5.xlarge, not 'm5.xlarge'"),
    ("CELLGUARD_SAGEMAKER_POLL_SECONDS", "soon", "CELLGUARD_SAGEMAKER_POLL_SECONDS must be a number of seconds"),
])
def test_bad_sagemaker_settings_are_named(sagemaker_settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                          variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        SageMakerConfig.from_environment()


def test_instance_types_come_from_the_environment(sagemaker_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLGUARD_SAGEMAKER_TRAINING_INSTANCE_TYPE", "ml.c5.2xlarge")
    config = SageMakerConfig.from_environment()
    assert (config.training_instance_type, config.endpoint_instance_type) == ("ml.c5.2xlarge", "ml.m5.large")


def test_a_local_lake_or_no_run_id_is_refused(sagemaker_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SageMaker reads and writes S3 only: CELLGUARD_LAKE_URI must be s3://"):
        SageMakerTrainer.from_settings(RUN_ID, settings=sagemaker_settings, lake=Lake(tmp_path.as_uri()))
    with pytest.raises(ValueError, match="needs a run id"):
        SageMakerTrainer.from_settings(" ", settings=sagemaker_settings)


def test_the_image_is_resolved_offline_per_region() -> None:
    assert xgboost_image_uri("cn-north-1", "inference") == (
        "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-xgboost:3.2-0")
    with pytest.raises(ValueError, match="no XGBoost 3.2-0 training image for region 'xx-nowhere-1'"):
        xgboost_image_uri("xx-nowhere-1")


def test_job_names_fit_sagemaker_and_differ_per_run() -> None:
    long_run = "manual__" + "x" * 200
    names = {training_job_base_name(run, "signals6", "ab" * 32) for run in (RUN_ID, RUN_ID + "1", long_run)}
    assert len(names) == 3 and all(len(n) <= 63 and n[0].isalpha() for n in names)
    assert training_job_base_name(RUN_ID, "signals6", "ab" * 32) == training_job_base_name(RUN_ID, "signals6", "ab" * 32)


def test_an_artifact_without_the_model_file_is_refused() -> None:
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        info = tarfile.TarInfo("feature_names.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(ValueError, match="s3://b/job/output/model.tar.gz: the training job's model.tar.gz lacks "
                                         "xgboost-model"):
        canonical_archive(packed.getvalue(), "s3://b/job/output/model.tar.gz")
    with pytest.raises(ValueError, match="not a readable model.tar.gz"):
        canonical_archive(b"not a tarball", "s3://b/job/output/model.tar.gz")

