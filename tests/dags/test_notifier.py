"""plugins/cellguard_airflow/notifier.py: a DAG failure posted to the alerts' webhook (a real loopback server)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG
from cellguard_airflow.notifier import WebhookNotifier

# pytest puts tests/ on sys.path, so the serving tests' loopback webhook is `serving.test_alerts`
from serving.test_alerts import dead_url, webhook_server

REPO = Path(__file__).resolve().parents[2]


def failure_context() -> dict:
    dag = DAG("bms_batch_inference", start_date=datetime(2026, 1, 1), schedule=None)
    return {"dag": dag, "run_id": "manual__2026-03-01", "reason": "task_failure"}


def test_a_failed_run_is_posted_as_slack_compatible_json() -> None:
    with webhook_server() as hook:
        WebhookNotifier(url=hook.url)(failure_context())
    [request] = hook.requests
    assert request["json"]["text"] == ":x: CellGuard: DAG bms_batch_inference run manual__2026-03-01 failed (task_failure)."
    assert request["json"]["cellguard"] == {"event": "dag_failed", "dag_id": "bms_batch_inference",
                                            "run_id": "manual__2026-03-01", "reason": "task_failure"}


def test_the_url_comes_from_settings_when_notifying_and_nothing_is_sent_without_one(monkeypatch) -> None:
    notifier = WebhookNotifier()  # built at DAG parse time: reads nothing yet
    monkeypatch.delenv("CELLGUARD_ALERT_WEBHOOK", raising=False)
    notifier(failure_context())  # no webhook configured: nothing to do, no error
    with webhook_server() as hook:
        monkeypatch.setenv("CELLGUARD_ALERT_WEBHOOK", hook.url)
        WebhookNotifier()(failure_context())
    assert len(hook.requests) == 1


def test_a_dead_webhook_is_logged_not_raised(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    WebhookNotifier(url=dead_url())(failure_context())
    logged = caplog.text + capsys.readouterr().out  # Airflow's structlog writes to stdout
    assert "could not post the failure of bms_batch_inference" in logged
    assert "/hook" not in logged  # the webhook's path (its token) is never logged


def test_bms_batch_inference_reports_its_failures_with_the_notifier() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "bms_batch_inference.py"))
    assert bag.import_errors == {}
    callbacks = bag.dags["bms_batch_inference"].on_failure_callback
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    assert any(isinstance(c, WebhookNotifier) for c in callbacks)
