"""alerts.py: one episode per run of alarmed days, notified once to the alerts table and a real loopback webhook."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.config import load_settings
from pipelines.serving.alerts import (
    Notifier,
    WebhookError,
    alert_payload,
    continues_episode,
    post_json,
    raise_alerts,
    redacted,
)
from pipelines.storage.event_store import EventStore

VIN = "LSVAB1234CD567890"
OTHER = "LFV2A2156K3000001"
DAY = date(2026, 3, 1)
MADE = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
MODEL = "20260201t000000z-full-ab12cd34"


@dataclass
class Webhook:
    """A real HTTP server on loopback that records every POST and answers with the queued statuses (then 200)."""

    url: str
    requests: list[dict] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@contextmanager
def webhook_server() -> Iterator[Webhook]:
    """Serve on a free loopback port in a thread until the block ends."""
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                  "json": json.loads(body)})
            status = hook.statuses.pop(0) if hook.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret-token"
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def dead_url() -> str:
    """A loopback URL nothing listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    yield store
    store.close()


def batch(vin: str, as_of: date, alarm: bool, probability: float | None = None, model: str = MODEL,
          feature_set: str = "full", source: str = "batch", made: datetime = MADE, **changes) -> dict:
    """One prediction row as batch inference makes it."""
    probability = probability if probability is not None else (0.9 if alarm else 0.1)
    return {"vin": vin, "as_of": as_of, "model_version": model, "feature_set": feature_set,
            "probability": probability, "alarm": alarm, "threshold": 0.42, "suspect_cell": 37, "reasons": [],
            "source": source, "request_id": f"{source}:{model}:{as_of}:{probability}", "created_at": made} | changes


def days(n: int) -> list[date]:
    return [DAY + timedelta(days=i) for i in range(n)]


def episodes(store: EventStore) -> list[tuple[str, date]]:
    return [(a["vin"], a["first_as_of"]) for a in store.alerts_between(date(2000, 1, 1), date(2100, 1, 1))]


QUIET = Notifier()  # no webhook: the alerts table is the only channel


def test_three_consecutive_alarmed_days_are_one_episode_whether_run_daily_or_at_once(store, tmp_path) -> None:
    store.record_predictions([batch(VIN, d, alarm=True) for d in days(3)])
    for day in days(3):  # one run a day, as the DAG does
        raise_alerts([day], store=store, notifier=QUIET, now=MADE)
    assert episodes(store) == [(VIN, DAY)]

    other = EventStore(f"sqlite:///{tmp_path / 'other.sqlite'}")
    other.record_predictions([batch(VIN, d, alarm=True) for d in days(3)])
    summary = raise_alerts(days(3), store=other, notifier=QUIET, now=MADE)  # one run for all three dates
    assert episodes(other) == [(VIN, DAY)]
    assert (summary.alarmed, summary.continued, summary.started) == (3, 2, [{"vin": VIN, "first_as_of": "2026-03-01"}])
    other.close()


def test_with_one_quiet_day_alarm_gap_alarm_is_two_episodes_and_an_unscored_day_is_a_gap(store) -> None:
    d0, d1, d2, d3, d4, d5 = days(6)
    store.record_predictions([batch(VIN, d0, True), batch(VIN, d1, False), batch(VIN, d2, True),
                              batch(OTHER, d3, True), batch(OTHER, d5, True)])  # OTHER: d4 never scored
    raise_alerts(days(6), store=store, notifier=QUIET, now=MADE, quiet_days=1)
    assert episodes(store) == [(VIN, d0), (VIN, d2), (OTHER, d3), (OTHER, d5)]


def test_an_episode_ends_only_after_the_quiet_days_so_a_hovering_vehicle_is_announced_once(store) -> None:
    d = days(12)
    flapping = [True, False, True, False, False, True, False, False, False, True]  # quiet 1, 2, then 3 days
    store.record_predictions([batch(VIN, d[i], alarm) for i, alarm in enumerate(flapping)]
                             + [batch(OTHER, d[0], True), batch(OTHER, d[3], True)])  # OTHER: 2 days unscored
    for day in d:  # one run a day, as the DAG does
        raise_alerts([day], store=store, notifier=QUIET, now=MADE, quiet_days=3)
    assert sorted(episodes(store)) == sorted([(VIN, d[0]), (OTHER, d[0]), (VIN, d[9])])
    raise_alerts(d, store=store, notifier=QUIET, now=MADE, quiet_days=3)  # all dates again, in one run
    assert sorted(episodes(store)) == sorted([(VIN, d[0]), (OTHER, d[0]), (VIN, d[9])])


def test_the_quiet_days_come_from_the_settings(store, monkeypatch) -> None:
    d0, d1, d2 = days(3)
    store.record_predictions([batch(VIN, d0, True), batch(VIN, d1, False), batch(VIN, d2, True)])
    monkeypatch.setenv("CELLGUARD_ALERT_QUIET_DAYS", "1")
    assert [e["first_as_of"] for e in raise_alerts(days(3), store=store, notifier=QUIET, now=MADE).started] == [
        d0.isoformat(), d2.isoformat()]
    monkeypatch.setenv("CELLGUARD_ALERT_QUIET_DAYS", "0")
    with pytest.raises(ValueError, match="CELLGUARD_ALERT_QUIET_DAYS must be a whole number of days from 1 to 30"):
        raise_alerts([d2], store=store, notifier=QUIET, now=MADE)


def test_an_episode_continues_across_a_new_champion_but_not_from_api_or_other_feature_set_predictions(store) -> None:
    d0, d1, d2 = days(3)
    store.record_predictions([batch(VIN, d0, True), batch(VIN, d1, True, model="20260301t000000z-full-ffff0000"),
                              batch(OTHER, d0, True, source="api"), batch(OTHER, d1, True),
                              batch(OTHER, d1, True, feature_set="signals6", model="20260201t000000z-signals6-ab12cd34"), batch(OTHER, d2, True)])
    raise_alerts([d0, d1, d2], store=store, notifier=QUIET, now=MADE)
    assert episodes(store) == [(VIN, d0), (OTHER, d1)]
    assert raise_alerts([d1], feature_set="signals6", store=store, notifier=QUIET, now=MADE).started == [
        {"vin": OTHER, "first_as_of": d1.isoformat()}]


def test_the_latest_batch_prediction_of_the_day_before_decides(store) -> None:
    d0, d1 = days(2)
    rescored = MADE + timedelta(hours=5)  # late data re-scored d0: no alarm any more
    store.record_predictions([batch(VIN, d0, True), batch(VIN, d0, False, made=rescored), batch(VIN, d1, True)])
    raise_alerts([d0], store=store, notifier=QUIET, now=MADE)
    assert episodes(store) == []  # the latest d0 prediction does not alarm
    raise_alerts([d1], store=store, notifier=QUIET, now=MADE)
    assert episodes(store) == [(VIN, d1)]


def test_a_recent_alarm_without_a_recorded_episode_still_starts_one() -> None:
    begun = {"first_as_of": DAY - timedelta(days=5)}
    assert continues_episode(DAY - timedelta(days=1), begun, DAY, quiet_days=1)
    assert continues_episode(DAY - timedelta(days=3), begun, DAY, quiet_days=3)
    assert not continues_episode(DAY - timedelta(days=4), begun, DAY, quiet_days=3)  # quiet long enough: ended
    assert not continues_episode(DAY - timedelta(days=1), None, DAY, quiet_days=3)  # alerts never ran: announce now
    assert not continues_episode(DAY - timedelta(days=1), {"first_as_of": DAY}, DAY, quiet_days=3)
    assert not continues_episode(None, begun, DAY, quiet_days=3)


def test_a_new_episode_is_posted_once_to_a_real_webhook_with_text_and_fields(store) -> None:
    d0, d1 = days(2)
    store.record_predictions([batch(VIN, d0, True, probability=0.8765), batch(VIN, d1, True),
                              batch(OTHER, d0, False)])
    with webhook_server() as hook:
        notifier = Notifier(hook.url, timeout_s=5, backoff_s=0)
        first = raise_alerts([d0], store=store, notifier=notifier, now=MADE)
        raise_alerts([d0, d1], store=store, notifier=notifier, now=MADE)  # re-run and the next day: nothing new
    assert len(hook.requests) == 1
    request = hook.requests[0]
    assert request["path"] == "/services/T000/B000/secret-token"
    assert request["content_type"] == "application/json"
    text = request["json"]["text"]
    for part in (VIN, "0.88", "0.42", "suspect cell 37", MODEL, "2026-03-01"):
        assert part in text
    assert request["json"]["cellguard"] == {
        "event": "alarm_episode_started", "vin": VIN, "feature_set": "full", "first_as_of": "2026-03-01",
        "probability": 0.8765, "threshold": 0.42, "suspect_cell": 37, "model_version": MODEL}
    assert first.notified == [{"vin": VIN, "first_as_of": "2026-03-01", "channel": "webhook"}]
    [episode] = store.alerts_between(d0, d0)
    assert episode["notified_at"] is not None and episode["channel"] == "webhook"
    assert episode["probability"] == 0.8765 and episode["model_version"] == MODEL and episode["suspect_cell"] == 37


def test_a_dead_webhook_keeps_the_alert_unnotified_without_raising_and_a_later_run_delivers_it(store, caplog) -> None:
    d0, d1 = days(2)
    store.record_predictions([batch(VIN, d0, True), batch(OTHER, d1, True)])
    summary = raise_alerts([d0], store=store, notifier=Notifier(dead_url(), timeout_s=2, backoff_s=0), now=MADE)
    [episode] = store.alerts_between(d0, d0)
    assert episode["vin"] == VIN and episode["notified_at"] is None and episode["channel"] is None
    assert summary.notified == [] and [f["vin"] for f in summary.failed] == [VIN]
    assert "ConnectError" in summary.failed[0]["error"]
    assert "left for a retry" in caplog.text

    with webhook_server() as hook:  # the next day's run retries the pending episode too
        later = raise_alerts([d1], store=store, notifier=Notifier(hook.url, backoff_s=0), now=MADE)
    assert sorted(r["json"]["cellguard"]["vin"] for r in hook.requests) == sorted([VIN, OTHER])
    assert {n["vin"] for n in later.notified} == {VIN, OTHER}
    assert all(a["notified_at"] is not None for a in store.alerts_between(d0, d1))


def test_without_a_webhook_the_alerts_table_is_the_channel(store) -> None:
    store.record_predictions([batch(VIN, DAY, True)])
    summary = raise_alerts([DAY], store=store, notifier=QUIET, now=MADE)
    assert summary.notified == [{"vin": VIN, "first_as_of": "2026-03-01", "channel": "store"}]
    assert store.open_alert(VIN, "full")["channel"] == "store"


def test_notifier_reads_the_webhook_from_settings(monkeypatch) -> None:
    monkeypatch.setenv("CELLGUARD_ALERT_WEBHOOK", "https://hooks.example.com/services/abc")
    assert Notifier.from_settings().webhook_url == "https://hooks.example.com/services/abc"
    assert "services/abc" not in str(load_settings().alert_webhook) + repr(load_settings())  # `cellguard config`
    monkeypatch.setenv("CELLGUARD_ALERT_WEBHOOK", "hooks.example.com/services/secret")
    with pytest.raises(ValueError, match="http:// or https://") as error:
        Notifier.from_settings()
    assert "secret" not in str(error.value)
    monkeypatch.delenv("CELLGUARD_ALERT_WEBHOOK")
    assert Notifier.from_settings().channel == "store"


def test_server_errors_are_retried_client_errors_are_not_and_the_token_is_never_shown() -> None:
    with webhook_server() as hook:
        hook.statuses += [503, 500]
        post_json(hook.url, {"text": "x"}, backoff_s=0)
        assert len(hook.requests) == 3
        hook.statuses += [404]
        with pytest.raises(WebhookError, match="HTTP 404") as error:
            post_json(hook.url, {"text": "x"}, backoff_s=0)
        assert len(hook.requests) == 4 and "secret-token" not in str(error.value)
    assert redacted("https://hooks.slack.com/services/T/B/tok") == "https://hooks.slack.com/…"


def test_payload_names_an_unknown_suspect_cell() -> None:
    payload = alert_payload({"vin": VIN, "feature_set": "full", "first_as_of": DAY, "model_version": MODEL,
                             "probability": 0.5, "threshold": 0.5, "suspect_cell": None})
    assert "suspect cell unknown" in payload["text"] and payload["cellguard"]["suspect_cell"] is None
