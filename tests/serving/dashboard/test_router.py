"""pipelines/serving/dashboard/router.py: the dashboard inside the real prediction API on loopback (uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib import resources
from types import SimpleNamespace

import httpx
import pytest

from pipelines.config import Secret, load_settings
from pipelines.serving.api import create_app
from pipelines.serving.api_auth import SESSION_COOKIE
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake

from ..live_server import live_server
from .builders import (
    BASELINE,
    DRIFTING,
    FULL_VERSION,
    HEALTHY,
    METRICS,
    PNG,
    QUIET,
    SIGNALS6_VERSION,
    SUSPECT,
    register_champion,
    write_daily,
    write_predictions,
)

TOKEN = "dashboard-token-0123456789abcdef"
DATA_ROUTES = ["/dashboard/api/fleet", "/dashboard/api/timeline", f"/dashboard/api/vehicles/{DRIFTING}",
               f"/dashboard/api/vehicles/{DRIFTING}/cells", "/dashboard/api/model"]
REPORT = {"roc.png": PNG, "pr.png": PNG, "index.html": b"<html><body><img src='roc.png'></body></html>"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, archives) -> SimpleNamespace:
    """The API with the dashboard over the hand-made lake (builders.py) and a `full` champion with curves."""
    tmp = tmp_path_factory.mktemp("dashboard")
    lake = Lake((tmp / "lake").as_uri())
    store = EventStore(f"sqlite:///{tmp / 'events.sqlite'}")
    write_daily(lake)
    write_predictions(lake, store)
    champion = register_champion(lake, archives["full"], "full", METRICS, BASELINE, REPORT)
    settings = replace(load_settings(), home=tmp, api_token=Secret(TOKEN), prediction_flush_seconds=600.0)
    with live_server(create_app(settings, lake, store)) as url:
        yield SimpleNamespace(url=url, lake=lake, store=store, champion=champion)
    store.close()


def client(served, **options) -> httpx.Client:
    return httpx.Client(base_url=served.url, timeout=30, follow_redirects=False, **options)


@contextmanager
def signed_in(served) -> Iterator[httpx.Client]:
    """A client holding a session cookie from the login form."""
    with client(served) as browser:
        response = browser.post("/login", data={"token": TOKEN, "next": "/"})
        assert response.status_code == 303, response.text
        yield browser


@pytest.fixture(scope="module")
def bearer(served):
    with client(served, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


# ---------------------------------------------------------------------------------------------- sign-in


def test_a_browser_without_a_session_is_sent_to_the_login_form(served) -> None:
    with client(served) as browser:
        response = browser.get("/")
        assert (response.status_code, response.headers["location"]) == (303, "/login?next=/")
        form = browser.get("/login?next=/")
    assert form.status_code == 200 and '<form class="login card" method="post" action="/login">' in form.text
    assert 'name="token" type="password"' in form.text and 'value="/"' in form.text
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
    assert form.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", DATA_ROUTES)
def test_the_data_routes_answer_401_json_without_credentials(served, path) -> None:
    with client(served) as anonymous:
        response = anonymous.get(path)
        stale = anonymous.get(path, cookies={SESSION_COOKIE: "v1.9999999999.abc.0123"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"][0]["loc"] == ["header", "Authorization"]
    assert "or sign in to the dashboard at /login" in response.json()["detail"][0]["msg"]
    assert stale.status_code == 401
    assert stale.json()["detail"] == [{"loc": ["cookie", SESSION_COOKIE], "type": "unauthorized",
                                       "msg": "the dashboard session has expired or was ended: sign in again at /login"}]


def test_the_token_buys_an_http_only_strict_cookie_that_opens_the_dashboard(served) -> None:
    with client(served) as browser:
        response = browser.post("/login", data={"token": TOKEN, "next": f"/#/vehicles/{DRIFTING}"})
        assert (response.status_code, response.headers["location"]) == (303, f"/#/vehicles/{DRIFTING}")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=v1.") and TOKEN not in cookie
        assert {"HttpOnly", "SameSite=strict", "Path=/", "Max-Age=43200"} <= {p.strip() for p in cookie.split(";")}
        assert "Secure" not in cookie  # plain http on loopback; https gets Secure
        page = browser.get("/")
        assert page.status_code == 200 and '<table id="fleet-table" class="fleet">' in page.text
        assert "/dashboard/static/plotly.min.js?v=" in page.text and "cdn" not in page.text.lower()
        assert browser.get("/login").headers["location"] == "/"  # already signed in
        assert all(browser.get(path).status_code == 200 for path in DATA_ROUTES)


@pytest.mark.parametrize("form, status, message", [
    ({"token": "not-the-token-0123456789"}, 401, "That is not this API&#39;s token"),
    ({"token": ""}, 400, "Enter the API token."),
    ({"next": "/"}, 400, "Enter the API token."),
])
def test_a_wrong_or_missing_token_gets_the_form_again(served, form, status, message) -> None:
    with client(served) as browser:
        response = browser.post("/login", data=form)
    assert response.status_code == status and message in response.text
    assert "set-cookie" not in response.headers


def test_a_login_that_is_not_a_small_form_is_refused(served) -> None:
    with client(served) as browser:
        as_json = browser.post("/login", json={"token": TOKEN})
        too_big = browser.post("/login", data={"token": TOKEN, "padding": "x" * 5000})
    assert as_json.status_code == 415 and "application/x-www-form-urlencoded" in as_json.text
    assert too_big.status_code == 413 and "over 4,096 bytes" in too_big.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"])
def test_a_login_never_sends_the_browser_off_this_server(served, target) -> None:
    with client(served) as browser:
        response = browser.post("/login", data={"token": TOKEN, "next": target})
    assert (response.status_code, response.headers["location"]) == (303, "/")


def test_logging_out_ends_the_session(served) -> None:
    with signed_in(served) as browser:
        cookie = browser.cookies[SESSION_COOKIE]
        response = browser.post("/logout")
        assert (response.status_code, response.headers["location"]) == (303, "/login")
        assert 'Max-Age=0' in response.headers["set-cookie"]
    with client(served) as other:  # the old cookie, replayed, no longer opens anything
        assert other.get("/dashboard/api/fleet", cookies={SESSION_COOKIE: cookie}).status_code == 401
        assert other.get("/", cookies={SESSION_COOKIE: cookie}).status_code == 303


def test_the_bearer_token_works_and_a_wrong_one_is_refused_even_beside_a_session(served) -> None:
    with signed_in(served) as browser:
        wrong = browser.get("/dashboard/api/fleet", headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert wrong.status_code == 401 and wrong.json()["detail"][0]["msg"] == "the bearer token is not this API's token"
        assert browser.get("/v1/model").status_code == 401  # /v1 takes the bearer token only
    with client(served, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        assert api.get("/dashboard/api/fleet").status_code == 200 and api.get("/").status_code == 200
        assert api.get("/v1/model").status_code == 200


def test_health_and_the_openapi_document_are_as_before(served) -> None:
    with client(served) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        paths = set(anonymous.get("/openapi.json").json()["paths"])
    assert paths == {"/v1/predictions", "/v1/vehicles/{vin}/predictions", "/v1/alarms", "/v1/model", "/healthz"}


# ---------------------------------------------------------------------------------------------- data


def test_the_fleet_is_the_newest_scoring_with_change_context_and_alerts(bearer) -> None:
    fleet = bearer.get("/dashboard/api/fleet").json()
    assert (fleet["as_of"], fleet["previous_as_of"], fleet["model_version"], fleet["threshold"]) == (
        "2026-03-21", "2026-03-20", FULL_VERSION, 0.5)
    assert (fleet["feature_sets"], fleet["as_of_dates"]) == (["full", "signals6"], ["2026-03-21", "2026-03-20"])
    assert fleet["summary"] == {"vehicles": 3, "predicted_alarms": 2, "bms_alarmed_vehicles": 1,
                                "alerts_started_14d": 2, "mean_probability": 0.5667}
    assert [(r["vin"], r["probability"], r["change"], r["alarm"], r["alert_since"]) for r in fleet["rows"]] == [
        (DRIFTING, 0.9, 0.2, True, "2026-03-20"), (QUIET, 0.6, 0.2, True, "2026-03-21"),
        (HEALTHY, 0.2, -0.05, False, None)]
    drifting = fleet["rows"][0]
    assert (drifting["bms_alarm_days"], drifting["last_day"], drifting["range_max_mv"], drifting["range_p95_mv"]) == (
        6, "2026-03-20", 290.0, 232.0)  # alarm 03-15 … 03-20 among the context days 03-07 … 03-20
    assert drifting["reason"] == {"feature": "cell_range_max_mv_lag1", "value": 290.0, "contribution": 1.25}
    assert (fleet["rows"][1]["last_day"], fleet["rows"][1]["range_max_mv"]) == ("2026-03-10", 40.0)


def test_the_fleet_is_sorted_filtered_and_paged_by_the_server(bearer) -> None:
    by_vin = bearer.get("/dashboard/api/fleet", params={"sort": "vin", "order": "asc", "page_size": 5}).json()
    assert [r["vin"] for r in by_vin["rows"]] == [DRIFTING, HEALTHY, QUIET]
    found = bearer.get("/dashboard/api/fleet", params={"q": "0002", "show": "all"}).json()
    assert [r["vin"] for r in found["rows"]] == [HEALTHY] and found["summary"]["vehicles"] == 3
    predicted = bearer.get("/dashboard/api/fleet", params={"show": "predicted", "sort": "range_max_mv"}).json()
    assert [r["vin"] for r in predicted["rows"]] == [DRIFTING, QUIET] and predicted["matching"] == 2
    earlier = bearer.get("/dashboard/api/fleet", params={"as_of": "2026-03-20"}).json()
    assert (earlier["previous_as_of"], [r["change"] for r in earlier["rows"]]) == (None, [None, None, None])
    signals6 = bearer.get("/dashboard/api/fleet", params={"feature_set": "signals6"}).json()
    assert [(r["vin"], r["model_version"]) for r in signals6["rows"]] == [(DRIFTING, SIGNALS6_VERSION)]


@pytest.mark.parametrize("params, status, loc, message", [
    ({"as_of": "2026-13-01"}, 422, ["query", "as_of"], "is not a calendar date"),
    ({"as_of": "2026-03-19"}, 404, ["query", "as_of"], "no batch predictions of the full champion for as_of 2026-03-19"),
    ({"sort": "risk"}, 422, ["query", "sort"], "Input should be"),
    ({"page_size": 100000}, 422, ["query", "page_size"], "less than or equal to 200"),
    ({"feature_set": "FULL; drop"}, 422, ["query", "feature_set"], "should match pattern"),
])
def test_bad_fleet_questions_name_the_parameter(bearer, params, status, loc, message) -> None:
    response = bearer.get("/dashboard/api/fleet", params=params)
    assert response.status_code == status
    assert response.json()["detail"][0]["loc"] == loc and message in response.json()["detail"][0]["msg"]


def test_the_timeline_starts_with_the_data_and_counts_each_day(bearer) -> None:
    timeline = bearer.get("/dashboard/api/timeline", params={"days": 90}).json()
    assert (timeline["dates"][0], timeline["dates"][-1], len(timeline["dates"])) == ("2026-03-01", "2026-03-21", 21)
    assert timeline["vehicles_reporting"][:11] == [3] * 10 + [2] and timeline["vehicles_reporting"][-1] is None
    assert timeline["bms_alarmed"][13:20] == [0, 1, 1, 1, 1, 1, 1]
    assert (timeline["scored"][-2:], timeline["predicted_alarms"][-2:], timeline["alerts_started"][-2:]) == (
        [3, 3], [1, 2], [1, 1])
    assert timeline["predicted_alarms"][:19] == [None] * 19
    short = bearer.get("/dashboard/api/timeline", params={"days": 7}).json()
    assert short["dates"][0] == "2026-03-15" and len(short["dates"]) == 7


def test_a_vehicle_has_its_newest_prediction_history_and_range_trend(bearer) -> None:
    vehicle = bearer.get(f"/dashboard/api/vehicles/{DRIFTING.lower()}", params={"days": 30}).json()
    latest = vehicle["latest"]
    assert (latest["as_of"], latest["feature_set"], latest["source"], latest["probability"], latest["suspect_cell"]) == (
        "2026-03-21", "full", "batch", 0.9, SUSPECT[DRIFTING])
    assert [r["feature"] for r in latest["reasons"]] == ["cell_range_max_mv_lag1", "suspect_cell_z_7d_lag1"]
    assert [(s["feature_set"], s["source"], s["as_of"], s["probability"]) for s in vehicle["history"]] == [
        ("full", "batch", ["2026-03-20", "2026-03-21"], [0.7, 0.9]), ("signals6", "api", ["2026-03-21"], [0.35]),
        ("signals6", "batch", ["2026-03-21"], [0.3])]
    trend = vehicle["trend"]
    assert (trend["dates"][0], trend["dates"][-1], len(trend["dates"])) == ("2026-02-19", "2026-03-20", 30)
    assert trend["range_max_mv"][:10] == [None] * 10 and trend["range_max_mv"][-1] == 290.0
    assert trend["bms_alarm"][-6:] == [True] * 6 and trend["bms_alarm"][-7] is False
    assert vehicle["alarm_threshold"]["set_mv"] == 300.0


@pytest.mark.parametrize("path, status, message", [
    ("/dashboard/api/vehicles/LSVDSH00000000009", 404,
     "no predictions and no daily rows for LSVDSH00000000009 in 2026-01-20 … 2026-03-20"),
    ("/dashboard/api/vehicles/LSVDSH00000000009/cells", 404, "no cell rows for LSVDSH00000000009 in 2026-01-20"),
    ("/dashboard/api/vehicles/LSVDSH0000000000I", 422, "is not 17 characters of A–Z (no I, O, Q) and 0–9"),
    ("/dashboard/api/vehicles/LSVDSH0000000000I/cells", 422, "is not 17 characters of A–Z (no I, O, Q) and 0–9"),
])
def test_an_unknown_or_malformed_vehicle_is_named(bearer, path, status, message) -> None:
    response = bearer.get(path)
    assert response.status_code == status
    assert response.json()["detail"][0]["loc"] == ["path", "vin"] and message in response.json()["detail"][0]["msg"]


def test_the_heatmap_is_the_vehicles_cells_by_day_with_its_suspect(bearer) -> None:
    cells = bearer.get(f"/dashboard/api/vehicles/{DRIFTING}/cells", params={"days": 7, "measure": "rest"}).json()
    assert (cells["dates"][0], cells["dates"][-1], cells["cells"]) == ("2026-03-14", "2026-03-20", list(range(1, 9)))
    assert cells["deviation_mv"][SUSPECT[DRIFTING] - 1] == [-13.0, -14.0, -15.0, -16.0, -17.0, -18.0, -19.0]
    assert cells["deviation_mv"][0] == [-0.9] * 7  # at rest: 0.5 × (1 − 4.5) × 0.5 mV, to 0.1 mV
    assert (cells["suspect_cell"], cells["measure"], cells["color_span_mv"]) == (SUSPECT[DRIFTING], "rest", 20.0)
    assert cells["daily_suspects"] == {"dates": [], "cells": []}
    quiet = bearer.get(f"/dashboard/api/vehicles/{QUIET}/cells", params={"days": 14}).json()
    assert quiet["dates"][0] == "2026-03-07" and quiet["deviation_mv"][0][:4] == [-1.8] * 4
    assert quiet["deviation_mv"][0][4:] == [None] * 10  # no rows after 03-10


def test_the_model_card_has_metrics_beside_the_reference_curves_and_figures(served, bearer) -> None:
    (model,) = bearer.get("/dashboard/api/model").json()["models"]
    assert (model["feature_set"], model["version"], model["threshold"]) == ("full", served.champion, 0.5)
    metrics = {m["key"]: (m["ours"], m["reference"]) for m in model["metrics"]}
    assert metrics["average_precision"] == (0.653, 0.551) and metrics["faulty_caught"] == (12, 9)
    assert metrics["false_alarms_per_1000_vehicle_days"] == (190.0, 184.0)
    assert model["curves"]["roc"] == {"x": [0.0, 0.1, 0.4, 1.0], "y": [0.0, 0.6, 0.9, 1.0]}
    assert model["curves"]["pr"]["y"] == [0.3, 0.55, 0.8, 1.0] and model["reference_curves"] is None
    base = f"/dashboard/api/models/{served.champion}/report/"
    assert model["figures"] == {"roc": f"{base}roc.png", "pr": f"{base}pr.png"} and model["report_url"] == f"{base}index.html"
    figure = bearer.get(model["figures"]["roc"])
    assert (figure.status_code, figure.headers["content-type"], figure.content) == (200, "image/png", PNG)
    report = bearer.get(model["report_url"])
    assert report.headers["content-security-policy"].startswith("default-src 'none'") and b"roc.png" in report.content


@pytest.mark.parametrize("path, status, loc", [
    ("/dashboard/api/models/not-a-version/report/roc.png", 422, ["path", "version"]),
    ("/dashboard/api/models/20260321t050000z-full-0123abcd/report/card.json", 422, ["path", "name"]),
    ("/dashboard/api/models/20260321t050000z-full-0123abcd/report/roc.png", 404, ["path", "name"]),
])
def test_report_files_are_only_a_versions_report(bearer, path, status, loc) -> None:
    response = bearer.get(path)
    assert response.status_code == status and response.json()["detail"][0]["loc"] == loc


# ---------------------------------------------------------------------------------------------- static files


def test_plotly_comes_from_the_installed_package_gzipped_and_cached(served) -> None:
    bundled = (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    with client(served) as browser:
        response = browser.get("/dashboard/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
        raw = httpx.get(f"{served.url}/dashboard/static/plotly.min.js", headers={"Accept-Encoding": "identity"})
        again = browser.get("/dashboard/static/plotly.min.js", headers={"If-None-Match": response.headers["etag"]})
        mine = browser.get("/dashboard/static/dashboard.js")
        missing = browser.get("/dashboard/static/secrets.env")
    assert response.headers["content-encoding"] == "gzip" and response.headers["cache-control"] == "public, max-age=604800"
    assert response.content == bundled and raw.content == bundled and "content-encoding" not in raw.headers
    assert int(response.headers["content-length"]) < len(bundled) / 2  # sent gzipped
    assert again.status_code == 304 and again.content == b""
    assert mine.headers["content-type"] == "text/javascript; charset=utf-8" and mine.headers["cache-control"] == "public, max-age=0"
    assert missing.status_code == 404 and missing.json()["detail"][0]["loc"] == ["path", "name"]
