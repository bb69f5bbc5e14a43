"""A small fleet lake written with the zones' own writers, and the values the dashboard's charts must show for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from pipelines.schema import ALERT_SCHEMA, CELL_DAILY_SCHEMA, DAILY_SCHEMA, PREDICTION_SCHEMA
from pipelines.storage import alerts_zone, daily_zone, predictions_zone
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake

VINS = ("LSVAB1234CD000001", "LSVAB1234CD000002", "LSVAB1234CD000003", "LSVAB1234CD000004")
FIRST_DAY = date(2026, 3, 1)
THRESHOLD = 0.5


@dataclass(frozen=True)
class FleetFixture:
    """What was written: daily rows, predictions and alarm episodes, as plain dicts."""

    daily: list[dict]
    predictions: list[dict]
    alerts: list[dict]


def rest_p95_mv(vehicle: int, day: int) -> float:
    """The last vehicle drifts 60 mV a day at rest; the others stay flat."""
    return 40.0 + 10 * vehicle + (60.0 * day if vehicle == len(VINS) - 1 else 0.0)


def daily_rows(day_index: int, vehicles: int = len(VINS)) -> list[dict]:
    """One daily row per vehicle for FIRST_DAY + day_index; the load range is twice the rest range."""
    day = FIRST_DAY + timedelta(days=day_index)
    rows = []
    for vehicle, vin in enumerate(VINS[:vehicles]):
        rest = rest_p95_mv(vehicle, day_index)
        row = dict.fromkeys(DAILY_SCHEMA.names)
        row.update(vin=vin, dt=day, cell_range_rest_p95_mv=rest, cell_range_load_p95_mv=2 * rest,
                   suspect_cell=vehicle + 1, frame_count=100, alarm=2 * rest >= 300.0,
                   alarm_frames=10 if 2 * rest >= 300.0 else 0)
        rows.append(row)
    return rows


def probability(vehicle: int, as_of_index: int) -> float:
    """Exact binary fractions, so values compare equal after any round trip."""
    return min(0.125 * (vehicle + 1) + 0.0625 * as_of_index * (vehicle == len(VINS) - 1), 0.9375)


def batch_rows(as_of: date, as_of_index: int, model_version: str) -> list[dict]:
    """One batch run's predictions for as_of, made at 02:00 UTC that day."""
    made = datetime(as_of.year, as_of.month, as_of.day, 2, tzinfo=UTC)
    return [{"vin": vin, "as_of": as_of, "model_version": model_version, "feature_set": "full",
             "probability": probability(vehicle, as_of_index), "alarm": probability(vehicle, as_of_index) >= THRESHOLD,
             "threshold": THRESHOLD, "suspect_cell": vehicle + 1, "reasons": [], "source": "batch",
             "request_id": f"batch-{as_of.isoformat()}", "created_at": made}
            for vehicle, vin in enumerate(VINS)]


def alert_episodes(predictions: list[dict]) -> list[dict]:
    """The episodes batch inference would raise: each vehicle's first alarm; the first one already notified."""
    first: dict[str, dict] = {}
    for row in sorted(predictions, key=lambda r: (r["as_of"], r["created_at"])):
        if row["alarm"] and row["vin"] not in first:
            first[row["vin"]] = row
    episodes = []
    for index, row in enumerate(sorted(first.values(), key=lambda r: (r["as_of"], r["vin"]))):
        made = row["created_at"] + timedelta(minutes=5)
        episodes.append({"vin": row["vin"], "feature_set": row["feature_set"], "first_as_of": row["as_of"],
                         "model_version": row["model_version"], "probability": row["probability"],
                         "threshold": row["threshold"], "suspect_cell": row["suspect_cell"], "created_at": made,
                         "notified_at": made + timedelta(seconds=2) if index == 0 else None,
                         "channel": "webhook" if index == 0 else None})
    return episodes


def write_fleet(lake: Lake, store: EventStore, days: int = 5, switch_after: int = 3) -> FleetFixture:
    """Daily rows for `days` days; batch predictions for the day after each (as_of), the first `switch_after` by
    model v1 and the rest by v2; one later API prediction for the first vehicle on the newest as_of; the alarm
    episodes recorded in the event store and published to the alerts zone."""
    daily, predictions = [], []
    for day_index in range(days):
        rows = daily_rows(day_index)
        daily_zone.write_computed(lake, rows[0]["dt"], pa.Table.from_pylist(rows, DAILY_SCHEMA),
                                  CELL_DAILY_SCHEMA.empty_table())
        daily += rows
        as_of = rows[0]["dt"] + timedelta(days=1)
        version = "v1-full" if day_index < switch_after else "v2-full"
        batch = batch_rows(as_of, day_index, version)
        predictions_zone.write_batch(lake, as_of, version, pa.Table.from_pylist(batch, PREDICTION_SCHEMA))
        predictions += batch
    newest = predictions[-1]
    api = {**predictions[-len(VINS)], "source": "api", "request_id": "req-api-1", "probability": 0.75,
           "alarm": True, "created_at": newest["created_at"] + timedelta(hours=3)}
    predictions_zone.write_rows(lake, pa.Table.from_pylist([api], PREDICTION_SCHEMA))
    predictions.append(api)

    alerts = alert_episodes(predictions)
    for episode in alerts:
        store.record_alert(**{k: episode[k] for k in ALERT_SCHEMA.names if k not in ("notified_at", "channel")})
        if episode["notified_at"]:
            store.mark_notified(episode["vin"], episode["feature_set"], episode["first_as_of"],
                                episode["notified_at"], episode["channel"])
    alerts_zone.publish_alerts(lake, store, FIRST_DAY, newest["as_of"])
    return FleetFixture(daily=daily, predictions=predictions, alerts=alerts)
