"""pipelines/serving/api.py: a real prediction API on loopback (uvicorn), trained champions, a real lake and event store."""

from __future__ import annotations

import json
import math
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

# pytest puts tests/ on sys.path (its folders are packages, it is not), so the training tests' builders are `training.`
from training.daily_builders import FIRST_DAY, write_synthetic_daily

from pipelines.cli import build_parser, main
from pipelines.config import Secret, load_settings
from pipelines.features.window_signals import feature_columns
from pipelines.features.windows import inference_windows, select_feature_set
from pipelines.schema import CELL_DAILY_SCHEMA
from pipelines.serving import api as api_module
from pipelines.serving.api import create_app
from pipelines.serving.api_auth import with_token
from pipelines.serving.inference import predict_fn
from pipelines.serving.model_loading import load_registered
from pipelines.storage import daily_zone
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import read_predictions
from pipelines.training import registry, train
from pipelines.training.pipeline import TrainingRequest, train_and_register

from .live_server import live_server

TOKEN = "test-token-0123456789abcdef"
MAX_ITEMS = 5
AS_OF = date(2026, 3, 1)  # context 2026-02-15 … 2026-02-28, inside the 90 synthetic days
SUSPECT_DAY, SUSPECT_VIN, SUSPECT_CELL = date(2026, 2, 25), "LSVSYN00000000003", 7
UNKNOWN_VIN = "LSVZZZ00000000099"  # a well-formed VIN the lake has never seen


def vins(onsets: dict, faulty: bool) -> list[str]:
    return [vin for vin, onset in onsets.items() if (onset is not None) == faulty]


def settings_for(tmp: Path, **overrides):
    base = replace(load_settings(), home=tmp, api_token=Secret(TOKEN), api_max_items=MAX_ITEMS,
                   prediction_flush_rows=500, prediction_flush_seconds=600.0)
    return replace(base, **overrides)


def with_suspect_cell(lake: Lake) -> None:
    """Name a suspect cell on one vehicle-day (the synthetic rows have none)."""
    day = daily_zone.read_daily(lake, SUSPECT_DAY, SUSPECT_DAY)
    cells = pa.array([SUSPECT_CELL if vin == SUSPECT_VIN else None for vin in day["vin"].to_pylist()], pa.int32())
    day = day.set_column(day.column_names.index("suspect_cell"), "suspect_cell", cells)
    daily_zone.write_computed(lake, SUSPECT_DAY, day, CELL_DAILY_SCHEMA.empty_table())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SimpleNamespace:
    """A lake with 24 vehicles × 90 daily rows and a trained champion for each feature set."""
    lake = Lake(tmp_path_factory.mktemp("api-lake").as_uri())
    onsets = write_synthetic_daily(lake)
    with_suspect_cell(lake)
    for feature_set in ("full", "signals6"):
        train_and_register(TrainingRequest(feature_set, params={"nthread": 1}, num_round=20, with_baseline=False),
                           lake=lake)
    models = {fs: load_registered(lake, registry.champion(lake, fs).version) for fs in ("signals6", "full")}
    return SimpleNamespace(lake=lake, onsets=onsets, models=models)


@pytest.fixture(scope="module")
def api(trained, tmp_path_factory) -> SimpleNamespace:
    """One API server for the module, with its own SQLite event store."""
    tmp = tmp_path_factory.mktemp("api")
    store = EventStore(f"sqlite:///{tmp / 'events.sqlite'}")
    with (live_server(create_app(settings_for(tmp), trained.lake, store)) as url,
          httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client):
        yield SimpleNamespace(url=url, client=client, store=store, **vars(trained))
    store.close()


_WINDOWS: dict[tuple[str, date], pd.DataFrame] = {}


def window_rows(lake: Lake, feature_set: str, as_of: date) -> dict:
    """Each vehicle's window at as_of as batch inference builds it: vin → row of the feature set's columns."""
    key = (lake.uri, as_of)
    if key not in _WINDOWS:
        daily = daily_zone.read_daily(lake, as_of - timedelta(days=14), as_of - timedelta(days=1))
        _WINDOWS[key] = select_feature_set(inference_windows(daily, [as_of]), "full").to_pandas()
    windows = _WINDOWS[key]
    return {vin: windows.iloc[[n]][feature_columns(feature_set)] for n, vin in enumerate(windows["vin"])}


def reference_values(lake: Lake, vin: str, as_of: date) -> np.ndarray:
    """The reference request's 84 values for a vehicle (NaN for a day without data)."""
    row = window_rows(lake, "signals6", as_of)[vin]
    return train.feature_matrix(row, feature_columns("signals6"))[0].astype(np.float64)


def as_text(values: np.ndarray) -> str:
    """Values as the reference client sends them: comma-separated, an empty field for a missing one."""
    return ",".join("" if math.isnan(v) else repr(float(v)) for v in values)


def expected(model, matrix: np.ndarray) -> float:
    return float(predict_fn(matrix, model.model)[0])


# ---------------------------------------------------------------------------------------------- POST /v1/predictions


def test_the_reference_body_is_scored_by_the_signals6_champion_like_predict_fn(api) -> None:
    values = reference_values(api.lake, SUSPECT_VIN, AS_OF)
    values[5] = math.nan  # a missing value, sent as an empty field
    response = api.client.post("/v1/predictions",
                               json={"vin": SUSPECT_VIN, "date": AS_OF.isoformat(), "features": as_text(values)})
    assert response.status_code == 200, response.text
    answer, model = response.json(), api.models["signals6"]
    assert answer["probability"] == expected(model, values.reshape(1, -1))
    assert (answer["feature_set"], answer["model_version"], answer["threshold"]) == (
        "signals6", model.version, model.card["threshold"])
    assert answer["alarm"] == (answer["probability"] >= answer["threshold"])
    assert answer["suspect_cell"] == SUSPECT_CELL  # the lake's latest suspect in the 14 days before the date
    assert (answer["vin"], answer["date"], answer["source"], answer["replayed"]) == (
        SUSPECT_VIN, "2026-03-01", "api", False)
    assert answer["request_id"] == response.headers["x-request-id"] and len(answer["request_id"]) == 36  # a UUID
    names = feature_columns("signals6")
    assert 1 <= len(answer["reasons"]) <= 3
    for reason in answer["reasons"]:
        sent = values[names.index(reason["feature"])]
        assert reason["contribution"] > 0 and (reason["value"] == sent or (math.isnan(sent) and reason["value"] is None))
    contributions = [r["contribution"] for r in answer["reasons"]]
    assert contributions == sorted(contributions, reverse=True)


def test_without_features_the_full_champion_scores_the_lakes_daily_rows(api) -> None:
    faulty = vins(api.onsets, faulty=True)[0]
    late = FIRST_DAY + timedelta(days=api.onsets[faulty] + 20)  # the drift is well under way
    response = api.client.post("/v1/predictions", json={"vin": faulty, "date": late.isoformat()})
    assert response.status_code == 200, response.text
    answer, model = response.json(), api.models["full"]
    matrix = train.feature_matrix(window_rows(api.lake, "full", late)[faulty], model.model.feature_names)
    assert answer["probability"] == expected(model, matrix)
    assert (answer["feature_set"], answer["model_version"], answer["alarm"]) == ("full", model.version, True)
    assert answer["suspect_cell"] is None  # the synthetic daily rows name no suspect
    assert all(r["feature"] in model.model.feature_names for r in answer["reasons"])

    named = api.client.post("/v1/predictions", json={"vin": SUSPECT_VIN, "date": AS_OF.isoformat()}).json()
    daily = daily_zone.read_daily(api.lake, AS_OF - timedelta(days=14), AS_OF - timedelta(days=1))
    window = inference_windows(daily, [AS_OF]).to_pandas().set_index("vin").loc[SUSPECT_VIN]
    assert named["suspect_cell"] == window["suspect_cell"] == SUSPECT_CELL  # the window's suspect, as batch names it


def test_a_list_of_mixed_items_is_answered_in_order_under_one_request_id(api) -> None:
    healthy = vins(api.onsets, faulty=False)
    items = [{"vin": healthy[0], "date": "2026-03-01", "features": as_text(reference_values(api.lake, healthy[0], AS_OF))},
             {"vin": healthy[0], "date": "2026-03-01"},
             {"vin": healthy[1], "date": "2026-03-02"},
             {"vin": healthy[2], "date": "2026-03-01", "features": reference_values(api.lake, healthy[2], AS_OF).tolist()}]
    response = api.client.post("/v1/predictions", json=items)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [(a["vin"], a["date"], a["feature_set"]) for a in answers] == [
        (healthy[0], "2026-03-01", "signals6"), (healthy[0], "2026-03-01", "full"),
        (healthy[1], "2026-03-02", "full"), (healthy[2], "2026-03-01", "signals6")]
    assert {a["request_id"] for a in answers} == {response.headers["x-request-id"]}
    full = window_rows(api.lake, "full", date(2026, 3, 2))[healthy[1]]
    assert answers[2]["probability"] == expected(api.models["full"],
                                                 train.feature_matrix(full, api.models["full"].model.feature_names))
    stored = [r for r in api.store.predictions_between(AS_OF, date(2026, 3, 2))
              if r["request_id"] == response.headers["x-request-id"]]
    assert len(stored) == 4


def test_concurrent_requests_are_each_answered_as_if_alone(api) -> None:
    """Requests in flight together share scoring passes (api_batching.py); a bad one fails alone."""
    healthy = vins(api.onsets, faulty=False)
    bodies = [{"vin": vin, "date": "2026-03-01", "features": as_text(reference_values(api.lake, vin, AS_OF))}
              for vin in healthy[6:12]] + [{"vin": vin, "date": "2026-03-01"} for vin in healthy[6:12]]
    bodies.insert(5, {"vin": UNKNOWN_VIN, "date": "2026-03-01"})

    def post(body: dict) -> httpx.Response:
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            return client.post("/v1/predictions", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(post, bodies))
    assert [r.status_code for r in responses] == [200] * 5 + [404] + [200] * 7
    assert responses[5].json()["detail"][0]["loc"] == ["body", "vin"]
    for body, response in zip(bodies, responses, strict=True):
        if response.status_code != 200:
            continue
        answer = response.json()
        model = api.models["signals6" if "features" in body else "full"]
        feature_set = "signals6" if "features" in body else "full"
        row = window_rows(api.lake, feature_set, AS_OF)[body["vin"]]
        assert (answer["vin"], answer["feature_set"]) == (body["vin"], feature_set)
        assert answer["probability"] == expected(model, train.feature_matrix(row, model.model.feature_names))
        assert answer["request_id"] == response.headers["x-request-id"]


def test_on_the_aws_backend_scores_come_from_the_champions_endpoints(trained, tmp_path) -> None:
    """EndpointScorer with boto3's real sagemaker-runtime client, pointed at `cellguard serve-model` on loopback
    (it answers InvokeEndpoint's path): the same probabilities as in process, through HTTP."""
    import boto3

    from pipelines.serving.api_answers import Answerer
    from pipelines.serving.api_scoring import Item, score_items
    from pipelines.serving.daily_context import DailyContext
    from pipelines.serving.model_champions import ChampionModels
    from pipelines.serving.model_server import create_app as create_model_server
    from pipelines.serving.sagemaker_scoring import EndpointScorer

    champions = ChampionModels(trained.lake, ["signals6", "full"])
    champions.refresh()
    vin = vins(trained.onsets, faulty=True)[3]
    items = [Item(("body", 0), vin, AS_OF, tuple(reference_values(trained.lake, vin, AS_OF)), "aws-1", False),
             Item(("body", 1), vin, AS_OF, None, "aws-1", False)]
    context = DailyContext(trained.lake)
    local = score_items(items, context, champions)
    served = ChampionModels(trained.lake, ["signals6", "full"])
    served.refresh()  # loaded before the first call (the server's own watcher loads them in the background)
    with live_server(create_model_server(served)) as url:
        runtime = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="eu-west-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        remote = score_items(items, context, champions, probabilities=EndpointScorer(runtime))
        store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
        with api_module.PredictionBuffer(Lake(tmp_path.as_uri()), store) as buffer:  # not the shared lake
            answers = Answerer(context, champions, store, buffer, EndpointScorer(runtime)).answer(items)
        store.close()
    for ours, theirs, answer in zip(local, remote, answers, strict=True):
        assert theirs["probability"] == pytest.approx(ours["probability"], rel=1e-6)  # float32 text on the wire
        assert (theirs["feature_set"], theirs["model_version"], theirs["reasons"]) == (
            ours["feature_set"], ours["model_version"], ours["reasons"])
        assert answer["probability"] == theirs["probability"]


def test_an_endpoint_that_is_not_in_service_is_a_503_naming_the_model(trained) -> None:
    import boto3

    from pipelines.serving.api_scoring import Item, score_items
    from pipelines.serving.daily_context import DailyContext
    from pipelines.serving.model_champions import ChampionModels
    from pipelines.serving.model_server import create_app as create_model_server
    from pipelines.serving.sagemaker_scoring import EndpointScorer

    champions = ChampionModels(trained.lake, ["signals6"])
    champions.refresh()
    vin = vins(trained.onsets, faulty=True)[3]
    item = Item(("body",), vin, AS_OF, tuple(reference_values(trained.lake, vin, AS_OF)), "aws-2", False)
    served = ChampionModels(trained.lake, ["full"])  # no signals6 endpoint
    served.refresh()
    with live_server(create_model_server(served)) as url:
        runtime = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="eu-west-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        with pytest.raises(api_module.ApiError) as raised:
            score_items([item], DailyContext(trained.lake), champions, probabilities=EndpointScorer(runtime))
    assert raised.value.status == 503
    assert raised.value.problems[0]["loc"] == ["model", "signals6"] and "cellguard-signals6" in raised.value.problems[0]["msg"]


@pytest.mark.parametrize("body, status, loc, message", [
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "features": ",".join(["1.0"] * 83)}, 422, ["body", "features"],
     "holds 83 values; the signals6 model takes 84"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "features": "1,2,3,4,abc" + ",1" * 79}, 422, ["body", "features"],
     "value 5: 'abc' is not a number"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "features": "1,inf" + ",1" * 82}, 422, ["body", "features"],
     "value 2: 'inf' is not a finite number"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "features": [1, "x", 3]}, 422, ["body", "features"],
     "value 2: 'x' is not a number"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "features": 84}, 422, ["body", "features"],
     "must be a string of comma-separated values or a list of numbers"),
    ({"vin": "LSVSYN0000000000I", "date": "2026-03-01"}, 422, ["body", "vin"],
     "VIN 'LSVSYN0000000000I' is not 17 characters of A–Z (no I, O, Q) and 0–9"),
    ({"vin": "short", "date": "2026-03-01"}, 422, ["body", "vin"], "is not 17 characters"),
    ({"vin": 12345678901234567, "date": "2026-03-01"}, 422, ["body", "vin"], "valid string"),
    ({"vin": UNKNOWN_VIN, "date": "2026-03-01"}, 404, ["body", "vin"],
     f"unknown vehicle {UNKNOWN_VIN}: no daily rows in the 14 days 2026-02-15 … 2026-02-28"),
    ({"vin": SUSPECT_VIN, "date": "2025-01-01"}, 404, ["body", "vin"], "unknown vehicle"),
    ({"vin": SUSPECT_VIN, "date": "01/03/2026"}, 422, ["body", "date"], "not a date of the form YYYY-MM-DD"),
    ({"vin": SUSPECT_VIN, "date": "2026-02-30"}, 422, ["body", "date"], "not a calendar date"),
    ({"vin": SUSPECT_VIN, "date": "0001-01-05", "features": "1"}, 422, ["body", "date"], "is outside 1970-01-01"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "features": [10 ** 400]}, 422, ["body", "features"], "too large"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "features": [[[1]]]}, 422, ["body", "features"],
     "value 1: [[1]] is not a number"),
    ({"vin": SUSPECT_VIN}, 422, ["body", "date"], "date is required"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "feature": "1,2"}, 422, ["body", "feature"], "unknown field 'feature'"),
    ({"vin": SUSPECT_VIN, "date": "2026-03-01", "request_id": "../etc"}, 422, ["body", "request_id"],
     "request id '../etc' must be"),
    ([], 422, ["body"], "the list holds no items"),
    ([{"vin": SUSPECT_VIN, "date": "2026-03-01"}] * (MAX_ITEMS + 1), 422, ["body"],
     f"the list holds {MAX_ITEMS + 1} items, more than the {MAX_ITEMS}"),
    ([{"vin": SUSPECT_VIN, "date": "2026-03-01"}, {"vin": "LSVSYN000000000O0", "date": "2026-03-01"}], 422,
     ["body", 1, "vin"], "is not 17 characters"),
    ([{"vin": SUSPECT_VIN, "date": "2026-03-01"}, {"vin": SUSPECT_VIN, "date": "2026-03-01"}], 422, ["body", 1],
     "repeats item 0"),
    ([{"vin": SUSPECT_VIN, "date": "2026-03-01"}, {"vin": UNKNOWN_VIN, "date": "2026-03-01"}], 404,
     ["body", 1, "vin"], "unknown vehicle"),
    ([{"vin": UNKNOWN_VIN, "date": "2026-03-01"}, {"vin": SUSPECT_VIN, "date": "2026-03-01", "features": "1,2"}], 422,
     ["body", 1, "features"], "holds 2 values"),  # the request's own fault is named before the lake is read
    ("a string", 422, ["body"], "body must be a JSON object (one item) or a list of items, not a string"),
    ([7], 422, ["body", 0], "item must be an object with vin and date, not a number"),
])
def test_bad_input_is_a_4xx_naming_the_field(api, body, status, loc, message) -> None:
    before = len(api.store.predictions_for_vin(SUSPECT_VIN, limit=1000))
    response = api.client.post("/v1/predictions", json=body)
    assert response.status_code == status, response.text
    problems = response.json()["detail"]
    assert any(p["loc"] == loc and message in p["msg"] for p in problems), problems
    assert len(api.store.predictions_for_vin(SUSPECT_VIN, limit=1000)) == before  # nothing of it was stored


@pytest.mark.parametrize("content, headers, status, loc, message", [
    (b'{"vin": "LSVSYN00000000003", "date": ', {"content-type": "application/json"}, 422, ["body"],
     "body is not valid JSON"),
    (b'{"vin": "LSVSYN00000000003", "date": "2026-03-01", "features": [NaN]}', {}, 422, ["body"],
     "NaN is not JSON (use null for a missing value)"),
    (b"", {}, 422, ["body"], "body is empty"),
    (b"[" * 100_000 + b"]" * 100_000, {}, 422, ["body"], "nested too deeply"),
    (b"\xff\xfe", {}, 422, ["body"], "body is not UTF-8"),
    (b"vin=x", {"content-type": "application/x-www-form-urlencoded"}, 415, ["header", "Content-Type"],
     "is not JSON"),
    (b"[" + b" " * (1024 * 1024) + b"]", {}, 413, ["body"], "over the 1 MB limit"),
    (b'{"vin": "LSVSYN00000000003", "date": "2026-03-01"}', {"x-request-id": "bad id!"}, 422,
     ["header", "X-Request-ID"], "request id 'bad id!' must be"),
])
def test_bad_bodies_and_headers_are_4xx_naming_the_problem(api, content, headers, status, loc, message) -> None:
    response = api.client.post("/v1/predictions", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert any(p["loc"] == loc and message in p["msg"] for p in response.json()["detail"]), response.json()


def test_a_chunked_body_over_the_limit_is_cut_off(api) -> None:
    def chunks():
        yield b"["
        for _ in range(40):
            yield b" " * 32768

    response = api.client.post("/v1/predictions", content=chunks())
    assert response.status_code == 413 and "over the 1 MB limit" in response.text


def test_the_same_request_id_returns_the_stored_prediction_without_a_new_row(api) -> None:
    vin = vins(api.onsets, faulty=False)[3]
    body = {"vin": vin, "date": "2026-03-05"}
    first = api.client.post("/v1/predictions", json=body, headers={"X-Request-ID": "retry-0001"})
    again = api.client.post("/v1/predictions", json=body, headers={"X-Request-ID": "retry-0001"})
    assert first.status_code == again.status_code == 200
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    assert {k: v for k, v in again.json().items() if k != "replayed"} == {
        k: v for k, v in first.json().items() if k != "replayed"}
    assert again.headers["x-request-id"] == "retry-0001"
    stored = [r for r in api.store.predictions_for_vin(vin) if r["request_id"] == "retry-0001"]
    assert len(stored) == 1

    # the id in the body works the same; other features under a used id still get the first answer
    values = reference_values(api.lake, vin, AS_OF)
    reference = {"vin": vin, "date": "2026-03-01", "features": as_text(values), "request_id": "client-42"}
    one = api.client.post("/v1/predictions", json=reference).json()
    two = api.client.post("/v1/predictions", json={**reference, "features": as_text(values + 1.0)}).json()
    assert (one["request_id"], two["replayed"], two["probability"]) == ("client-42", True, one["probability"])
    assert len([r for r in api.store.predictions_for_vin(vin) if r["request_id"] == "client-42"]) == 1


def test_without_a_request_id_every_call_is_a_new_prediction(api) -> None:
    vin = vins(api.onsets, faulty=False)[4]
    ids = {api.client.post("/v1/predictions", json={"vin": vin, "date": "2026-03-06"}).json()["request_id"]
           for _ in range(2)}
    assert len(ids) == 2 and len(api.store.predictions_for_vin(vin)) == 2


# ---------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("headers, message", [
    ({}, "missing bearer token"),
    ({"Authorization": "Bearer wrong-token-0123456789"}, "not this API's token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing bearer token"),
    ({"Authorization": "Bearer tökén".encode("latin-1")}, "not this API's token"),
])
@pytest.mark.parametrize("method, path", [("POST", "/v1/predictions"), ("GET", "/v1/model"), ("GET", "/v1/alarms"),
                                          ("GET", f"/v1/vehicles/{SUSPECT_VIN}/predictions")])
def test_every_route_but_health_needs_the_bearer_token(api, headers, message, method, path) -> None:
    response = httpx.request(method, api.url + path, headers=headers, json={"vin": SUSPECT_VIN, "date": "2026-03-01"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"][0]["loc"] == ["header", "Authorization"]
    assert message in response.json()["detail"][0]["msg"]


def test_health_and_docs_need_no_token(api) -> None:
    health = httpx.get(f"{api.url}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models": {fs: m.version for fs, m in api.models.items()}}
    docs = httpx.get(f"{api.url}/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    spec = httpx.get(f"{api.url}/openapi.json").json()
    assert {"/v1/predictions", "/v1/vehicles/{vin}/predictions", "/v1/alarms", "/v1/model", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/predictions"]["post"]["requestBody"]["content"]["application/json"]
    one, many = body["schema"]["oneOf"]
    assert set(one["properties"]) == {"vin", "date", "features", "request_id"} and many["maxItems"] == MAX_ITEMS
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_an_unknown_route_is_a_404_in_the_same_shape(api) -> None:
    response = api.client.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["detail"][0]["loc"] == ["path"]


# ---------------------------------------------------------------------------------------------- read routes


def test_a_vehicles_predictions_are_read_back_as_stored(api) -> None:
    vin = vins(api.onsets, faulty=True)[1]
    made = [api.client.post("/v1/predictions", json={"vin": vin, "date": day}).json()
            for day in ("2026-03-03", "2026-03-04")]
    response = api.client.get(f"/v1/vehicles/{vin}/predictions")
    assert response.status_code == 200
    history = response.json()
    assert history["vin"] == vin
    assert history["predictions"] == [{k: v for k, v in a.items() if k != "replayed"} for a in reversed(made)]
    assert len(api.client.get(f"/v1/vehicles/{vin}/predictions", params={"limit": 1}).json()["predictions"]) == 1
    assert api.client.get(f"/v1/vehicles/{UNKNOWN_VIN}/predictions").json() == {"vin": UNKNOWN_VIN, "predictions": []}

    bad = api.client.get("/v1/vehicles/not-a-vin/predictions")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "vin"]
    bad = api.client.get(f"/v1/vehicles/{vin}/predictions", params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]


def test_alarms_in_a_date_range(api) -> None:
    faulty, healthy = vins(api.onsets, faulty=True)[2], vins(api.onsets, faulty=False)[5]
    late = FIRST_DAY + timedelta(days=api.onsets[faulty] + 20)
    alarm = api.client.post("/v1/predictions", json={"vin": faulty, "date": late.isoformat()}).json()
    quiet = api.client.post("/v1/predictions", json={"vin": healthy, "date": "2026-01-20"}).json()
    assert alarm["alarm"]
    api.store.record_alert(vin=faulty, feature_set="full", first_as_of=late, model_version=alarm["model_version"],
                           probability=alarm["probability"], threshold=alarm["threshold"], suspect_cell=3)

    response = api.client.get("/v1/alarms", params={"from": late.isoformat(), "to": late.isoformat()})
    assert response.status_code == 200, response.text
    found = response.json()
    assert (found["from"], found["to"]) == (late.isoformat(), late.isoformat())
    assert alarm["request_id"] in {a["request_id"] for a in found["alarms"]}
    assert all(a["alarm"] and a["date"] == late.isoformat() for a in found["alarms"])
    assert found["vehicles"] == len({a["vin"] for a in found["alarms"]})
    assert [(a["vin"], a["first_as_of"], a["suspect_cell"]) for a in found["alerts"]] == [
        (faulty, late.isoformat(), 3)]
    quiet_days = api.client.get("/v1/alarms", params={"from": "2026-01-20", "to": "2026-01-20"}).json()
    assert (quiet["request_id"] in {a["request_id"] for a in quiet_days["alarms"]}) == quiet["alarm"]

    for params, loc, message in (({"from": "2026-02-30"}, ["query", "from"], "not a calendar date"),
                                 ({"to": "yesterday"}, ["query", "to"], "not a date of the form YYYY-MM-DD"),
                                 ({"from": "2026-03-02", "to": "2026-03-01"}, ["query", "from"], "is after to"),
                                 ({"from": "2024-01-01", "to": "2026-03-01"}, ["query", "from"], "spans more than")):
        bad = api.client.get("/v1/alarms", params=params)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == loc and message in bad.text
    today = datetime.now(UTC).date()
    default = api.client.get("/v1/alarms").json()
    assert (default["from"], default["to"]) == ((today - timedelta(days=13)).isoformat(), today.isoformat())


def test_the_model_route_describes_each_champion(api) -> None:
    response = api.client.get("/v1/model")
    assert response.status_code == 200
    described = {m["feature_set"]: m for m in response.json()["models"]}
    assert set(described) == {"signals6", "full"}
    for feature_set, model in api.models.items():
        info, card = described[feature_set], model.card
        assert (info["serving"], info["version"], info["threshold"]) == (True, model.version, card["threshold"])
        assert info["metrics"]["average_precision"] == card["metrics"]["average_precision"]
        assert info["metrics"]["roc_auc"] == card["metrics"]["roc_auc"]
        assert info["reference_metrics"] is None  # trained without the reference recipe here
        assert info["training_data"]["first_as_of"] == card["training_data"]["first_as_of"]
        assert info["report_url"] == api.lake.url(f"models/bms/{model.version}/report/index.html")
        assert Path(api.lake.path(f"models/bms/{model.version}/report/index.html")).is_file()
    assert described["signals6"]["feature_count"] == 84 and described["full"]["feature_count"] == 364


# ---------------------------------------------------------------------------------------------- lifecycle


def api_rows(lake: Lake, request_ids: set[str]) -> pa.Table:
    table = read_predictions(lake)
    return table.filter(pc.is_in(table["request_id"], pa.array(sorted(request_ids), pa.string())))


def test_start_up_writes_unflushed_rows_and_shutdown_flushes_the_buffer(trained, tmp_path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    # what a process that stopped before flushing left behind: recorded in the store, not in the lake
    orphan = {"vin": SUSPECT_VIN, "as_of": AS_OF, "model_version": trained.models["full"].version, "feature_set": "full",
              "probability": 0.25, "alarm": False, "threshold": 0.5, "suspect_cell": None, "reasons": [],
              "source": "api", "request_id": "orphan-1", "created_at": datetime(2026, 3, 1, tzinfo=UTC)}
    store.record_predictions([orphan])
    app = create_app(settings_for(tmp_path), trained.lake, store)
    with live_server(app) as url:
        assert api_rows(trained.lake, {"orphan-1"}).num_rows == 1  # recover() ran before the first request
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            made = client.post("/v1/predictions", json=[{"vin": SUSPECT_VIN, "date": "2026-03-10"},
                                                        {"vin": SUSPECT_VIN, "date": "2026-03-11"}],
                               headers={"X-Request-ID": "shutdown-1"})
            assert made.status_code == 200
        assert api_rows(trained.lake, {"shutdown-1"}).num_rows == 0  # buffered: 2 rows < 500, well under 600 s
    lake_rows = api_rows(trained.lake, {"shutdown-1"})  # the server stopped: its lifespan closed the buffer
    assert sorted(lake_rows["as_of"].to_pylist()) == [date(2026, 3, 10), date(2026, 3, 11)]
    assert lake_rows["probability"].to_pylist() == [a["probability"] for a in
                                                    sorted(made.json(), key=lambda a: a["date"])]
    assert store.unflushed().num_rows == 0
    store.close()


def test_the_buffer_flushes_by_size_while_serving(trained, tmp_path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    with (live_server(create_app(settings_for(tmp_path, prediction_flush_rows=2), trained.lake, store)) as url,
          httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client):
        client.post("/v1/predictions", json=[{"vin": SUSPECT_VIN, "date": "2026-03-12"},
                                             {"vin": SUSPECT_VIN, "date": "2026-03-13"}],
                    headers={"X-Request-ID": "by-size-1"})
        assert api_rows(trained.lake, {"by-size-1"}).num_rows == 2
    store.close()


def test_without_a_champion_health_and_scoring_are_503(tmp_path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    with live_server(create_app(settings_for(tmp_path), lake, store)) as url:
        health = httpx.get(f"{url}/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "no model loaded", "models": {"signals6": None, "full": None}}
        response = httpx.post(f"{url}/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"vin": SUSPECT_VIN, "date": "2026-03-01", "features": ",".join(["1"] * 84)})
        assert response.status_code == 503
        assert response.json()["detail"][0]["loc"] == ["model", "signals6"]
        assert "no champion for signals6" in response.json()["detail"][0]["msg"]
        described = httpx.get(f"{url}/v1/model", headers={"Authorization": f"Bearer {TOKEN}"}).json()["models"]
        assert [(m["feature_set"], m["serving"]) for m in described] == [("signals6", False), ("full", False)]
    store.close()


# ---------------------------------------------------------------------------------------------- command and token


def test_a_missing_token_is_generated_into_a_private_file(tmp_path) -> None:
    settings = replace(load_settings(), home=tmp_path, api_token=None)
    with pytest.raises(ValueError, match="needs a bearer token"):
        create_app(settings)
    with_generated, path = with_token(settings)
    assert path == tmp_path / "api-token"
    assert path.read_text().strip() == with_generated.api_token.reveal() and len(path.read_text().strip()) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(with_generated.api_token) == "***" and with_generated.api_token.reveal() not in repr(with_generated)
    configured = replace(settings, api_token=Secret(TOKEN))
    assert with_token(configured) == (configured, None)


def test_api_settings_defaults_and_errors(monkeypatch) -> None:
    for name in ("CELLGUARD_API_TOKEN", "CELLGUARD_API_PORT", "CELLGUARD_API_MAX_ITEMS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.api_token, settings.api_port, settings.api_max_items) == (None, 8000, 500)
    monkeypatch.setenv("CELLGUARD_API_TOKEN", TOKEN)
    assert load_settings().api_token.reveal() == TOKEN and TOKEN not in json.dumps(
        {k: str(v) for k, v in load_settings().__dict__.items()})  # what `cellguard config` prints
    for name, value, message in (("CELLGUARD_API_TOKEN", "short", "at least 16 characters"),
                                 ("CELLGUARD_API_PORT", "80x", "a port number between 1 and 65535"),
                                 ("CELLGUARD_API_MAX_ITEMS", "0", "a whole number of request items above 0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=f"{name} must be {message}"):
            load_settings()
        monkeypatch.delenv(name)
    args = build_parser().parse_args(["serve-api"])
    assert (args.port, args.host) == (None, "127.0.0.1")


def test_cellguard_serve_api_prints_a_generated_token_and_serves_with_it(tmp_path, isolate_settings, monkeypatch,
                                                                          capsys) -> None:
    """The command's path in process: settings, a generated token printed once, the app handed to uvicorn."""
    isolate_settings(tmp_path)
    servers = []

    class Server:  # stands in for uvicorn.Server: records what it would serve and returns at once
        def __init__(self, config) -> None:
            servers.append(config)

        def run(self) -> None:
            pass

    monkeypatch.setattr(api_module, "uvicorn", SimpleNamespace(Server=Server))
    assert main(["serve-api", "--port", "8123"]) == 0
    token = (tmp_path / "api-token").read_text().strip()
    assert capsys.readouterr().out.splitlines() == [
        f"API token (also in {tmp_path / 'api-token'}, mode 600; set CELLGUARD_API_TOKEN to choose your own):", token]
    (config,) = servers
    assert (config.host, config.port, config.lifespan) == ("127.0.0.1", 8123, "on")
    with live_server(config.app) as url:  # the app it built opens with the printed token, and only with it
        assert httpx.get(f"{url}/v1/model", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{url}/v1/model", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    capsys.readouterr()  # uvicorn's access log
    monkeypatch.setenv("CELLGUARD_API_TOKEN", TOKEN)  # a configured token is neither printed nor written
    (tmp_path / "api-token").unlink()
    assert main(["serve-api"]) == 0
    assert capsys.readouterr().out == "" and not (tmp_path / "api-token").exists()
    assert servers[-1].port == 8000


def test_serve_api_in_two_worker_processes_answers_and_loses_nothing(trained, tmp_path) -> None:
    """`cellguard serve-api` with CELLGUARD_API_WORKERS=2, a real process tree: both workers serve one port, every
    answer is recorded once, and stopping it (SIGINT, as make down does) flushes both workers' buffers."""
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys

    from pipelines.serving.tour import wait_for

    lake_dir = tmp_path / "lake"
    shutil.copytree(trained.lake.root, lake_dir)
    with socket.socket() as probe:  # a free port for the server to bind (it cannot be handed a bound socket)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CELLGUARD_HOME": str(tmp_path), "CELLGUARD_LAKE_URI": lake_dir.as_uri(),
           "CELLGUARD_API_TOKEN": TOKEN, "CELLGUARD_API_WORKERS": "2", "CELLGUARD_PREDICTION_FLUSH_SECONDS": "600",
           "CELLGUARD_EVENT_STORE_URL": f"sqlite:///{tmp_path / 'events.sqlite'}"}
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve-api", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for([f"{url}/healthz"], seconds=120)
        healthy = vins(trained.onsets, faulty=False)
        bodies = [{"vin": vin, "date": "2026-03-01", "features": as_text(reference_values(trained.lake, vin, AS_OF))}
                  for vin in healthy] + [{"vin": vin, "date": "2026-03-02"} for vin in healthy]

        def post(n: int) -> httpx.Response:
            return httpx.post(f"{url}/v1/predictions", json=bodies[n % len(bodies)], timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": f"w-{n}"})

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, range(48)))
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=120)[0]
    assert output.count("Started server process") == 2 and output.count("Application shutdown complete") == 2, output
    assert [r.status_code for r in responses] == [200] * 48, output
    assert server.returncode == 0, output
    stored = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    rows = stored.predictions_between(AS_OF, date(2026, 3, 2))
    stored.close()
    assert sorted(r["request_id"] for r in rows) == sorted(f"w-{n}" for n in range(48))
    in_lake = read_predictions(Lake(lake_dir.as_uri()), AS_OF, date(2026, 3, 2))["request_id"].to_pylist()
    assert sorted(r for r in in_lake if r.startswith("w-")) == sorted(f"w-{n}" for n in range(48))  # not other tests'

