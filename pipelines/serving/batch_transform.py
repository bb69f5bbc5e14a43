"""Batch inference on SageMaker Batch Transform: the aws backend's vectorised predict_fn over many windows.

The feature rows are written as CSV parts (no header, float32 values in their shortest exact form, empty fields
for missing values, at most ROWS_PER_PART rows each) under `_sagemaker/transform/<job>/input/`. One
CreateTransformJob runs the version's SageMaker Model (the one `sagemaker_deploy` creates: inference.py in the
XGBoost framework container) over them, line-split into multi-record mini-batches, and writes
`<part>.out` under `_sagemaker/transform/<job>/output/`: one probability per line, in input order. The parts are
read back in order into one probability per input row.

The job name derives from the run id and a digest of the rows and the model, so a retry of the same run reuses its
job (waits for it, or reads its output); a failed job is never reused (the retry takes `<name>-a2`, ...).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from pipelines.serving.csv_rows import CSV, MAX_PAYLOAD_BYTES, csv_payload
from pipelines.serving.sagemaker_deploy import SageMakerModels
from pipelines.storage.aws import resource_name
from pipelines.training.sagemaker_training import (
    describe_or_none,
    job_names,
    lake_key,
    start_or_reuse_job,
    tag_value,
    wait_for_job,
)

log = logging.getLogger(__name__)

TRANSFORM_PREFIX = "_sagemaker/transform/"
ROWS_PER_PART = 100_000  # parts let SageMaker spread a large batch over instances and concurrent transforms
OUTPUT_SUFFIX = ".out"  # Batch Transform names each output after its input object


@dataclass(frozen=True)
class TransformInput:
    """The CSV parts of one batch, in row order, and how many rows each holds."""

    parts: list[tuple[str, bytes, int]]  # (file name, CSV bytes, rows)

    @property
    def rows(self) -> int:
        return sum(rows for _, _, rows in self.parts)

    def digest(self) -> str:
        """sha256 over every part's name and bytes."""
        digest = hashlib.sha256()
        for name, data, _ in self.parts:
            digest.update(name.encode() + b"\0" + data)
        return digest.hexdigest()


def transform_input(matrix: np.ndarray, rows_per_part: int = ROWS_PER_PART) -> TransformInput:
    """The feature rows as CSV parts `part-00000.csv`, ... of at most `rows_per_part` rows each."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"Batch Transform needs a 2-D matrix with at least one row, got shape {matrix.shape}")
    parts = []
    for number, first in enumerate(range(0, matrix.shape[0], rows_per_part)):
        block = matrix[first:first + rows_per_part]
        parts.append((f"part-{number:05d}.csv", csv_payload(block), len(block)))
    return TransformInput(parts)


def transform_job_base_name(run_id: str, model: str, inputs_digest: str) -> str:
    """`cellguard-transform-<run id>-<digest of rows and model>`, at most 63 characters (hashed when cut)."""
    return resource_name("cellguard-transform", run_id, hashlib.sha256(f"{model}:{inputs_digest}".encode()).hexdigest()[:8])


def transform_job_request(name: str, *, model: str, input_url: str, output_url: str, instance_type: str,
                          run_id: str, version: str) -> dict:
    """The CreateTransformJob request: line-split CSV in multi-record mini-batches, one probability per line out."""
    return {
        "TransformJobName": name,
        "ModelName": model,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": MAX_PAYLOAD_BYTES // (1024 * 1024),
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_url}},
                           "ContentType": CSV, "CompressionType": "None", "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": output_url, "Accept": CSV, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": 1},
        "Tags": [{"Key": "cellguard:model-version", "Value": tag_value(version)},
                 {"Key": "cellguard:run-id", "Value": tag_value(run_id)}],
    }


def parse_transform_output(text: str, rows: int, where: str) -> np.ndarray:
    """One probability per input line from a `.out` object (mini-batches joined by newlines; blank lines skipped)."""
    try:
        scores = np.array(text.split(), dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{where}: not one probability per line ({error})") from None
    if len(scores) != rows:
        raise ValueError(f"{where}: {len(scores)} probabilities for {rows} input rows")
    return scores


def transform_probabilities(matrix: np.ndarray, version: str, run_id: str, models: SageMakerModels | None = None,
                            rows_per_part: int = ROWS_PER_PART) -> np.ndarray:
    """Alarm probabilities of `version` for every row, computed by a Batch Transform job, in row order."""
    models = models or SageMakerModels.from_settings()
    client, lake, say = models.client, models.lake, models.progress
    batch = transform_input(matrix, rows_per_part)
    model = models.ensure_model(version)
    base = transform_job_base_name(run_id, model, batch.digest())

    def create(name: str) -> None:
        for file_name, data, _ in batch.parts:
            lake.write_bytes(f"{TRANSFORM_PREFIX}{name}/input/{file_name}", data)
        client.create_transform_job(**transform_job_request(
            name, model=model, input_url=lake.url(f"{TRANSFORM_PREFIX}{name}/input/"),
            output_url=lake.url(f"{TRANSFORM_PREFIX}{name}/output/"),
            instance_type=models.config.transform_instance_type, run_id=run_id, version=version))

    say(f"scoring {batch.rows:,} rows with {version} on Batch Transform ({len(batch.parts)} parts, "
        f"{models.config.transform_instance_type})")
    describe = describe_or_none(lambda n: client.describe_transform_job(TransformJobName=n))
    name = start_or_reuse_job(job_names(base), describe, "TransformJobStatus", create, say)
    job = wait_for_job(name, lambda n: client.describe_transform_job(TransformJobName=n), "TransformJobStatus",
                       models.config, say)
    output_key = lake_key(lake, job["TransformOutput"]["S3OutputPath"].rstrip("/") + "/")
    scores = []
    for file_name, _, rows in batch.parts:
        key = f"{output_key}{file_name}{OUTPUT_SUFFIX}"
        if not lake.exists(key):
            raise FileNotFoundError(f"transform job {name} completed without {lake.url(key)}; its input "
                                    f"{file_name} has {rows} rows")
        scores.append(parse_transform_output(lake.read_bytes(key).decode("utf-8"), rows, lake.url(key)))
    return np.concatenate(scores)

