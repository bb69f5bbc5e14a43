"""pipelines/serving/model_server.py: a real server on loopback, called over HTTP and with boto3's sagemaker-runtime."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import boto3
import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError

from pipelines.cli import build_parser
from pipelines.config import load_settings
from pipelines.features.window_signals import feature_columns
from pipelines.serving.model_champions import ChampionModels
from pipelines.serving.model_server import create_app, served_feature_sets
from pipelines.storage.lake import Lake
from pipelines.training import train

from .live_server import live_server, wait_until
from .registry_builders import promote, with_full_columns

VERSION = "x-cellguard-model-version"


def expected_scores(tmp_path: Path, archive: bytes, matrix: np.ndarray) -> np.ndarray:
    """What train.py's own loader and predict give for the archive (independent of the server)."""
    folder = tmp_path / f"expected-{abs(hash(archive))}"
    folder.mkdir(exist_ok=True)
    (folder / "model.tar.gz").write_bytes(archive)
    return train.predict(train.load_booster(folder)[0], matrix)


def csv_body(matrix: np.ndarray) -> str:
    """Rows as the reference client sends them (empty field = missing)."""
    return "".join(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n" for row in matrix)


def runtime_client(url: str):
    """The AWS SDK's SageMaker Runtime client, pointed at the local server."""
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="eu-west-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture(scope="module")
def served(tmp_path_factory, archives, windows):
    """One server with a signals6 and a full champion, loaded before it starts (no polling)."""
    lake = Lake(tmp_path_factory.mktemp("lake").as_uri())
    versions = {"signals6": promote(lake, archives["signals6"]), "full": promote(lake, archives["full"], "full")}
    champions = ChampionModels(lake, served_feature_sets("signals6"))
    champions.refresh()
    matrix = train.feature_matrix(windows.iloc[:6], feature_columns("signals6"))
    tmp = tmp_path_factory.mktemp("expected")
    with live_server(create_app(champions)) as url:
        yield SimpleNamespace(url=url, versions=versions, matrix=matrix,
                              expected=expected_scores(tmp, archives["signals6"], matrix))


# ---------------------------------------------------------------------------------------------- container contract


def test_ping_and_execution_parameters(served) -> None:
    ping = httpx.get(f"{served.url}/ping")
    assert ping.status_code == 200 and ping.headers[VERSION] == served.versions["signals6"]
    assert ping.json() == {"status": "ok", "feature_set": "signals6", "version": served.versions["signals6"]}
    parameters = httpx.get(f"{served.url}/execution-parameters")
    assert parameters.json() == {"MaxConcurrentTransforms": os.cpu_count(), "BatchStrategy": "MULTI_RECORD",
                                 "MaxPayloadInMB": 6}


def test_invocations_score_several_csv_or_json_rows_and_honour_accept(served) -> None:
    response = httpx.post(f"{served.url}/invocations", content=csv_body(served.matrix),
                          headers={"Content-Type": "text/csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers[VERSION] == served.versions["signals6"]
    assert np.array_equal(np.array(response.text.split(), dtype=np.float32), served.expected)

    rows = [[None if np.isnan(v) else float(v) for v in row] for row in served.matrix]
    response = httpx.post(f"{served.url}/invocations", json={"instances": rows})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    scores = [p["score"] for p in response.json()["predictions"]]
    assert np.array_equal(np.array(scores, dtype=np.float32), served.expected)

    response = httpx.post(f"{served.url}/invocations", content=csv_body(served.matrix),
                          headers={"Content-Type": "text/csv", "Accept": "application/json"})
    assert len(response.json()["predictions"]) == 6


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    ("1," * 82 + "1\n", {"Content-Type": "text/csv"}, 400,
     "expected 84 values per row for feature set signals6, got 83"),
    ("1,2,3,4,abc" + ",1" * 79 + "\n", {"Content-Type": "text/csv"}, 400, "row 1, column 5: 'abc' is not a number"),
    ('{"instances": [[1, 2], [3]]}', {"Content-Type": "application/json"}, 400, "row 2 has 1 values but row 1 has 2"),
    ("1,2", {"Content-Type": "text/plain"}, 415, "content type 'text/plain' is not supported"),
    ("1," * 83 + "1\n", {"Content-Type": "text/csv", "Accept": "application/xml"}, 406,
     "accept 'application/xml' is not supported"),
    ("1," * (3 * 1024 * 1024 + 1), {"Content-Type": "text/csv"}, 413, "over the 6 MB limit"),
])
def test_bad_requests_are_4xx_with_the_reason(served, body, headers, status, message) -> None:
    response = httpx.post(f"{served.url}/invocations", content=body, headers=headers)
    assert response.status_code == status and message in response.text


def test_a_chunked_body_is_cut_off_at_6_mb(served) -> None:
    chunks = (b"1," * 512 * 1024 for _ in range(7))  # no Content-Length: the server counts as it reads
    response = httpx.post(f"{served.url}/invocations", content=chunks, headers={"Content-Type": "text/csv"})
    assert response.status_code == 413 and "over the 6 MB limit" in response.text


# ---------------------------------------------------------------------------------------------- SageMaker Runtime


def test_boto3_sagemaker_runtime_invokes_the_endpoint_unchanged(served, windows, tmp_path, archives) -> None:
    client = runtime_client(served.url)
    row = csv_body(served.matrix[:1])
    assert row.count(",") == 83 and ",," in row  # the reference client's 84 values, one missing
    response = client.invoke_endpoint(EndpointName="cellguard-signals6", ContentType="text/csv", Body=row)
    assert response["ContentType"].startswith("text/csv") and response["InvokedProductionVariant"] == "AllTraffic"
    assert np.float32(response["Body"].read().decode()) == served.expected[0]
    assert response["ResponseMetadata"]["HTTPHeaders"][VERSION] == served.versions["signals6"]

    full = train.feature_matrix(with_full_columns(windows).iloc[:2], feature_columns("full"))
    response = client.invoke_endpoint(EndpointName="cellguard-full", ContentType="application/json",
                                      Accept="application/json", Body=json.dumps({"instances": [
                                          [None if np.isnan(v) else float(v) for v in r] for r in full]}))
    scores = [p["score"] for p in json.loads(response["Body"].read())["predictions"]]
    assert np.array_equal(np.array(scores, dtype=np.float32), expected_scores(tmp_path, archives["full"], full))
    assert response["ResponseMetadata"]["HTTPHeaders"][VERSION] == served.versions["full"]


def test_boto3_sees_sagemaker_shaped_errors(served) -> None:
    client = runtime_client(served.url)
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="cellguard-nope", ContentType="text/csv", Body="1,2\n")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "Endpoint cellguard-nope not found: this model server serves cellguard-signals6, cellguard-full" in str(
        caught.value)
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="cellguard-signals6", ContentType="text/csv", Body="1," * 82 + "1\n")
    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert ('Received client error (400) from primary with message "expected 84 values per row for feature set '
            'signals6, got 83"') in str(caught.value)


# ---------------------------------------------------------------------------------------------- champions over time


def test_503_until_the_first_champion_then_served_after_a_poll(tmp_path, archives) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    with live_server(create_app(ChampionModels(lake, served_feature_sets("signals6")), poll_seconds=0.1)) as url:
        ping = httpx.get(f"{url}/ping")
        assert (ping.status_code, ping.text) == (503, "no champion for signals6: run bms_training\n")
        response = httpx.post(f"{url}/invocations", content="1," * 83 + "1\n", headers={"Content-Type": "text/csv"})
        assert (response.status_code, response.text) == (503, "no champion for signals6: run bms_training\n")
        with pytest.raises(ClientError, match="Endpoint cellguard-signals6 is not ready: no champion for signals6: "
                                              "run bms_training"):
            runtime_client(url).invoke_endpoint(EndpointName="cellguard-signals6", ContentType="text/csv", Body="1")

        version = promote(lake, archives["signals6"])
        wait_until(lambda: httpx.get(f"{url}/ping").status_code == 200, "the champion to be loaded")
        response = httpx.post(f"{url}/invocations", content="1," * 83 + "1\n", headers={"Content-Type": "text/csv"})
        assert response.status_code == 200 and response.headers[VERSION] == version


def test_a_new_champion_is_swapped_in_while_requests_keep_flowing(tmp_path, archives, windows) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    first = promote(lake, archives["signals6"])
    matrix = train.feature_matrix(windows.iloc[:20], feature_columns("signals6"))
    scores = {first: expected_scores(tmp_path, archives["signals6"], matrix)}
    body = csv_body(matrix)
    results: list[tuple[int, str | None, str]] = []
    stop = threading.Event()

    def send(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                response = client.post("/invocations", content=body, headers={"Content-Type": "text/csv"})
                results.append((response.status_code, response.headers.get(VERSION), response.text))

    champions = ChampionModels(lake, served_feature_sets("signals6"))
    with live_server(create_app(champions, poll_seconds=0.1)) as url:
        wait_until(lambda: httpx.get(f"{url}/ping").status_code == 200, "the first champion")
        senders = [threading.Thread(target=send, args=(url,)) for _ in range(2)]
        for sender in senders:
            sender.start()
        try:
            wait_until(lambda: len(results) >= 10, "requests on the first champion")
            second = promote(lake, archives["signals6_b"], minutes=5)
            scores[second] = expected_scores(tmp_path, archives["signals6_b"], matrix)
            wait_until(lambda: sum(v == second for _, v, _ in results) >= 10, "requests on the new champion")
        finally:
            stop.set()
            for sender in senders:
                sender.join(15)

    assert [status for status, _, _ in results] == [200] * len(results)
    versions = [version for _, version, _ in results]
    assert set(versions) == {first, second} and versions.index(second) > 0
    # Each answer is exactly the scores of the model its header names: no request saw half a swap.
    for _, version, text in results:
        assert np.array_equal(np.array(text.split(), dtype=np.float32), scores[version])
    assert not np.array_equal(scores[first], scores[second])


# ---------------------------------------------------------------------------------------------- command and settings


def test_serve_model_command_defaults_and_settings(monkeypatch) -> None:
    args = build_parser().parse_args(["serve-model"])
    assert (args.port, args.host, args.feature_set) == (None, "127.0.0.1", "signals6")
    monkeypatch.delenv("CELLGUARD_MODEL_SERVER_PORT", raising=False)
    monkeypatch.delenv("CELLGUARD_MODEL_POLL_SECONDS", raising=False)
    assert (load_settings().model_server_port, load_settings().model_poll_seconds) == (8081, 30.0)
    monkeypatch.setenv("CELLGUARD_MODEL_SERVER_PORT", "8080")
    monkeypatch.setenv("CELLGUARD_MODEL_POLL_SECONDS", "0.5")
    assert (load_settings().model_server_port, load_settings().model_poll_seconds) == (8080, 0.5)
    for name, value, message in (("CELLGUARD_MODEL_SERVER_PORT", "80x", "a port number between 1 and 65535"),
                                 ("CELLGUARD_MODEL_POLL_SECONDS", "0", "a number of seconds above 0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=f"{name} must be {message}, not '{value}'"):
            load_settings()
        monkeypatch.setenv(name, "1")


def test_cellguard_serve_model_runs_the_server(tmp_path, archives, isolate_settings) -> None:
    """The command itself, in its own process, against a lake with a champion."""
    lake = Lake((tmp_path / "lake").as_uri())
    version = promote(lake, archives["signals6"])
    isolate_settings(tmp_path, lake.uri)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve-model", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        def pinged() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ping").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(pinged, "cellguard serve-model to answer /ping", timeout_s=30, alive=lambda: process.poll() is None)
        assert httpx.get(f"http://127.0.0.1:{port}/ping").json()["version"] == version
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert f"signals6: now serving {version}" in stderr.decode()
