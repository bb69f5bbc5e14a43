"""A DAG-failure notifier posting to CELLGUARD_ALERT_WEBHOOK (the alerts' webhook): `on_failure_callback=WebhookNotifier()`."""

from __future__ import annotations

from airflow.sdk import BaseNotifier

DEFAULT_TEXT = ":x: CellGuard: DAG {{ dag.dag_id }} run {{ run_id }} failed{% if reason %} ({{ reason }}){% endif %}."


class WebhookNotifier(BaseNotifier):
    """Posts `{"text": …}` to the webhook; without one configured it does nothing. Never raises."""

    template_fields = ("text",)

    def __init__(self, text: str = DEFAULT_TEXT, url: str | None = None):
        super().__init__()
        self.text = text
        self.url = url  # None: read CELLGUARD_ALERT_WEBHOOK when notifying, never at DAG parse time

    def notify(self, context) -> None:
        from pipelines.serving.alerts import post_json, redacted

        url = self.url
        if url is None:
            from pipelines.config import load_settings

            webhook = load_settings().alert_webhook
            url = webhook.reveal() if webhook else None
        if not url:
            return
        dag = context.get("dag")
        facts = {"event": "dag_failed", "dag_id": getattr(dag, "dag_id", None), "run_id": context.get("run_id"),
                 "reason": context.get("reason")}
        try:
            post_json(url, {"text": self.text, "cellguard": facts})
        except Exception as error:  # a failure callback that fails only hides the original failure
            self.log.warning("could not post the failure of %s to %s: %s", facts["dag_id"], redacted(url), error)
