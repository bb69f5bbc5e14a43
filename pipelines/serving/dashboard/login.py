"""The dashboard's login form and logout: the API token in, a session cookie out (api_auth.SessionCookies).

    GET  /login?next=/   the form (straight on to `next` when the browser already has a session)
    POST /login          form field `token` (and `next`): 303 to `next` with the session cookie, or 401 with the form
    POST /logout         ends the session and drops the cookie: 303 to the form
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from pipelines.config import Secret
from pipelines.serving.api_auth import SESSION_COOKIE, SessionCookies, has_access
from pipelines.serving.dashboard.pages import Pages

MAX_FORM_BYTES = 4096  # a token and a path; anything bigger is not a login
_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%#=&?:+-]{0,500}$")


def safe_next(value: str | None) -> str:
    """Where a login may send the browser on: a path on this server, else the dashboard (no open redirect)."""
    return value if value and _LOCAL_PATH.match(value) else "/"


def login_redirect(path: str) -> RedirectResponse:
    """303 to the login form, coming back to `path` afterwards."""
    return RedirectResponse(f"/login?next={quote(safe_next(path), safe='/')}", status_code=303,
                            headers={"Cache-Control": "no-store"})


def login_router(token: Secret, sessions: SessionCookies, pages: Pages) -> APIRouter:
    """The /login and /logout routes."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    def login_form(request: Request, next_path: str = Query("/", alias="next")) -> Response:
        if has_access(request, token, sessions):
            return RedirectResponse(safe_next(next_path), status_code=303)
        return pages.render("login.html", next=safe_next(next_path), message=None)

    @router.post("/login")
    async def log_in(request: Request) -> Response:
        form, problem = await _read_form(request)
        destination = safe_next(form.get("next"))
        if problem is None and not form.get("token"):
            problem = (400, "Enter the API token.")
        if problem is None and not sessions.token_matches(form["token"]):
            problem = (401, "That is not this API's token: it is in $CELLGUARD_HOME/api-token, or CELLGUARD_API_TOKEN.")
        if problem is not None:
            return pages.render("login.html", status_code=problem[0], next=destination, message=problem[1])
        response = RedirectResponse(destination, status_code=303, headers={"Cache-Control": "no-store"})
        sessions.set_cookie(response, request)
        return response

    @router.post("/logout")
    def log_out(request: Request) -> Response:
        sessions.revoke(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303, headers={"Cache-Control": "no-store"})
        sessions.clear_cookie(response, request)
        return response

    return router


async def _read_form(request: Request) -> tuple[dict[str, str], tuple[int, str] | None]:
    """The urlencoded form's first value of each field, or the status and message of why it cannot be read."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return {}, (415, f"Send the form as application/x-www-form-urlencoded, not {media_type or 'no content type'}.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}, (413, f"The form is over {MAX_FORM_BYTES:,} bytes: send the token alone.")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}, (400, "The form could not be read (UTF-8, at most 10 fields).")
    return {name: values[0] for name, values in fields.items()}, None
