"""The `alerts` zone: the event store's alarm episodes copied to the lake, one object per first_as_of date.

    alerts/dt=D/alerts.parquet   every episode that started at D (ALERT_SCHEMA), as the store holds it now

The event store is the system of record (an episode is recorded, then notified, and `notified_at` changes later);
this zone is the copy SQL readers get through the catalog's `alerts` view. `publish_alerts` rewrites the dates it
is given from the store, so running it again changes nothing and a date whose episodes are gone loses its object.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from pipelines.schema import ALERT_SCHEMA
from pipelines.storage.daily_zone import days_between
from pipelines.storage.event_store import PredictionEventStore
from pipelines.storage.lake import Lake

PREFIX = "alerts"
_SORT = [("vin", "ascending"), ("feature_set", "ascending")]


def partition_key(first_as_of: date) -> str:
    """`alerts/dt=YYYY-MM-DD/alerts.parquet`."""
    return f"{PREFIX}/dt={first_as_of.isoformat()}/alerts.parquet"


def publish_alerts(lake: Lake, store: PredictionEventStore, first: date, last: date) -> list[str]:
    """Copy the episodes that started in [first, last] from the store to the lake; returns the keys written."""
    episodes = store.alerts_between(first, last)
    by_day: dict[date, list[dict]] = {}
    for episode in episodes:
        by_day.setdefault(episode["first_as_of"], []).append({name: episode[name] for name in ALERT_SCHEMA.names})
    written = []
    for day in days_between(first, last):
        key = partition_key(day)
        rows = by_day.get(day)
        if rows:
            lake.write_parquet(key, pa.Table.from_pylist(rows, ALERT_SCHEMA).sort_by(_SORT))
            written.append(key)
        else:
            lake.delete(key)
    return written
