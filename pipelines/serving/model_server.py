"""`cellguard serve-model`: the SageMaker inference container contract over the registry's champion models.

Routes:

    GET  /ping                                   200 when the served feature set's champion is loaded, else 503
    POST /invocations                            score with that champion (text/csv or application/json)
    GET  /execution-parameters                   what Batch Transform asks a container for
    POST /endpoints/{endpoint_name}/invocations  the SageMaker Runtime InvokeEndpoint call, so
                                                 boto3's `sagemaker-runtime` client works against this server;
                                                 `cellguard-<feature set>` names the model

Scoring runs inference.py's input_fn → predict_fn → output_fn. Responses carry the model version in
`X-CellGuard-Model-Version`. No Accept (or `*/*`) answers in the request's type. Bad input is a 400 (415
for an unsupported Content-Type, 406 for an unsupported Accept, 413 above 6 MB) with the message as text.
On the Runtime path errors are shaped as SageMaker's: an unknown endpoint, or one without a champion yet
(in SageMaker it would not be deployed), is a `ValidationError` (400); the model rejecting the input is a
`ModelError` (424) carrying the original status and message, as SageMaker wraps a container's 4xx.

A background thread polls the champion pointers every CELLGUARD_MODEL_POLL_SECONDS and swaps a new
champion in once it is fully loaded; requests in flight finish on the model they started with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pipelines.features.window_signals import FEATURE_SETS
from pipelines.serving.inference import (
    InvalidInput,
    UnsupportedAccept,
    UnsupportedContentType,
    input_fn,
    output_fn,
    predict_fn,
)
from pipelines.serving.model_champions import ChampionModels, ChampionWatcher
from pipelines.serving.model_loading import LoadedModel
from pipelines.storage.lake import Lake

log = logging.getLogger(__name__)

MAX_PAYLOAD_MB = 6
MAX_PAYLOAD_BYTES = MAX_PAYLOAD_MB * 1024 * 1024
ENDPOINT_PREFIX = "cellguard-"
PRODUCTION_VARIANT = "AllTraffic"  # the variant name SageMaker gives a single-variant endpoint
VERSION_HEADER = "X-CellGuard-Model-Version"
FEATURE_SET_HEADER = "X-CellGuard-Feature-Set"


class PayloadTooLarge(InvalidInput):
    """A request body above the 6 MB SageMaker accepts."""


def error_status(error: InvalidInput) -> int:
    """The HTTP status a SageMaker container answers for a rejected request."""
    if isinstance(error, UnsupportedContentType):
        return 415
    if isinstance(error, UnsupportedAccept):
        return 406
    if isinstance(error, PayloadTooLarge):
        return 413
    return 400


def endpoint_feature_set(endpoint_name: str) -> str | None:
    """The feature set an endpoint name serves: `cellguard-signals6` → signals6; None for other names."""
    if not endpoint_name.startswith(ENDPOINT_PREFIX):
        return None
    return endpoint_name[len(ENDPOINT_PREFIX):] or None


def served_feature_sets(primary: str) -> list[str]:
    """The primary feature set (what /invocations serves) first, then every other one for the Runtime path."""
    if primary not in FEATURE_SETS:
        raise ValueError(f"feature set {primary!r}: expected one of {', '.join(FEATURE_SETS)}")
    return [primary, *(name for name in FEATURE_SETS if name != primary)]


def score(loaded: LoadedModel, body: bytes, content_type: str | None, accept: str | None) -> tuple[str, str]:
    """inference.py's handlers in a row: (response body, response content type); raises InvalidInput."""
    rows = input_fn(body, content_type)
    if not accept or accept.strip() == "*/*":
        accept = content_type  # answer in the request's own type unless asked otherwise
    return output_fn(predict_fn(rows, loaded.model), accept)


async def read_body(request: Request) -> bytes:
    """The request body, refused past MAX_PAYLOAD_MB without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"request body of {int(declared):,} bytes is over the {MAX_PAYLOAD_MB} MB limit: "
                              f"send fewer rows per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(f"request body is over the {MAX_PAYLOAD_MB} MB limit: send fewer rows per request")
        chunks.append(chunk)
    return b"".join(chunks)


def model_headers(loaded: LoadedModel) -> dict[str, str]:
    """Which model answered."""
    return {VERSION_HEADER: loaded.version, FEATURE_SET_HEADER: loaded.feature_set}


def sagemaker_error(code: str, message: str, status: int, **fields: object) -> JSONResponse:
    """An error as SageMaker Runtime sends it, so botocore raises a ClientError with this code and message."""
    return JSONResponse({"message": message, **fields}, status_code=status,
                        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())})


def create_app(champions: ChampionModels, poll_seconds: float | None = None) -> Starlette:
    """The ASGI app serving `champions` (its first feature set on /invocations); polls every `poll_seconds` if set."""
    primary = champions.feature_sets[0]

    async def ping(request: Request) -> Response:
        loaded = champions.get(primary)
        if loaded is None:
            return PlainTextResponse(champions.unavailable_reason(primary) + "\n", status_code=503)
        return JSONResponse({"status": "ok", "feature_set": primary, "version": loaded.version},
                            headers=model_headers(loaded))

    async def execution_parameters(request: Request) -> Response:
        return JSONResponse({"MaxConcurrentTransforms": os.cpu_count() or 1, "BatchStrategy": "MULTI_RECORD",
                             "MaxPayloadInMB": MAX_PAYLOAD_MB})

    async def invocations(request: Request) -> Response:
        loaded = champions.get(primary)  # this request keeps this model, whatever a swap does meanwhile
        if loaded is None:
            return PlainTextResponse(champions.unavailable_reason(primary) + "\n", status_code=503)
        try:
            body = await read_body(request)
            content, content_type = await run_in_threadpool(
                score, loaded, body, request.headers.get("content-type"), request.headers.get("accept"))
        except InvalidInput as error:
            return PlainTextResponse(f"{error}\n", status_code=error_status(error), headers=model_headers(loaded))
        return Response(content, media_type=content_type, headers=model_headers(loaded))

    async def endpoint_invocations(request: Request) -> Response:
        name = request.path_params["endpoint_name"]
        feature_set = endpoint_feature_set(name)
        if feature_set not in champions.feature_sets:
            served = ", ".join(ENDPOINT_PREFIX + fs for fs in champions.feature_sets)
            return sagemaker_error("ValidationError", f"Endpoint {name} not found: this model server serves {served}",
                                   400)
        loaded = champions.get(feature_set)
        if loaded is None:
            return sagemaker_error("ValidationError",
                                   f"Endpoint {name} is not ready: {champions.unavailable_reason(feature_set)}", 400)
        try:
            body = await read_body(request)
            content, content_type = await run_in_threadpool(
                score, loaded, body, request.headers.get("content-type"), request.headers.get("accept"))
        except InvalidInput as error:
            status = error_status(error)
            return sagemaker_error(
                "ModelError", f"Received client error ({status}) from primary with message \"{error}\".", 424,
                OriginalStatusCode=status, OriginalMessage=str(error))
        headers = {**model_headers(loaded), "x-Amzn-Invoked-Production-Variant": PRODUCTION_VARIANT,
                   "x-amzn-RequestId": str(uuid.uuid4())}
        return Response(content, media_type=content_type, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = ChampionWatcher(champions, poll_seconds) if poll_seconds else None
        if watcher:
            watcher.start()
        try:
            yield
        finally:
            if watcher:
                watcher.stop()

    return Starlette(routes=[
        Route("/ping", ping, methods=["GET"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/endpoints/{endpoint_name}/invocations", endpoint_invocations, methods=["POST"]),
    ], lifespan=lifespan)


def server_config(app: Starlette, host: str, port: int, access_log: bool = True) -> uvicorn.Config:
    """uvicorn settings for the model server (one process: the models live in it, requests run on its threads)."""
    return uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on", access_log=access_log)


def serve_model(host: str, port: int, feature_set: str, poll_seconds: float, lake: Lake | None = None) -> None:
    """Run the model server until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    champions = ChampionModels(lake or Lake.from_settings(), served_feature_sets(feature_set))
    log.info("model server on http://%s:%d, serving %s on /invocations; lake %s; champion poll every %s s",
             host, port, feature_set, champions.lake.uri, poll_seconds)
    uvicorn.Server(server_config(create_app(champions, poll_seconds), host, port)).run()

