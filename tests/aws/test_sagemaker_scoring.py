"""pipelines/serving/sagemaker_scoring.py: rows scored through `sagemaker-runtime` InvokeEndpoint.

Two servers answer the same boto3 calls here. moto's SageMaker Runtime returns canned bodies (queued through its
`/moto-api/static/sagemaker/endpoint-results` API) and runs no model: against it these tests prove the request
shapes and the chunking under the payload limit. The project's own model server (`cellguard serve-model`, on
loopback, with a real champion) answers InvokeEndpoint's path with inference.py: against it they prove that real
probabilities come back, equal to predict_fn's, and that the model's errors name the rows.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
from moto.sagemakerruntime.models import sagemakerruntime_backends
from serving.live_server import live_server
from serving.registry_builders import promote, train_archive
from training.builders import synthetic_windows

from pipelines.config import Settings
from pipelines.features.window_signals import feature_columns
from pipelines.serving.inference import InvalidInput, model_fn, predict_fn
from pipelines.serving.model_champions import ChampionModels
from pipelines.serving.model_server import create_app, served_feature_sets
from pipelines.serving.sagemaker_scoring import (
    EndpointUnavailable,
    chunk_bounds,
    csv_payload,
    endpoint_probabilities,
    parse_scores,
)
from pipelines.storage.aws import aws_client
from pipelines.storage.lake import Lake
from pipelines.training import train

from .conftest import REGION
from .test_sagemaker_training import ACCOUNT, CallRecorder

ENDPOINT = "cellguard-signals6"


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    """300 signals6 rows (about 10% missing)."""
    windows = synthetic_windows(vehicles=5, days=60)
    return train.feature_matrix(windows, feature_columns("signals6"))


# ---------------------------------------------------------------------------------------------- against moto


@pytest.fixture
def runtime(aws_settings: Settings) -> Iterator[tuple[Any, CallRecorder]]:
    """The runtime client the code gets (at moto), its call recorder, and moto's canned results emptied."""
    sagemakerruntime_backends[ACCOUNT][REGION].reset()
    client = aws_client("sagemaker-runtime", aws_settings)
    yield client, CallRecorder(client)
    sagemakerruntime_backends[ACCOUNT][REGION].reset()


def queue_results(moto_endpoint: str, bodies: list[str]) -> None:
    """What moto's InvokeEndpoint answers next, one body per call."""
    response = httpx.post(f"{moto_endpoint}/moto-api/static/sagemaker/endpoint-results", json={
        "account_id": ACCOUNT, "region": REGION,
        "results": [{"Body": body, "ContentType": "text/csv", "InvokedProductionVariant": "AllTraffic"}
                    for body in bodies]})
    assert response.status_code == 201


def test_rows_go_as_csv_in_whole_line_chunks_under_the_limit(runtime, moto_endpoint: str, matrix: np.ndarray) -> None:
    client, recorder = runtime
    payload = csv_payload(matrix)
    limit = len(payload) * 2 // 5  # three calls: two of about 40 % of the rows, one of the rest
    bounds = chunk_bounds(payload, limit)
    assert [(b[0], b[1]) for b in bounds] == [(0, bounds[0][1]), (bounds[0][1], bounds[1][1]), (bounds[1][1], 300)]
    assert 100 < bounds[0][1] < 130
    canned = [np.round(np.linspace(0.01, 0.99, end - first), 6) for first, end, _, _ in bounds]
    queue_results(moto_endpoint, ["".join(f"{v}\n" for v in scores) for scores in canned])

    probabilities = endpoint_probabilities(matrix, ENDPOINT, client=client, max_payload_bytes=limit)

    assert np.array_equal(probabilities, np.concatenate(canned))  # moto's canned answers, in row order
    calls = recorder.named("InvokeEndpoint")
    assert [sorted(c) for c in calls] == [["Accept", "Body", "ContentType", "EndpointName"]] * 3
    assert {(c["EndpointName"], c["ContentType"], c["Accept"]) for c in calls} == {(ENDPOINT, "text/csv", "text/csv")}
    bodies = [c["Body"] for c in calls]
    assert b"".join(bodies) == payload and all(len(b) <= limit and b.endswith(b"\n") for b in bodies)
    assert [b.count(b"\n") for b in bodies] == [len(c) for c in canned]


def test_a_small_batch_is_one_call(runtime, moto_endpoint: str, matrix: np.ndarray) -> None:
    client, recorder = runtime
    queue_results(moto_endpoint, ["0.25\n0.5\n0.75\n"])
    assert endpoint_probabilities(matrix[:3], ENDPOINT, client=client).tolist() == [0.25, 0.5, 0.75]
    assert len(recorder.named("InvokeEndpoint")) == 1
    assert endpoint_probabilities(matrix[:0], ENDPOINT, client=client).shape == (0,)
    assert len(recorder.named("InvokeEndpoint")) == 1  # nothing to score: no call


def test_a_response_with_the_wrong_number_of_scores_is_an_error(runtime, moto_endpoint: str,
                                                               matrix: np.ndarray) -> None:
    client, _ = runtime
    queue_results(moto_endpoint, ["0.25\n0.5\n"])
    with pytest.raises(ValueError, match="endpoint cellguard-signals6, rows 1–3 of 3: the endpoint returned 2 scores "
                                         "for 3 rows"):
        endpoint_probabilities(matrix[:3], ENDPOINT, client=client)


def test_a_row_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(InvalidInput, match="row 2 alone is 12 bytes of CSV, over the 10-byte request limit"):
        chunk_bounds(b"1,2\n0.1,0.2,0.3\n", 10)


def test_json_responses_are_read_too() -> None:
    body = b'{"predictions": [{"score": 0.5}, {"score": 0.125}]}'
    assert parse_scores(body, "application/json", 2, "here").tolist() == [0.5, 0.125]
    with pytest.raises(ValueError, match="here: the response is not one probability per row"):
        parse_scores(b"ok\n", "text/csv", 1, "here")


# ---------------------------------------------------------------------------------------------- against the model server


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`cellguard serve-model`'s app on loopback with a real signals6 champion; its URL and the champion's archive."""
    windows = synthetic_windows(vehicles=6, days=40)
    root = tmp_path_factory.mktemp("scoring")
    archive = train_archive(root / "model", windows[windows["label"].notna()].reset_index(drop=True), seed=1)
    lake = Lake((root / "lake").as_uri())
    promote(lake, archive)
    champions = ChampionModels(lake, served_feature_sets("signals6"))
    champions.refresh()
    unpacked = root / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(unpacked, filter="data")
    with live_server(create_app(champions)) as url:
        yield url, unpacked


def runtime_client(url: str) -> Any:
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name=REGION)


def test_the_model_server_returns_predict_fns_probabilities_chunk_by_chunk(model_server, matrix: np.ndarray) -> None:
    url, model_dir = model_server
    client = runtime_client(url)
    recorder = CallRecorder(client)

    probabilities = endpoint_probabilities(matrix, ENDPOINT, client=client, max_payload_bytes=16_000)

    expected = predict_fn(matrix, model_fn(model_dir))  # in process, as the local backend scores
    assert len(recorder.named("InvokeEndpoint")) == len(chunk_bounds(csv_payload(matrix), 16_000)) > 3
    assert probabilities.dtype == np.float64 and np.array_equal(probabilities.astype(np.float32), expected)
    assert 0.0 < probabilities.min() < 0.5 < probabilities.max() < 1.0  # a real model's spread, not a canned value


def test_rows_the_model_rejects_are_invalid_input_naming_the_rows(model_server, matrix: np.ndarray) -> None:
    url, _ = model_server
    with pytest.raises(InvalidInput, match="endpoint cellguard-signals6, rows 1–300 of 300: the model rejected the "
                                           "rows: expected 84 values per row for feature set signals6, got 83"):
        endpoint_probabilities(matrix[:, :83], ENDPOINT, client=runtime_client(url))


def test_an_unknown_endpoint_is_unavailable(model_server, matrix: np.ndarray) -> None:
    url, _ = model_server
    with pytest.raises(EndpointUnavailable, match="endpoint cellguard-nope, rows 1–2 of 2: Endpoint cellguard-nope "
                                                  "not found"):
        endpoint_probabilities(matrix[:2], "cellguard-nope", client=runtime_client(url))
