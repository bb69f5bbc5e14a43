"""pipelines/serving/batch_transform.py: batch scoring as a SageMaker Batch Transform job, against moto.

What these tests prove: the exact CreateTransformJob request, the CSV parts written for it, the job's name from the
run id, reuse on retry, a failed job never reused, clear errors, and the output parser on what inference.py's
handlers really write when Batch Transform assembles mini-batches.

moto's transform jobs run nothing and write no output (they are `Completed` at once). Where a test needs output, a
test-only stand-in (`transform_stand_in`) does what Batch Transform would with the job moto recorded: it loads the
job's Model (the inference.py uploaded as its code, the registry archive as its data), feeds each input part to
input_fn → predict_fn → output_fn in multi-record mini-batches, joins their outputs line by line and writes
`<part>.out` to the output path. It proves the wiring and the order of rows, not SageMaker's container.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends
from serving.registry_builders import promote, train_archive
from training.builders import synthetic_windows

from pipelines.config import Settings
from pipelines.features.window_signals import feature_columns
from pipelines.serving import inference
from pipelines.serving.batch_transform import (
    parse_transform_output,
    transform_input,
    transform_job_base_name,
    transform_probabilities,
)
from pipelines.serving.csv_rows import csv_payload
from pipelines.serving.sagemaker_deploy import SageMakerModels, model_name
from pipelines.storage.lake import Lake
from pipelines.training import train
from pipelines.training.sagemaker_training import SageMakerJobFailed

from .conftest import REGION
from .test_sagemaker_training import ACCOUNT, sagemaker, sagemaker_settings  # noqa: F401 (fixtures)

RUN = "manual__2026-11-22T10:00:00+00:00"
MINI_BATCH_LINES = 7  # small, so every part's output is assembled from many mini-batches


@pytest.fixture(scope="module")
def model_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    frame = synthetic_windows(vehicles=6, days=40)
    return train_archive(tmp_path_factory.mktemp("transform"), frame[frame["label"].notna()].reset_index(drop=True),
                         seed=1)


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    """300 signals6 rows (about 10% missing)."""
    return train.feature_matrix(synthetic_windows(vehicles=5, days=60), feature_columns("signals6"))


@pytest.fixture
def registered(sagemaker_settings: Settings, sagemaker, model_archive: bytes, tmp_path: Path) -> SimpleNamespace:  # noqa: F811
    """A signals6 version registered in the S3 lake, and the SageMakerModels the code under test uses."""
    client, recorder = sagemaker
    lake = Lake.from_settings(sagemaker_settings)
    version = promote(lake, model_archive)
    said: list[str] = []
    models = SageMakerModels.from_settings(sagemaker_settings, client=client, progress=said.append)
    unpacked = tmp_path / "model"
    with tarfile.open(fileobj=io.BytesIO(model_archive), mode="r:gz") as tar:
        tar.extractall(unpacked, filter="data")
    return SimpleNamespace(lake=lake, version=version, models=models, client=client, recorder=recorder, said=said,
                           expected=lambda rows: inference.predict_fn(rows, inference.model_fn(unpacked)))


def import_entry_point(tarball: bytes, folder: Path) -> ModuleType:
    """The SAGEMAKER_PROGRAM module from a code tarball, imported as the container imports it."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")
    name = f"inference_from_tarball_{folder.parent.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, folder / "inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def assembled_output(handlers: ModuleType, model: Any, csv_text: str, accept: str) -> str:
    """What Batch Transform writes for one input object: each mini-batch's response, joined with a newline."""
    lines = csv_text.splitlines(keepends=True)
    responses = []
    for first in range(0, len(lines), MINI_BATCH_LINES):
        rows = handlers.input_fn("".join(lines[first:first + MINI_BATCH_LINES]), "text/csv")
        body, _ = handlers.output_fn(handlers.predict_fn(rows, model), accept)
        responses.append(body)
    return "\n".join(responses)  # AssembleWith=Line


@pytest.fixture
def transform_stand_in(monkeypatch: pytest.MonkeyPatch, aws_client, tmp_path: Path) -> SimpleNamespace:
    """moto's CreateTransformJob, then what Batch Transform would do with the job (see the module doc)."""
    original = SageMakerModelBackend.create_transform_job
    done = SimpleNamespace(jobs=[])

    def read(s3: Any, url: str) -> bytes:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def create_and_run(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        job = original(backend, *args, **kwargs)
        s3 = aws_client("s3")
        container = backend.describe_model(job.model_name).primary_container
        folder = tmp_path / "stand-in" / job.transform_job_name
        handlers = import_entry_point(read(s3, container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"]), folder / "code")
        with tarfile.open(fileobj=io.BytesIO(read(s3, container["ModelDataUrl"])), mode="r:gz") as tar:
            tar.extractall(folder / "model", filter="data")
        model = handlers.model_fn(folder / "model")
        source = job.transform_input["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, _, prefix = source.removeprefix("s3://").partition("/")
        out_bucket, _, out_prefix = job.transform_output["S3OutputPath"].removeprefix("s3://").partition("/")
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
            text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
            name = item["Key"].rsplit("/", 1)[-1]
            s3.put_object(Bucket=out_bucket, Key=f"{out_prefix.rstrip('/')}/{name}.out",
                          Body=assembled_output(handlers, model, text, job.transform_output["Accept"]).encode())
        done.jobs.append(job.transform_job_name)
        return job

    monkeypatch.setattr(SageMakerModelBackend, "create_transform_job", create_and_run)
    return done


# ---------------------------------------------------------------------------------------------- the request


def test_the_job_reads_csv_parts_and_writes_one_probability_per_line(registered, transform_stand_in, s3_bucket: str,
                                                                     matrix: np.ndarray) -> None:
    probabilities = transform_probabilities(matrix, registered.version, RUN, registered.models, rows_per_part=120)

    (request,) = registered.recorder.named("CreateTransformJob")
    name, lake = request["TransformJobName"], f"s3://{s3_bucket}/lake"
    assert request == {
        "TransformJobName": name,
        "ModelName": model_name(registered.version),
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                           "S3Uri": f"{lake}/_sagemaker/transform/{name}/input/"}},
                           "ContentType": "text/csv", "CompressionType": "None", "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": f"{lake}/_sagemaker/transform/{name}/output/", "Accept": "text/csv",
                            "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "Tags": [{"Key": "cellguard:model-version", "Value": registered.version},
                 {"Key": "cellguard:run-id", "Value": RUN}],
    }
    assert name.startswith("cellguard-transform-manual-2026-11-22t10-") and len(name) <= 63
    assert [p["ModelName"] for p in registered.recorder.named("CreateModel")] == [model_name(registered.version)]
    parts = {i.key.rsplit("/", 1)[-1]: registered.lake.read_bytes(i.key)
             for i in registered.lake.list(f"_sagemaker/transform/{name}/input/")}
    assert parts == {"part-00000.csv": csv_payload(matrix[:120]), "part-00001.csv": csv_payload(matrix[120:240]),
                     "part-00002.csv": csv_payload(matrix[240:])}
    # the stand-in ran inference.py over the parts: every row's probability, in row order, as predict_fn gives it
    assert np.array_equal(probabilities.astype(np.float32), registered.expected(matrix))


def test_a_retry_of_the_same_run_reuses_its_job(registered, transform_stand_in, matrix: np.ndarray) -> None:
    first = transform_probabilities(matrix[:50], registered.version, RUN, registered.models)
    again = transform_probabilities(matrix[:50], registered.version, RUN, registered.models)

    assert np.array_equal(first, again) and len(transform_stand_in.jobs) == 1
    assert len(registered.recorder.named("CreateTransformJob")) == 1
    (name,) = transform_stand_in.jobs
    assert f"reusing SageMaker job {name} (Completed) started by an earlier try of this run" in registered.said


def test_a_failed_job_is_never_reused(registered, transform_stand_in, matrix: np.ndarray) -> None:
    transform_probabilities(matrix[:50], registered.version, RUN, registered.models)
    (name,) = transform_stand_in.jobs
    failed = sagemaker_backends[ACCOUNT][REGION].transform_jobs[name]
    failed.transform_job_status, failed.failure_reason = "Failed", "ClientError: See job logs"

    retried = transform_probabilities(matrix[:50], registered.version, RUN, registered.models)

    assert transform_stand_in.jobs[0] == name and transform_stand_in.jobs[1] != name
    assert np.array_equal(retried.astype(np.float32), registered.expected(matrix[:50]))


def test_a_job_that_fails_is_an_error_with_its_reason(registered, monkeypatch: pytest.MonkeyPatch,
                                                      matrix: np.ndarray) -> None:
    original = SageMakerModelBackend.create_transform_job

    def create_failing(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        job = original(backend, *args, **kwargs)
        job.transform_job_status, job.failure_reason = "Failed", "AlgorithmError: model container crashed"
        return job

    monkeypatch.setattr(SageMakerModelBackend, "create_transform_job", create_failing)
    with pytest.raises(SageMakerJobFailed, match="ended Failed: AlgorithmError: model container crashed"):
        transform_probabilities(matrix[:5], registered.version, RUN, registered.models)


def test_a_completed_job_without_output_is_a_clear_error(registered, matrix: np.ndarray) -> None:
    # moto alone: the job completes and writes nothing
    with pytest.raises(FileNotFoundError, match=r"transform job cellguard-transform-.* completed without "
                                                r"s3://.*/output/part-00000.csv.out; its input part-00000.csv has 5 rows"):
        transform_probabilities(matrix[:5], registered.version, RUN, registered.models)


def test_names_differ_per_run_and_per_input() -> None:
    names = {transform_job_base_name(run, "cellguard-v1", digest)
             for run in (RUN, RUN + "x") for digest in ("a" * 64, "b" * 64)}
    assert len(names) == 4 and all(len(n) <= 63 for n in names)


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"at least one row, got shape \(0, 84\)"):
        transform_input(np.zeros((0, 84)))


# ---------------------------------------------------------------------------------------------- the output parser


def test_the_parser_reads_inference_outputs_assembled_from_mini_batches(model_archive: bytes, matrix: np.ndarray,
                                                                        tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(model_archive), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    model = inference.model_fn(tmp_path)
    text = assembled_output(inference, model, csv_payload(matrix).decode(), "text/csv")
    assert "\n\n" in text  # each mini-batch's body ends with a newline and Batch Transform adds one between them

    scores = parse_transform_output(text, len(matrix), "part-00000.csv.out")

    assert np.array_equal(scores.astype(np.float32), inference.predict_fn(matrix, model))
    with pytest.raises(ValueError, match="part-00000.csv.out: 300 probabilities for 301 input rows"):
        parse_transform_output(text, 301, "part-00000.csv.out")
    with pytest.raises(ValueError, match="part-00000.csv.out: not one probability per line"):
        parse_transform_output(json.dumps({"predictions": [{"score": 0.5}]}), 1, "part-00000.csv.out")
