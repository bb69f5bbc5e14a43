"""
### bms_batch_inference

Runs when **daily** changes: for each date D the triggering features runs recomputed, scores every vehicle at
as_of D+1 (the window reads the 14 days before as_of, so the day after the newest data is the prediction date)
with the feature set's champion, in one vectorised call (on the aws backend, one SageMaker Batch Transform job
named from the run id; `CELLGUARD_BATCH_SCORING` chooses). Predictions (probability, alarm at the champion's
threshold, suspect cell; the top-3 reasons for each date's 1,000 most probable alarms, null for the other rows, as
exact contributions cost more than everything else together) go to the event store and to
`predictions/dt=<as_of>/`, then the catalog
is refreshed and asset **predictions** announced with the as_of dates, the model version and the row count.
Vehicles that start alarming get an alert episode (the event store's alerts table, copied to the lake's
`alerts/` zone for the catalog, and CELLGUARD_ALERT_WEBHOOK if set); a vehicle that keeps alarming day after day is
announced once, and an episode ends only after CELLGUARD_ALERT_QUIET_DAYS days without an alarm. A failed run is posted to the same webhook.

Run it by hand with `dates` (as_of dates, `YYYY-MM-DD`) to score those; with no dates and no triggering event it
scores the day after the newest daily date. No champion yet: the run is skipped. Re-running changes nothing.
Logic lives in `pipelines.serving` (`batch_inference`, `alerts`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from cellguard_airflow.assets import DAILY, PREDICTIONS
from cellguard_airflow.notifier import WebhookNotifier

FEATURE_SETS = ["full", "signals6"]


@dag(
    schedule=[DAILY],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    on_failure_callback=WebhookNotifier(),
    params={
        "dates": Param([], type="array", items={"type": "string", "format": "date"},
                       description="as_of dates to score (YYYY-MM-DD); empty: the day after each date the triggering "
                                   "daily event names, else the day after the newest daily date"),
        "feature_set": Param("full", enum=FEATURE_SETS, description="Whose champion scores (and whose alerts)"),
    },
    tags=["cellguard", "inference"],
)
def bms_batch_inference():
    @task
    def as_of_dates() -> list[str]:
        from cellguard_airflow.events import dates_from_events

        from pipelines.serving.batch_inference import as_of_dates_to_score

        context = get_current_context()
        touched = dates_from_events(context.get("triggering_asset_events"))
        return [day.isoformat() for day in as_of_dates_to_score(context["params"].get("dates") or [], touched)]

    @task(outlets=[PREDICTIONS])
    def score(dates: list[str], params=None, *, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.serving.batch_inference import score_dates

        # the run id names the Batch Transform job (aws backend), so a retry of this run reuses its job
        summary = score_dates(dates, feature_set=params["feature_set"], run_id=get_current_context()["run_id"])
        print(summary.message)
        if not summary.scored:  # no champion, or no daily rows before these dates: nothing to announce
            raise AirflowSkipException(summary.message)
        outlet_events[PREDICTIONS].extra = {"as_of": summary.scored, "model_version": summary.model_version,
                                            "feature_set": summary.feature_set, "rows": summary.rows}
        return summary.to_dict()

    @task
    def alerts(summary: dict) -> dict:
        from pipelines.serving.alerts import publish_episodes, raise_alerts

        result = raise_alerts(summary["scored"], feature_set=summary["feature_set"])
        print(result.message())
        print(f"alerts zone: {len(publish_episodes(summary['scored']))} dates written")
        return result.to_dict()

    @task
    def refresh_catalog(alerted: dict) -> str:
        from pipelines.storage.catalog import refresh_catalog

        return refresh_catalog()

    scored = score(as_of_dates())
    refresh_catalog(alerts(scored))


bms_batch_inference()
