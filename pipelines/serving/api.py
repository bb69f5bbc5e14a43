"""`cellguard serve-api`: the prediction API over the champion models, the lake's daily rows and the event store.

Routes (every one but /healthz, /docs, /redoc and /openapi.json needs `Authorization: Bearer <token>`, see
api_auth.py):

    POST /v1/predictions                 score one item or a list of up to CELLGUARD_API_MAX_ITEMS (api_schemas.py):
                                         {"vin", "date", "features": "<84 values>"} (the reference solution's body,
                                         the signals6 champion) or {"vin", "date"} (the lake's daily rows, the full
                                         champion); one object in → one prediction out, a list in → a list out
    GET  /v1/vehicles/{vin}/predictions  the vehicle's latest predictions (API and batch), newest date first
    GET  /v1/alarms?from=&to=            predictions at or above their threshold and alarm episodes that started,
                                         as_of in [from, to] (default: the 14 days up to today, UTC)
    GET  /v1/model                       each feature set's champion: version, threshold, metrics beside the
                                         reference recipe's, training range, report link
    GET  /healthz                        200 with the loaded versions; 503 while no champion is loaded
    GET  /docs, /redoc, /openapi.json    the OpenAPI description (public: it holds no data)
    GET  /, /login, /dashboard/…         the fleet dashboard (pipelines/serving/dashboard/), behind a login that sets
                                         a session cookie; its JSON under /dashboard/api/ also takes the bearer token

Answers: probability, alarm (probability >= the champion's threshold), threshold, suspect cell, the top-3 reasons
(XGBoost feature contributions, reasons.py), model version, request id and created_at. `date` is the as_of date:
the features are the 14 days before it.

Request ids and idempotency: an item's `request_id`, else the `X-Request-ID` header, else a new UUID; the
response's `X-Request-ID` echoes the request's. Items of one list share it, so one list may not hold the same
vehicle, date and feature set twice. A request id the client chose is looked up first: if that vehicle, date and
feature set were answered under it before, the stored prediction comes back (`replayed: true`), nothing is
scored and no row is added, even if the champion changed meanwhile. Sent with other features, the first answer
still stands.

Errors: every 4xx/5xx body is `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`, `loc` naming the field
(`["body", 3, "features"]` for the fourth list item). 401 missing or wrong token; 404 an item without features
whose vehicle has no daily rows in the 14 days before its date (`unknown_vehicle`: the vehicle may exist but
there is nothing to build its features from, so the resource "features of this vehicle at this date" is not
found); 413 a body over 1 MB; 415 a Content-Type other than JSON; 422 anything else wrong in the request
(VIN, date, feature count or values, unknown fields, too many items); 503 no champion for a needed feature set,
or the event store failed. A whole request is refused if any item is bad: nothing of it is scored or stored.

Persistence: each answer is recorded in the event store before it is returned (PredictionBuffer.add) and written to
the lake's `predictions/` zone in buffered Parquet flushes (CELLGUARD_PREDICTION_FLUSH_ROWS / _SECONDS). Start-up
writes what an earlier process recorded but never flushed (`recover`); shutdown flushes the rest (`close`).
Champions are loaded before the server accepts requests and swapped in when their pointer moves
(CELLGUARD_MODEL_POLL_SECONDS), as in the model server.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.config import Settings, load_settings
from pipelines.features.window_signals import FEATURE_SETS, feature_columns
from pipelines.serving.api_answers import Answerer, prediction_view
from pipelines.serving.api_auth import bearer_guard, with_token
from pipelines.serving.api_batching import RequestBatcher
from pipelines.serving.api_schemas import (
    Alarms,
    ApiError,
    ErrorBody,
    Health,
    Models,
    PredictionAnswer,
    PredictionRequest,
    VehiclePredictions,
    check_request_id,
    check_vin,
    parse_day,
    problem,
    read_items,
)
from pipelines.serving.api_scoring import (
    LAKE_FEATURE_SET,
    REFERENCE_FEATURE_SET,
    Item,
    Probabilities,
    in_process,
)
from pipelines.serving.daily_context import DailyContext
from pipelines.serving.dashboard import dashboard_router
from pipelines.serving.model_champions import ChampionModels, ChampionWatcher
from pipelines.serving.model_server import server_config
from pipelines.storage.event_store import PredictionEventStore
from pipelines.storage.event_stores import open_event_store
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import PredictionBuffer
from pipelines.training import registry

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
REQUEST_ID_HEADER = "X-Request-ID"
HISTORY_LIMIT = 1000  # most predictions GET /v1/vehicles/{vin}/predictions returns
ALARM_RANGE_DAYS = 366  # widest from … to of GET /v1/alarms
SERVED_FEATURE_SETS = (REFERENCE_FEATURE_SET, LAKE_FEATURE_SET)
REQUESTS = {REFERENCE_FEATURE_SET: "vin, date and features (the reference solution's 84 values)",
            LAKE_FEATURE_SET: "vin and date: features from the lake's daily rows"}
ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in (
    (401, "missing or wrong bearer token"), (404, "unknown vehicle: no daily rows to build its features from"),
    (413, "body over 1 MB"), (415, "not JSON"), (422, "a field is missing or wrong: `loc` names it"),
    (503, "no champion for a needed feature set, or the event store failed"))}


# Answers are serialised straight from pydantic-core: FastAPI's response_model path costs ~10× more per answer.
_ANSWER, _ANSWERS = TypeAdapter(PredictionAnswer), TypeAdapter(list[PredictionAnswer])


class _Runtime:
    """What the lifespan opens: the event store, the prediction buffer, and what answers through them."""

    store: PredictionEventStore
    buffer: PredictionBuffer
    answerer: Answerer
    batcher: RequestBatcher


def create_app(settings: Settings | None = None, lake: Lake | None = None,
               store: PredictionEventStore | None = None) -> FastAPI:
    """The prediction API; the lake, the event store and the champions come from the settings unless given."""
    settings = settings or load_settings()
    if settings.api_token is None:
        raise ValueError("the prediction API needs a bearer token: set CELLGUARD_API_TOKEN, or start it with "
                         "`cellguard serve-api`, which generates one")
    lake = lake or Lake.from_settings(settings)
    champions = ChampionModels(lake, SERVED_FEATURE_SETS, threads=1)
    context = DailyContext(lake)
    runtime = _Runtime()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events = store or open_event_store(settings)
        buffer = PredictionBuffer(lake, events, settings.prediction_flush_rows, settings.prediction_flush_seconds)
        try:
            recovered = await run_in_threadpool(buffer.recover)
            if recovered:
                log.info("wrote %d predictions an earlier process recorded but never flushed", recovered)
        except Exception:  # the lake being away must not keep the API down: the store holds them, the next start retries
            log.exception("recovering unflushed predictions failed; they stay in the event store")
        await run_in_threadpool(champions.refresh)
        watcher = ChampionWatcher(champions, settings.model_poll_seconds)
        watcher.start()
        runtime.store, runtime.buffer = events, buffer
        runtime.answerer = Answerer(context, champions, events, buffer, _probabilities(settings))
        runtime.batcher = RequestBatcher(runtime.answerer.answer_together)
        # Everything loaded so far (libraries, models, the daily context) lives as long as the process: keep it out
        # of the collector's full passes, which otherwise walk it all and stall every request for tens of ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            watcher.stop()
            await run_in_threadpool(runtime.batcher.close)
            try:
                await run_in_threadpool(buffer.close)
            except Exception:
                log.exception("flushing predictions at shutdown failed; they stay in the event store and the next "
                              "start writes them")
            if store is None:
                events.close()

    app = FastAPI(title="CellGuard prediction API", version="1",
                  summary="Probability of a cell consistency poor alarm (GB/T 32960 bit 10) within 14 days, and "
                          "the drifting cell", description=__doc__, lifespan=lifespan)
    app.state.champions = champions
    for kind in (ApiError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _error_response)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}}, tags=["health"])
    def healthz() -> JSONResponse:
        """200 with the loaded champion of each feature set; 503 while none is loaded. No token needed."""
        models = {fs: (loaded.version if (loaded := champions.get(fs)) else None) for fs in SERVED_FEATURE_SETS}
        serving = any(models.values())
        return JSONResponse({"status": "ok" if serving else "no model loaded", "models": models},
                            status_code=200 if serving else 503)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(bearer_guard(settings.api_token))], responses=ERRORS)

    @v1.post("/predictions", response_model=PredictionAnswer | list[PredictionAnswer], tags=["predictions"],
             openapi_extra=_request_body_schema(settings.api_max_items))
    async def predict(request: Request) -> Response:
        """Score one item or a list: with `features` (the reference request, signals6) or without (the lake's
        daily rows, full). Every prediction is recorded before the answer; a repeated request id returns the
        stored one."""
        _check_content_type(request.headers.get("content-type"))
        body = await _read_body(request)
        items, many = read_items(body, settings.api_max_items)
        request_id, client_named = _request_id(request.headers.get(REQUEST_ID_HEADER))
        checked = _items(items, many, request_id, client_named)
        answers = await runtime.batcher.submit(checked)
        body = _ANSWERS.dump_json(_ANSWERS.validate_python(answers)) if many else \
            _ANSWER.dump_json(_ANSWER.validate_python(answers[0]))
        return Response(body, media_type="application/json", headers={REQUEST_ID_HEADER: request_id})

    @v1.get("/vehicles/{vin}/predictions", response_model=VehiclePredictions, tags=["predictions"])
    def vehicle_predictions(vin: str = Path(description="the vehicle's VIN"),
                            limit: int = Query(100, ge=1, le=HISTORY_LIMIT, description="most predictions")) -> dict:
        """The vehicle's latest predictions from the API and batch inference, newest date first (none: an empty
        list)."""
        _checked(check_vin, vin, ["path", "vin"])
        rows = runtime.store.predictions_for_vin(vin, limit=limit)
        return {"vin": vin, "predictions": [prediction_view(row) for row in rows]}

    @v1.get("/alarms", response_model=Alarms, tags=["predictions"])
    def alarms(first: str | None = Query(None, alias="from", description="first as_of date, YYYY-MM-DD "
                                                                          "(default: 13 days before `to`)"),
               last: str | None = Query(None, alias="to", description="last as_of date, YYYY-MM-DD (default: today, "
                                                                      "UTC)")) -> dict:
        """Predictions at or above their model's threshold with as_of in [from, to], and the alarm episodes that
        started then."""
        last_day = _checked(parse_day, last, ["query", "to"], "to") if last else datetime.now(UTC).date()
        first_day = _checked(parse_day, first, ["query", "from"], "from") if first else last_day - timedelta(days=13)
        if first_day > last_day:
            raise ApiError(422, [problem(["query", "from"], f"from {first_day} is after to {last_day}", "date_order")])
        if (last_day - first_day).days >= ALARM_RANGE_DAYS:
            raise ApiError(422, [problem(["query", "from"], f"from {first_day} … to {last_day} spans more than "
                                                            f"{ALARM_RANGE_DAYS} days: ask for a shorter range",
                                         "date_range")])
        rows = runtime.store.predictions_between(first_day, last_day, alarm_only=True)
        return {"from": first_day, "to": last_day, "vehicles": len({row["vin"] for row in rows}),
                "alarms": [prediction_view(row) for row in rows],
                "alerts": runtime.store.alerts_between(first_day, last_day)}

    @v1.get("/model", response_model=Models, tags=["models"])
    def model() -> dict:
        """Each feature set's champion as served now: version, threshold, metrics on its test window beside the
        reference recipe's on the same split, training range, evaluation report."""
        return {"models": [_model_info(lake, champions, fs) for fs in SERVED_FEATURE_SETS]}

    app.include_router(v1)
    app.include_router(dashboard_router(settings, lake, lambda: runtime.store))
    return app


# ---------------------------------------------------------------------------------------------- POST helpers


def _probabilities(settings: Settings) -> Probabilities:
    """Where scores come from: the champions in this process, or on the aws backend their SageMaker endpoints."""
    if settings.backend == "aws":
        from pipelines.serving.sagemaker_scoring import EndpointScorer

        return EndpointScorer.from_settings(settings)
    return in_process


def _request_body_schema(max_items: int) -> dict:
    """The OpenAPI request body of POST /v1/predictions (read by hand, so that errors name list items)."""
    item = PredictionRequest.model_json_schema()
    examples = item.pop("examples", [])
    many = {"type": "array", "items": item, "minItems": 1, "maxItems": max_items}
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"oneOf": [item, many]},
        "examples": {"reference": {"summary": "the reference solution's body (signals6)", "value": examples[0]},
                     "lake": {"summary": "features from the lake's daily rows (full)", "value": examples[1]},
                     "list": {"summary": "a list of either", "value": examples}},
    }}}}


def _check_content_type(header: str | None) -> None:
    media_type = (header or "application/json").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, [problem(["header", "Content-Type"], f"content type {header!r} is not JSON: send "
                                                                 "application/json", "unsupported_media_type")])


async def _read_body(request: Request) -> bytes:
    """The body, refused past MAX_BODY_BYTES without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, [problem(["body"], f"body of {int(declared):,} bytes is over the 1 MB limit: send fewer "
                                               "items per request", "body_too_large")])
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, [problem(["body"], "body is over the 1 MB limit: send fewer items per request",
                                         "body_too_large")])
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id(header: str | None) -> tuple[str, bool]:
    """The request's id and whether the client chose it."""
    if header is None or not header.strip():
        return str(uuid.uuid4()), False
    return _checked(check_request_id, header.strip(), ["header", REQUEST_ID_HEADER]), True


def _items(requests: Sequence[PredictionRequest], many: bool, request_id: str, client_named: bool) -> list[Item]:
    """The checked items with their request ids; a 422 when one list holds the same prediction twice."""
    items, seen, problems = [], {}, []
    for index, body in enumerate(requests):
        loc = ("body", index) if many else ("body",)
        item = Item(loc=loc, vin=body.vin, as_of=body.as_of,
                    features=None if body.features is None else tuple(body.features),
                    request_id=body.request_id or request_id, client_request_id=bool(body.request_id) or client_named)
        if item.key in seen:
            problems.append(problem(list(loc), f"repeats item {seen[item.key]}: the same vin, date and feature set "
                                               f"under request id {item.request_id} (give it its own request_id)",
                                    "duplicate_item"))
        seen.setdefault(item.key, index)
        items.append(item)
    if problems:
        raise ApiError(422, problems)
    return items


# ---------------------------------------------------------------------------------------------- answers


def _model_info(lake: Lake, champions: ChampionModels, feature_set: str) -> dict:
    loaded = champions.get(feature_set)
    info = {"feature_set": feature_set, "request": REQUESTS[feature_set], "serving": loaded is not None}
    if loaded is None:
        return {**info, "problem": champions.unavailable_reason(feature_set),
                "feature_count": len(feature_columns(feature_set)) if feature_set in FEATURE_SETS else None}
    card = loaded.card

    def headline(metrics: dict | None) -> dict | None:
        if not metrics:
            return None
        keys = ("average_precision", "roc_auc", "at_threshold", "false_alarms_per_1000_vehicle_days", "windows",
                "positive_windows")
        return {key: metrics.get(key) for key in keys if key in metrics}

    return {**info, "version": loaded.version, "threshold": card.get("threshold"),
            "feature_count": loaded.model.feature_count, "metrics": headline(card.get("metrics")),
            "reference_metrics": headline(card.get("baseline_metrics")), "training_data": card.get("training_data"),
            "created_at": card.get("created_at"), "loaded_at": loaded.loaded_at,
            "report_url": lake.url(f"{registry.version_key(loaded.version)}report/index.html")}


def _checked(check, value: str, loc: list[str], *args: object):
    """check(value, *args), its ValueError as a 422 naming loc."""
    try:
        return check(value, *args)
    except ValueError as error:
        raise ApiError(422, [problem(loc, str(error), "value_error")]) from None


async def _error_response(request: Request, error: Exception) -> JSONResponse:
    """Every error as {"detail": [{"loc", "msg", "type"}]}."""
    if isinstance(error, ApiError):
        return JSONResponse({"detail": error.problems}, status_code=error.status, headers=error.headers)
    if isinstance(error, RequestValidationError):
        problems = [problem(list(e["loc"]), e["msg"], e["type"]) for e in error.errors()]
        return JSONResponse({"detail": problems}, status_code=422)
    if isinstance(error, StarletteHTTPException):
        detail = error.detail if isinstance(error.detail, str) else str(error.detail)
        return JSONResponse({"detail": [problem(["path"], f"{detail}: {request.method} {request.url.path}", "http")]},
                            status_code=error.status_code, headers=getattr(error, "headers", None))
    # A fault of the server (a bug, an unreadable lake object), never of the request: logged with its traceback.
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": [problem([], f"internal error ({type(error).__name__}): the server log has the "
                                                "details", "internal")]}, status_code=500)


# ---------------------------------------------------------------------------------------------- serve


def serve_api(host: str, port: int, settings: Settings | None = None, lake: Lake | None = None) -> None:
    """Run the prediction API until interrupted; prints a generated token once when none is configured."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, token_file = with_token(settings or load_settings())
    if token_file is not None:
        print(f"API token (also in {token_file}, mode 600; set CELLGUARD_API_TOKEN to choose your own):\n"
              f"{settings.api_token.reveal()}", flush=True)
    if settings.api_workers > 1:
        _serve_in_workers(host, port, settings, lake)
        return
    app = create_app(settings, lake)
    log.info("prediction API on http://%s:%d (docs at /docs); lake %s; event store %s", host, port,
             app.state.champions.lake.uri, settings.event_store_url.split("@")[-1])
    uvicorn.Server(server_config(app, host, port, access_log=settings.api_access_log)).run()


def app_from_environment() -> FastAPI:
    """The app each worker process builds when CELLGUARD_API_WORKERS > 1 (uvicorn's factory)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(load_settings())


def _serve_in_workers(host: str, port: int, settings: Settings, lake: Lake | None) -> None:
    """uvicorn's worker processes on one socket, each a whole API (champions, daily context, buffer) over the shared
    event store and lake: a prediction is recorded by the worker that answers it, so none is lost or doubled, and
    each flushes its own buffer when uvicorn stops it. The workers read their settings from the environment."""
    if lake is not None and lake.uri != Lake.from_settings(settings).uri:
        raise ValueError("worker processes read the lake from CELLGUARD_LAKE_URI: set it instead of passing a lake")
    os.environ["CELLGUARD_API_TOKEN"] = settings.api_token.reveal()  # a generated token reaches the workers too
    log.info("prediction API on http://%s:%d in %d worker processes (docs at /docs); lake %s; event store %s", host,
             port, settings.api_workers, settings.lake_uri, settings.event_store_url.split("@")[-1])
    uvicorn.run("pipelines.serving.api:app_from_environment", factory=True, host=host, port=port,
                workers=settings.api_workers, log_level="info", access_log=settings.api_access_log)
