"""Score feature rows on a SageMaker real-time endpoint (`sagemaker-runtime` InvokeEndpoint): the aws backend's predict_fn.

Rows go as `text/csv` (one row per line, float32 values in their shortest exact form, an empty field for a missing
value), as many per call as fit in SageMaker's 6 MB request limit, and come back one probability per line, in order.
The endpoint runs the same inference.py as the local model server, so the probabilities equal predict_fn's for the
same model. Errors say which endpoint and which rows: an `InvalidInput` when the model rejects the rows (SageMaker's
ModelError), `EndpointUnavailable` when there is no such endpoint or it is not in service.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pipelines.config import Settings, load_settings
from pipelines.serving.csv_rows import CSV, MAX_PAYLOAD_BYTES, csv_payload
from pipelines.serving.inference import InvalidInput
from pipelines.storage.aws import aws_client


class EndpointUnavailable(RuntimeError):
    """The endpoint does not exist or cannot take requests now."""


def chunk_bounds(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> list[tuple[int, int, int, int]]:
    """(first row, end row, first byte, end byte) of consecutive whole-line chunks of at most `max_bytes` each."""
    line_ends = np.flatnonzero(np.frombuffer(payload, dtype=np.uint8) == ord("\n")) + 1
    bounds = []
    row, start = 0, 0
    while row < len(line_ends):
        end_row = int(np.searchsorted(line_ends, start + max_bytes, side="right"))
        if end_row == row:
            raise InvalidInput(f"row {row + 1} alone is {int(line_ends[row]) - start:,} bytes of CSV, over the "
                               f"{max_bytes:,}-byte request limit of a SageMaker endpoint")
        end = int(line_ends[end_row - 1])
        bounds.append((row, end_row, start, end))
        row, start = end_row, end
    return bounds


def parse_scores(body: bytes, content_type: str | None, rows: int, where: str) -> np.ndarray:
    """The probabilities in a response (text/csv one per line, or SageMaker XGBoost's JSON), checked to be `rows`."""
    text = body.decode("utf-8")
    try:
        if (content_type or CSV).split(";")[0].strip() == "application/json":
            scores = np.array([p["score"] for p in json.loads(text)["predictions"]], dtype=np.float64)
        else:
            scores = np.array(text.split(), dtype=np.float64)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{where}: the response is not one probability per row ({error}): {text[:200]!r}") from None
    if len(scores) != rows:
        raise ValueError(f"{where}: the endpoint returned {len(scores)} scores for {rows} rows")
    return scores


def endpoint_probabilities(matrix: np.ndarray, endpoint_name: str, client: Any | None = None,
                           settings: Settings | None = None, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> np.ndarray:
    """Alarm probabilities for every row from a SageMaker endpoint, in row order, in as few calls as the limit allows."""
    from botocore.exceptions import ClientError

    matrix = np.asarray(matrix)
    if matrix.ndim == 2 and matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    client = client or aws_client("sagemaker-runtime", settings or load_settings())
    payload = csv_payload(matrix)
    bounds = chunk_bounds(payload, max_payload_bytes)
    total = matrix.shape[0]
    scores = []
    for first_row, end_row, first_byte, end_byte in bounds:
        where = f"endpoint {endpoint_name}, rows {first_row + 1}–{end_row} of {total}"
        try:
            response = client.invoke_endpoint(EndpointName=endpoint_name, ContentType=CSV, Accept=CSV,
                                              Body=payload[first_byte:end_byte])
        except ClientError as error:
            raise _scoring_error(error, where) from None
        scores.append(parse_scores(response["Body"].read(), response.get("ContentType"), end_row - first_row, where))
    return np.concatenate(scores)


def _scoring_error(error: Any, where: str) -> Exception:
    """A ClientError of InvokeEndpoint as InvalidInput (the model refused the rows) or EndpointUnavailable."""
    details = error.response.get("Error", {})
    code, message = details.get("Code", ""), details.get("Message", str(error))
    if code == "ModelError":
        original = error.response.get("OriginalMessage") or message
        return InvalidInput(f"{where}: the model rejected the rows: {original}")
    if code in ("ValidationError", "ValidationException"):
        return EndpointUnavailable(f"{where}: {message}")
    return error


class EndpointScorer:
    """The API's scoring on the aws backend: each feature set's rows go to its champion's endpoint (one runtime
    client for the process; botocore's clients are thread-safe)."""

    def __init__(self, client: Any):
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EndpointScorer:
        return cls(aws_client("sagemaker-runtime", settings or load_settings()))

    def __call__(self, feature_set: str, matrix: np.ndarray, model: object) -> np.ndarray:
        from pipelines.serving.sagemaker_deploy import endpoint_name

        return endpoint_probabilities(matrix, endpoint_name(feature_set), self.client)
