"""The dashboard's routes: the page at /, the login form, static files and the JSON views under /dashboard/api."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from pipelines.config import Settings
from pipelines.serving.api_auth import SessionCookies, bearer_or_session_guard, has_access
from pipelines.serving.api_schemas import ApiError, check_vin, parse_day, problem
from pipelines.serving.dashboard.data import DashboardData
from pipelines.serving.dashboard.login import login_redirect, login_router
from pipelines.serving.dashboard.pages import Pages
from pipelines.serving.dashboard.queries import Show, SortKey
from pipelines.storage.event_store import PredictionEventStore
from pipelines.storage.lake import Lake

MAX_TIMELINE_DAYS = 366
MAX_VEHICLE_DAYS = 120  # a vehicle's trend and heatmap: ~100 cells × 120 days is still a light page
FeatureSet = Annotated[str, Query(max_length=40, pattern=r"^[a-z0-9-]+$")]
VehicleDays = Annotated[int, Query(ge=7, le=MAX_VEHICLE_DAYS)]
REPORT_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def json_response(payload: object) -> Response:
    """JSON with dates as ISO strings and NaN as null (JSON has no NaN); never cached (it holds fleet data)."""
    return Response(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json", headers={"Cache-Control": "no-store"})


def dashboard_router(settings: Settings, lake: Lake, store: Callable[[], PredictionEventStore]) -> APIRouter:
    """The fleet dashboard for `create_app`: `store` returns the event store the app's lifespan opened."""
    if settings.api_token is None:
        raise ValueError("the dashboard needs the API token: set CELLGUARD_API_TOKEN, or start `cellguard serve-api`")
    token, sessions, pages = settings.api_token, SessionCookies(settings.api_token), Pages()
    data = DashboardData(lake, store)
    router = APIRouter(include_in_schema=False)
    router.include_router(login_router(token, sessions, pages))

    @router.get("/")
    def dashboard(request: Request) -> Response:
        if not has_access(request, token, sessions):
            return login_redirect("/")
        return pages.render("index.html")

    @router.get("/dashboard/static/{name}")
    def static_file(request: Request, name: str) -> Response:
        asset = pages.asset(name)
        if asset is None:
            raise ApiError(404, [problem(["path", "name"], f"no dashboard file {name[:60]!r}", "not_found")])
        return asset.response(request)

    api = APIRouter(prefix="/dashboard/api", include_in_schema=False,
                    dependencies=[Depends(bearer_or_session_guard(token, sessions))])

    @api.get("/fleet")
    def fleet(feature_set: FeatureSet = "full", as_of: Annotated[str | None, Query(max_length=10)] = None,
              sort: SortKey = "probability", order: Literal["asc", "desc"] = "desc",
              q: Annotated[str, Query(max_length=17)] = "", show: Show = "all",
              page: Annotated[int, Query(ge=1)] = 1, page_size: Annotated[int, Query(ge=5, le=200)] = 50) -> Response:
        day = _day(as_of, "as_of") if as_of else None
        return json_response(data.fleet(feature_set, day, sort, order == "desc", q, show, page, page_size))

    @api.get("/timeline")
    def timeline(feature_set: FeatureSet = "full",
                 days: Annotated[int, Query(ge=7, le=MAX_TIMELINE_DAYS)] = 90) -> Response:
        return json_response(data.timeline(feature_set, days))

    @api.get("/vehicles/{vin}")
    def vehicle(vin: str, feature_set: FeatureSet = "full", days: VehicleDays = 60) -> Response:
        return json_response(data.vehicle(_vin(vin), feature_set, days))

    @api.get("/vehicles/{vin}/cells")
    def cells(vin: str, feature_set: FeatureSet = "full", days: VehicleDays = 60,
              measure: Literal["all", "rest", "load"] = "all") -> Response:
        return json_response(data.cells(_vin(vin), feature_set, days, measure))

    @api.get("/model")
    def model() -> Response:
        return json_response(data.models())

    @api.get("/models/{version}/report/{name}")
    def report_file(version: str, name: str) -> Response:
        body, media_type = data.report_file(version, name)
        return Response(body, media_type=media_type, headers={"Content-Security-Policy": REPORT_POLICY,
                                                              "X-Content-Type-Options": "nosniff",
                                                              "Cache-Control": "private, max-age=3600"})

    router.include_router(api)
    return router


def _vin(value: str) -> str:
    try:
        return check_vin(value.upper())
    except ValueError as error:
        raise ApiError(422, [problem(["path", "vin"], str(error), "value_error")]) from None


def _day(value: str, name: str) -> date:
    try:
        return parse_day(value, name)
    except ValueError as error:
        raise ApiError(422, [problem(["query", name], str(error), "value_error")]) from None
