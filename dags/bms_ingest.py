"""
### bms_ingest

Every five minutes: wait for landing objects that the manifest has not seen in their current version,
ingest them (read → map → check → de-duplicate → Great Expectations → frames / quarantine / manifest),
refresh the catalog, and announce asset **frames** with the touched dates in the event's extra.

Logic lives in `pipelines.ingest`; this file only wires it. Re-running is safe: processed objects are skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import PokeReturnValue, dag, task
from cellguard_airflow.assets import FRAMES


@dag(
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["cellguard", "ingest"],
)
def bms_ingest():
    @task.sensor(poke_interval=30, timeout=timedelta(minutes=4), mode="poke", soft_fail=True)
    def wait_for_landing_objects() -> PokeReturnValue:
        from pipelines.ingest import pending_landing_keys

        keys = pending_landing_keys()
        return PokeReturnValue(is_done=bool(keys), xcom_value=keys)

    @task(outlets=[FRAMES])
    def ingest(keys: list[str], *, outlet_events=None) -> dict:
        from pipelines.ingest import ingest_pending

        summary = ingest_pending(keys=keys)
        counts = summary.counts()
        outlet_events[FRAMES].extra = {"dates": summary.touched_dates, "run_id": summary.run_id, **counts}
        return counts

    @task
    def refresh_catalog(counts: dict) -> str:
        from pipelines.storage.catalog import refresh_catalog

        return refresh_catalog()

    refresh_catalog(ingest(wait_for_landing_objects()))


bms_ingest()
