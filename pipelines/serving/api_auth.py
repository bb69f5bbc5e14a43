"""The prediction API's bearer token: checked on every route but /healthz, generated when none is configured.

`CELLGUARD_API_TOKEN` sets it. Without it `cellguard serve-api` generates one per start (`secrets.token_urlsafe`),
prints it once and writes it to `$CELLGUARD_HOME/api-token` with mode 600, so the demo and the machine's user can
read it and nobody else can. Requests send `Authorization: Bearer <token>`; a missing or wrong token is a 401 with
`WWW-Authenticate: Bearer`. The comparison takes the same time whatever the token sent (`secrets.compare_digest`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipelines.config import Secret, Settings
from pipelines.serving.api_schemas import ApiError, problem

TOKEN_FILE = "api-token"
SCHEME = HTTPBearer(auto_error=False, description="CELLGUARD_API_TOKEN, or the token `cellguard serve-api` "
                                                   "printed and wrote to $CELLGUARD_HOME/api-token")


def token_path(settings: Settings) -> Path:
    """Where serve-api writes a generated token."""
    return settings.home / TOKEN_FILE


def write_token_file(path: Path, token: str) -> None:
    """Write the token readable by this user only (mode 600), atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # the file may have existed with wider permissions
        os.write(descriptor, f"{token}\n".encode())
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


def with_token(settings: Settings) -> tuple[Settings, Path | None]:
    """The settings with a token: CELLGUARD_API_TOKEN's, or a new one written to the token file (and its path)."""
    if settings.api_token is not None:
        return settings, None
    token = secrets.token_urlsafe(32)
    path = token_path(settings)
    write_token_file(path, token)
    return replace(settings, api_token=Secret(token)), path


def bearer_guard(token: Secret) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency refusing requests without `Authorization: Bearer <token>`."""
    expected = token.reveal().encode()

    async def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(SCHEME)]) -> None:
        if credentials is None:
            raise ApiError(401, [problem(["header", "Authorization"], "missing bearer token: send "
                                         "'Authorization: Bearer <token>' (CELLGUARD_API_TOKEN, or the token "
                                         "serve-api printed and wrote to $CELLGUARD_HOME/api-token)", "unauthorized")],
                           headers={"WWW-Authenticate": "Bearer"})
        # bytes: compare_digest refuses non-ASCII text, and a header may carry any latin-1 character
        if not secrets.compare_digest(credentials.credentials.encode("utf-8", "surrogateescape"), expected):
            raise ApiError(401, [problem(["header", "Authorization"], "the bearer token is not this API's token",
                                         "unauthorized")],
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    return require_token
