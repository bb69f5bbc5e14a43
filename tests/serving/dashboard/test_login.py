"""pipelines/serving/dashboard/login.py and the session cookies of pipelines/serving/api_auth.py."""

from __future__ import annotations

import pytest

from pipelines.config import Secret
from pipelines.serving.api_auth import SessionCookies
from pipelines.serving.dashboard.login import login_redirect, safe_next

TOKEN = Secret("login-token-0123456789abcdef")


@pytest.mark.parametrize("value, expected", [
    ("/", "/"), ("/#/vehicles/LSVDSH00000000001", "/#/vehicles/LSVDSH00000000001"), ("/#/model", "/#/model"),
    (None, "/"), ("", "/"), ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example/", "/"),
    ("javascript:alert(1)", "/"), ("/<script>", "/"), ("/" + "a" * 600, "/"),
])
def test_a_login_goes_on_to_a_path_of_this_server_only(value, expected) -> None:
    assert safe_next(value) == expected


def test_the_login_redirect_keeps_where_the_browser_was_going() -> None:
    response = login_redirect("/#/model")
    assert (response.status_code, response.headers["location"]) == (303, "/login?next=/%23/model")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_session_cookie_is_signed_expires_and_holds_no_token() -> None:
    clock = Clock(1_800_000_000.0)
    sessions = SessionCookies(TOKEN, lifetime_s=3600, clock=clock)
    cookie = sessions.issue()
    version, expiry, session_id, mac = cookie.split(".")
    assert (version, int(expiry), len(session_id), len(mac)) == ("v1", 1_800_003_600, 16, 64)
    assert TOKEN.reveal() not in cookie and sessions.valid(cookie)
    assert sessions.issue() != cookie  # each login its own session
    clock.now += 3600
    assert sessions.valid(cookie)
    clock.now += 1
    assert not sessions.valid(cookie)


@pytest.mark.parametrize("tamper", [
    lambda c: c.replace("v1.", "v2.", 1),
    lambda c: c[:3] + str(int(c.split(".")[1]) + 86400) + c[3 + len(c.split(".")[1]):],  # a later expiry
    lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),
    lambda c: c + ".extra",
    lambda c: "",
    lambda c: "x" * 500,
])
def test_a_changed_cookie_is_not_a_session(tamper) -> None:
    sessions = SessionCookies(TOKEN)
    cookie = sessions.issue()
    assert sessions.valid(cookie) and not sessions.valid(tamper(cookie))


def test_another_token_makes_every_cookie_invalid_and_logout_revokes_one() -> None:
    sessions = SessionCookies(TOKEN)
    first, second = sessions.issue(), sessions.issue()
    assert not SessionCookies(Secret("another-token-0123456789abcd")).valid(first)
    sessions.revoke(first)
    sessions.revoke("not a cookie")
    assert (sessions.valid(first), sessions.valid(second)) == (False, True)


def test_the_token_is_compared_whole() -> None:
    sessions = SessionCookies(TOKEN)
    assert sessions.token_matches(TOKEN.reveal())
    assert not any(sessions.token_matches(sent) for sent in (TOKEN.reveal()[:-1], TOKEN.reveal() + " ", "", "tökén"))
    with pytest.raises(ValueError, match="at least 1 s"):
        SessionCookies(TOKEN, lifetime_s=0)
