"""The prediction API's credentials: the bearer token on every route but /healthz, and the dashboard's session cookie.

`CELLGUARD_API_TOKEN` sets the token. Without it `cellguard serve-api` generates one per start
(`secrets.token_urlsafe`), prints it once and writes it to `$CELLGUARD_HOME/api-token` with mode 600, so the demo
and the machine's user can read it and nobody else can. Requests send `Authorization: Bearer <token>`; a missing or
wrong token is a 401 with `WWW-Authenticate: Bearer`. Comparisons take the same time whatever was sent
(`secrets.compare_digest`).

The fleet dashboard is opened in a browser, which cannot send a bearer header: its login form posts the token
once and gets a session cookie back (`SessionCookies`). The cookie holds an expiry, a random session id and an
HMAC over both keyed by the token, never the token itself; it is HttpOnly (page scripts cannot read it) and
SameSite=Strict (other sites cannot make the browser send it), and Secure when the API is reached over HTTPS.
Logging out revokes the session in this process; changing the token revokes every session. The dashboard's
routes take either credential (`bearer_or_session_guard`); the /v1 routes take the bearer token only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipelines.config import Secret, Settings
from pipelines.serving.api_schemas import ApiError, problem

TOKEN_FILE = "api-token"
SCHEME = HTTPBearer(auto_error=False, description="CELLGUARD_API_TOKEN, or the token `cellguard serve-api` "
                                                   "printed and wrote to $CELLGUARD_HOME/api-token")
SESSION_COOKIE = "cellguard_session"
SESSION_SECONDS = 12 * 3600  # a working day: long enough not to nag, short enough that a forgotten tab expires
_SESSION_FORMAT = "v1"
_MAX_COOKIE_CHARS = 200  # a session cookie is ~95 characters; anything longer is not ours
_MISSING = ("missing bearer token: send 'Authorization: Bearer <token>' (CELLGUARD_API_TOKEN, or the token serve-api "
            "printed and wrote to $CELLGUARD_HOME/api-token)")


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


def _as_bytes(text: str) -> bytes:
    # bytes: compare_digest refuses non-ASCII text, and a header may carry any latin-1 character
    return text.encode("utf-8", "surrogateescape")


def _bearer_error(credentials: HTTPAuthorizationCredentials | None, expected: bytes, missing: str) -> ApiError | None:
    """The 401 for a missing or wrong bearer token, None for the right one."""
    if credentials is None:
        return ApiError(401, [problem(["header", "Authorization"], missing, "unauthorized")],
                        headers={"WWW-Authenticate": "Bearer"})
    if not secrets.compare_digest(_as_bytes(credentials.credentials), expected):
        return ApiError(401, [problem(["header", "Authorization"], "the bearer token is not this API's token",
                                      "unauthorized")],
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return None


def bearer_guard(token: Secret) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency refusing requests without `Authorization: Bearer <token>`."""
    expected = token.reveal().encode()

    async def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(SCHEME)]) -> None:
        error = _bearer_error(credentials, expected, _MISSING)
        if error is not None:
            raise error

    return require_token


class SessionCookies:
    """Issues and checks the dashboard's session cookies; thread-safe. See the module doc for what a cookie holds."""

    def __init__(self, token: Secret, lifetime_s: int = SESSION_SECONDS, clock: Callable[[], float] = time.time):
        if lifetime_s < 1:
            raise ValueError(f"a session lifetime must be at least 1 s, not {lifetime_s}")
        self._token = token.reveal().encode()
        self._key = hashlib.sha256(b"cellguard dashboard session\x00" + self._token).digest()
        self.lifetime_s, self._clock = lifetime_s, clock
        self._revoked: dict[str, int] = {}  # session id -> its expiry, forgotten once expired
        self._lock = threading.Lock()

    def token_matches(self, sent: str) -> bool:
        """Whether a login form sent this API's token (constant time)."""
        return secrets.compare_digest(_as_bytes(sent), self._token)

    def issue(self) -> str:
        """A new session cookie value, valid for `lifetime_s`."""
        payload = f"{_SESSION_FORMAT}.{int(self._clock()) + self.lifetime_s}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._mac(payload)}"

    def valid(self, cookie: str | None) -> bool:
        """Whether a cookie value is a session this API issued that has neither expired nor been revoked."""
        session = self._session(cookie)
        if session is None:
            return False
        with self._lock:
            return session[0] not in self._revoked

    def revoke(self, cookie: str | None) -> None:
        """End a session (logout); a cookie that is not a valid session is ignored."""
        session = self._session(cookie)
        now = int(self._clock())
        with self._lock:
            self._revoked = {sid: expiry for sid, expiry in self._revoked.items() if expiry >= now}
            if session is not None:
                self._revoked[session[0]] = session[1]

    def set_cookie(self, response: Response, request: Request) -> None:
        """Start a session on the response."""
        response.set_cookie(SESSION_COOKIE, self.issue(), max_age=self.lifetime_s, path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")

    def clear_cookie(self, response: Response, request: Request) -> None:
        """Tell the browser to drop its session cookie."""
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")

    def _session(self, cookie: str | None) -> tuple[str, int] | None:
        """(session id, expiry) of a well-signed, unexpired cookie, else None."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not secrets.compare_digest(_as_bytes(mac), self._mac(payload).encode()):
            return None
        parts = payload.split(".")
        if len(parts) != 3 or parts[0] != _SESSION_FORMAT or not parts[1].isdigit():
            return None
        expiry = int(parts[1])
        return (parts[2], expiry) if expiry >= self._clock() else None

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, _as_bytes(payload), hashlib.sha256).hexdigest()


def has_access(request: Request, token: Secret, sessions: SessionCookies) -> bool:
    """Whether a request carries the bearer token or a valid session cookie (for pages, which redirect instead)."""
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and sent:
        return secrets.compare_digest(_as_bytes(sent.strip()), token.reveal().encode())
    return sessions.valid(request.cookies.get(SESSION_COOKIE))


def bearer_or_session_guard(token: Secret, sessions: SessionCookies) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency taking the bearer token or the dashboard's session cookie; 401 JSON otherwise.

    A bearer header, when sent, decides alone: a wrong token is refused even beside a valid cookie."""
    expected = token.reveal().encode()

    async def require_token_or_session(
            request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(SCHEME)]) -> None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if credentials is None and cookie is not None:
            if sessions.valid(cookie):
                return
            raise ApiError(401, [problem(["cookie", SESSION_COOKIE], "the dashboard session has expired or was ended: "
                                         "sign in again at /login", "unauthorized")],
                           headers={"WWW-Authenticate": "Bearer"})
        error = _bearer_error(credentials, expected, f"{_MISSING}, or sign in to the dashboard at /login")
        if error is not None:
            raise error

    return require_token_or_session
