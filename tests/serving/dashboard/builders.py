"""A small hand-made lake whose every dashboard figure can be worked out by hand.

Three vehicles, daily and per-cell rows for 2026-03-01 … 03-20, batch predictions of the `full` model for as_of
03-20 and 03-21 (and `signals6` for 03-21), two alert episodes:

- DRIFTING: its range grows 10 mV a day (100 mV on 03-01 … 290 mV on 03-20), the BMS alarm from 03-15 on;
  suspect cell 7, whose deviation falls 2 mV a day (0 … −38 mV); risk 0.7 → 0.9; an alert episode since 03-20.
- HEALTHY: range 30 mV every day, no alarm, suspect cell 3; risk 0.25 → 0.2.
- QUIET: stopped reporting after 03-10 (range 40 mV), risk 0.4 → 0.6, an alert episode since 03-21.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from pipelines.features.window_signals import feature_columns
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA, PREDICTION_SCHEMA
from pipelines.storage import daily_zone
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import publish_batch
from pipelines.training import registry

DRIFTING, HEALTHY, QUIET = "LSVDSH00000000001", "LSVDSH00000000002", "LSVDSH00000000003"
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 20)
QUIET_LAST = date(2026, 3, 10)
ALARM_FROM = date(2026, 3, 15)
CELLS = 8
SUSPECT = {DRIFTING: 7, HEALTHY: 3, QUIET: 5}
THRESHOLD = 0.5
RISK = {date(2026, 3, 20): {DRIFTING: 0.7, HEALTHY: 0.25, QUIET: 0.4},
        date(2026, 3, 21): {DRIFTING: 0.9, HEALTHY: 0.2, QUIET: 0.6}}
CREATED = datetime(2026, 3, 21, 6, 0, tzinfo=UTC)
FULL_VERSION = "20260321t050000z-full-0123abcd"
SIGNALS6_VERSION = "20260321t050000z-signals6-4567cdef"
REASONS = [{"feature": "cell_range_max_mv_lag1", "contribution": 1.25, "value": 290.0},
           {"feature": "suspect_cell_z_7d_lag1", "contribution": 0.5, "value": -4.0}]
CURVES = {"roc": {"fpr": [0.0, 0.1, 0.4, 1.0], "tpr": [0.0, 0.6, 0.9, 1.0], "thresholds": [1.0, 0.8, 0.4, 0.0]},
          "pr": {"recall": [1.0, 0.9, 0.6, 0.0], "precision": [0.3, 0.55, 0.8, 1.0]}}
METRICS = {"average_precision": 0.6534, "roc_auc": 0.9251, "at_threshold": {"precision": 0.52, "recall": 0.98},
           "vehicles": {"vehicle_auc": 0.941, "faulty_caught": 12, "faulty_vehicles": 12, "healthy_alarmed": 17,
                        "healthy_vehicles": 38},
           "lead_time": {"median_lead_days": 2.5}, "false_alarms_per_1000_vehicle_days": 190.04, "windows": 700,
           "positive_windows": 145, "curves": CURVES}
BASELINE = {"average_precision": 0.551, "roc_auc": 0.762, "at_threshold": {"precision": 0.43, "recall": 0.66},
            "vehicles": {"vehicle_auc": 0.739, "faulty_caught": 9, "faulty_vehicles": 12, "healthy_alarmed": 16,
                         "healthy_vehicles": 38},
            "lead_time": {"median_lead_days": 1.5}, "false_alarms_per_1000_vehicle_days": 184.0, "windows": 700,
            "positive_windows": 145}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000b49444154789c63f80f04"
                    "0009fb03fdfb5e6b2b0000000049454e44ae426082")  # one white pixel


def day_range_mv(vin: str, day: date) -> float:
    """The vehicle's largest cell range that day."""
    return 100.0 + 10.0 * (day - FIRST).days if vin == DRIFTING else 30.0 if vin == HEALTHY else 40.0


def cell_deviation_mv(vin: str, day: date, cell: int) -> float:
    """A cell's mean deviation from the pack median that day: the suspect of DRIFTING falls 2 mV a day."""
    if vin == DRIFTING and cell == SUSPECT[DRIFTING]:
        return -2.0 * (day - FIRST).days
    return round((cell - 4.5) * 0.5, 2)


def write_daily(lake: Lake) -> None:
    """Daily and per-cell rows of the three vehicles."""
    for offset in range((LAST - FIRST).days + 1):
        day = FIRST + timedelta(days=offset)
        vins = [v for v in (DRIFTING, HEALTHY, QUIET) if v != QUIET or day <= QUIET_LAST]
        daily = [{"vin": vin, "dt": day, "cell_range_max_mv": day_range_mv(vin, day),
                  "cell_range_p95_mv": 0.8 * day_range_mv(vin, day), "cell_range_mean_mv": 0.5 * day_range_mv(vin, day),
                  "suspect_cell": SUSPECT[vin], "suspect_cell_dev_mv": cell_deviation_mv(vin, day, SUSPECT[vin]),
                  "cell_count": CELLS, "frame_count": 500, "alarm": vin == DRIFTING and day >= ALARM_FROM,
                  "alarm_frames": 10 if vin == DRIFTING and day >= ALARM_FROM else 0} for vin in vins]
        cells = [{"vin": vin, "dt": day, "cell_index": cell, "cell_dev_mv": cell_deviation_mv(vin, day, cell),
                  "cell_dev_rest_mv": 0.5 * cell_deviation_mv(vin, day, cell),
                  "cell_dev_load_mv": 1.5 * cell_deviation_mv(vin, day, cell), "valid_frames": 500}
                 for vin in vins for cell in range(1, CELLS + 1)]
        daily_zone.write_computed(lake, day, pa.Table.from_pylist(daily, DAILY_SCHEMA),
                                  pa.Table.from_pylist(cells, CELL_DAILY_SCHEMA))


def batch_rows(as_of: date, version: str, risks: dict[str, float], feature_set: str = "full") -> pa.Table:
    """One batch run's predictions."""
    return pa.Table.from_pylist([
        {"vin": vin, "as_of": as_of, "model_version": version, "feature_set": feature_set, "probability": risk,
         "alarm": risk >= THRESHOLD, "threshold": THRESHOLD, "suspect_cell": SUSPECT[vin],
         "reasons": REASONS if vin == DRIFTING else [], "source": "batch", "request_id": f"batch-{as_of}",
         "created_at": CREATED + timedelta(days=(as_of - LAST).days)} for vin, risk in risks.items()],
        PREDICTION_SCHEMA)


def write_predictions(lake: Lake, store: EventStore) -> None:
    """Batch predictions for 03-20 and 03-21, one API prediction, and the two alert episodes."""
    for as_of, risks in RISK.items():
        publish_batch(lake, store, as_of, FULL_VERSION, batch_rows(as_of, FULL_VERSION, risks))
    day = date(2026, 3, 21)
    publish_batch(lake, store, day, SIGNALS6_VERSION, batch_rows(day, SIGNALS6_VERSION, {DRIFTING: 0.3}, "signals6"))
    api = batch_rows(day, SIGNALS6_VERSION, {DRIFTING: 0.35}, "signals6").to_pylist()[0]
    store.record_predictions([{**api, "source": "api", "request_id": "client-1",
                               "created_at": CREATED + timedelta(hours=3)}])
    for vin, first in ((DRIFTING, date(2026, 3, 20)), (QUIET, date(2026, 3, 21))):
        store.record_alert(vin=vin, feature_set="full", first_as_of=first, model_version=FULL_VERSION,
                           probability=RISK[first][vin], threshold=THRESHOLD, suspect_cell=SUSPECT[vin],
                           created_at=CREATED)


def register_champion(lake: Lake, archive: bytes, feature_set: str = "full", metrics: dict | None = None,
                      baseline: dict | None = None, report: dict[str, bytes] | None = None) -> str:
    """Register an archive under a card with these metrics and make it the feature set's champion; its version."""
    at = datetime(2026, 3, 21, 5, 0, tzinfo=UTC)
    version = registry.new_version_id(at, feature_set, hashlib.sha256(archive).hexdigest())
    card = registry.model_card(
        version=version, feature_set=feature_set, feature_names=feature_columns(feature_set),
        training_data={"vehicles": 50, "daily_first": "2026-01-01", "daily_last": "2026-03-20"},
        split={"test_start": "2026-03-07"}, metrics=metrics if metrics is not None else METRICS,
        baseline_metrics=baseline, threshold=THRESHOLD, target_precision=0.5, params={"max_depth": 3}, created_at=at)
    registry.register(lake, version, archive, card, report)
    decision = registry.decide(feature_set, version, card["metrics"].get("average_precision"), None, None, 0.02,
                               {"start": "2026-03-07", "end": "2026-03-20"}, at)
    registry.record_decision(lake, decision)
    return version
