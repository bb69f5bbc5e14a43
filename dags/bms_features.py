"""
### bms_features

Runs when **frames** changes: recomputes the `daily` zone (and the per-cell rows behind the suspect cell) for
the dates the triggering ingest runs touched, plus the following six dates whose 7-day suspect-cell mean reads
them, refreshes the catalog, and announces asset **daily** with the recomputed dates in the event's extra.

Run it by hand with `dates` (a list of `YYYY-MM-DD`) to recompute those; with no dates and no triggering event
it catches up on every date that has frames but no daily rows. The queries run on DuckDB, or on Athena when
`CELLGUARD_BACKEND=aws`. Logic lives in `pipelines.features`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from cellguard_airflow.assets import DAILY, FRAMES


@dag(
    schedule=[FRAMES],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={"dates": Param([], type="array", description="Dates to recompute (YYYY-MM-DD); empty: touched or pending dates")},
    tags=["cellguard", "features"],
)
def bms_features():
    @task
    def touched_dates() -> list[str] | None:
        from cellguard_airflow.events import dates_from_events

        context = get_current_context()
        requested = list(context["params"].get("dates") or [])
        return requested or dates_from_events(context.get("triggering_asset_events"))

    @task(outlets=[DAILY])
    def compute_daily(dates: list[str] | None, *, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.features.athena_runner import AthenaOutputMissing
        from pipelines.features.pipeline import compute_daily

        try:
            # The run id names Athena's temporary table and staging prefix, so a retry reuses (and first clears) them.
            summary = compute_daily(dates, run_id=get_current_context()["run_id"])
        except AthenaOutputMissing as error:  # the catalog cannot see the frames: a retry would get the same answer
            raise AirflowFailException(str(error)) from error
        outlet_events[DAILY].extra = {"dates": summary.computed, "daily_rows": summary.daily_rows}
        return summary.to_dict()

    @task
    def refresh_catalog(summary: dict) -> str:
        from pipelines.storage.catalog import refresh_catalog

        return refresh_catalog()

    refresh_catalog(compute_daily(touched_dates()))


bms_features()
