"""The event store's contract, run against each implementation (tests/storage/test_event_store.py for SQL,
tests/aws/test_dynamodb_event_store.py for DynamoDB on moto): the same rows, the same expected values.

A test module subclasses `EventStoreContract` as `Test…`, gives a `store` fixture and says how to read a stored
row's `flushed_at` (which no reader of the protocol needs, so each store's tests reach it their own way).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage.event_store import PredictionEventStore, PredictionKey, prediction_keys

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
DAY = date(2026, 1, 5)
MADE = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
MODEL = "20260101t000000z-full-ab12cd34"


def prediction(vin: str = VIN_A, as_of: date = DAY, request_id: str = "req-1", **changes) -> dict:
    """One prediction as the API makes it."""
    row = {"vin": vin, "as_of": as_of, "model_version": MODEL, "feature_set": "full",
           "probability": 0.72, "alarm": True, "threshold": 0.5, "suspect_cell": 17,
           "reasons": [{"feature": "suspect_cell_z_lag1", "contribution": 1.25, "value": 4.5},
                       {"feature": "cell_range_max_mv_lag3", "contribution": -0.5, "value": None}],
           "source": "api", "request_id": request_id, "created_at": MADE}
    return row | changes


class EventStoreContract:
    """What every PredictionEventStore does; subclasses provide the `store` fixture."""

    def flushed_at(self, store: PredictionEventStore, request_ids: Iterable[str]) -> dict[str, datetime | None]:
        """Each of VIN_A's DAY predictions' flushed_at stamp, by request id."""
        raise NotImplementedError

    def test_recording_a_key_twice_keeps_the_first_row(self, store: PredictionEventStore) -> None:
        assert store.record_predictions([prediction()]) == 1
        assert store.record_predictions([prediction(probability=0.1, alarm=False)]) == 0  # same key: unchanged
        assert store.record_predictions([prediction(request_id="req-2", probability=0.3)]) == 1  # another request
        rows = store.predictions_for_vin(VIN_A)
        # Same as_of and time made: the later recorded comes first.
        assert [(r["request_id"], r["probability"], r["alarm"]) for r in rows] == [("req-2", 0.3, True), ("req-1", 0.72, True)]

    def test_a_batch_with_repeated_and_known_keys_counts_only_new_rows(self, store: PredictionEventStore) -> None:
        store.record_predictions([prediction(request_id="a")])
        batch = [prediction(request_id=r) for r in ("a", "b", "b", "c")]
        assert store.record_predictions(batch) == 2
        assert sorted(r["request_id"] for r in store.predictions_for_vin(VIN_A)) == ["a", "b", "c"]

    def test_rows_read_back_exactly_as_the_contract(self, store: PredictionEventStore) -> None:
        made = datetime(2026, 1, 6, 2, 0, 1, 234567, tzinfo=UTC)  # microseconds: the contract keeps milliseconds
        table = pa.Table.from_pylist([prediction(created_at=made, suspect_cell=None)])  # inferred types, not the contract's
        assert store.record_predictions(table) == 1
        unflushed = store.unflushed()
        assert unflushed.schema == PREDICTION_SCHEMA
        row = unflushed.to_pylist()[0]
        assert row["created_at"] == datetime(2026, 1, 6, 2, 0, 1, 234000, tzinfo=UTC)
        assert (row["vin"], row["as_of"], row["suspect_cell"], row["probability"]) == (VIN_A, DAY, None, 0.72)
        assert row["reasons"] == [{"feature": "suspect_cell_z_lag1", "contribution": 1.25, "value": 4.5},
                                  {"feature": "cell_range_max_mv_lag3", "contribution": -0.5, "value": None}]
        nan_row = prediction(request_id="nan", reasons=[{"feature": "total_voltage_lag2", "contribution": 0.1,
                                                          "value": float("nan")}])  # a missing day's feature value
        store.record_predictions([nan_row])
        stored = [r for r in store.predictions_for_vin(VIN_A) if r["request_id"] == "nan"][0]
        assert math.isnan(stored["reasons"][0]["value"]) and stored["created_at"] == MADE
        exact = 0.1 + 0.2  # 0.30000000000000004: a DynamoDB number must not round it
        store.record_predictions([prediction(request_id="exact", probability=exact, threshold=1 / 3)])
        stored = [r for r in store.predictions_for_vin(VIN_A) if r["request_id"] == "exact"][0]
        assert (stored["probability"], stored["threshold"]) == (exact, 1 / 3)

    @pytest.mark.parametrize(("changes", "message"), [
        ({"created_at": None}, "prediction row 1: created_at is missing"),
        ({"source": "web"}, r"prediction row 1: source 'web' is not one of \('batch', 'api'\)"),
        ({"probability": 1.5}, "prediction row 1: probability = 1.5 is not between 0 and 1"),
        ({"probability": float("nan")}, "prediction row 1: probability = nan is not between 0 and 1"),
        ({"as_of": "yesterday"}, "prediction rows do not match the contract"),
    ])
    def test_rows_breaking_the_contract_are_refused_with_the_reason(self, store: PredictionEventStore, changes: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            store.record_predictions([prediction(**changes)])
        assert store.unflushed().num_rows == 0

    def test_unflushed_oldest_first_until_marked(self, store: PredictionEventStore) -> None:
        for request_id in ("r1", "r2", "r3"):
            store.record_predictions([prediction(request_id=request_id)])
        assert store.unflushed()["request_id"].to_pylist() == ["r1", "r2", "r3"]
        first_two = store.unflushed(limit=2)
        assert first_two["request_id"].to_pylist() == ["r1", "r2"]
        at = datetime(2026, 1, 6, 3, 0, tzinfo=UTC)
        store.mark_flushed(prediction_keys(first_two), at)
        assert store.unflushed()["request_id"].to_pylist() == ["r3"]
        store.mark_flushed(prediction_keys(first_two), at + timedelta(hours=1))  # a retried flush keeps the first stamp
        store.mark_flushed([], at)
        assert self.flushed_at(store, ["r1", "r2", "r3"]) == {"r1": at, "r2": at, "r3": None}
        store.mark_flushed([PredictionKey(VIN_A, DAY, "20260101t000000z-full-ab12cd34", "api", "r3")], at)
        assert store.unflushed().num_rows == 0
        # A key never recorded is not created by stamping it.
        store.mark_flushed([PredictionKey(VIN_B, DAY, "v0", "api", "ghost")], at)
        assert store.predictions_for_vin(VIN_B) == []

    def test_predictions_by_vehicle_and_by_date(self, store: PredictionEventStore) -> None:
        store.record_predictions([
            prediction(as_of=date(2026, 1, 3), request_id="b1", source="batch", alarm=False, probability=0.2),
            prediction(as_of=date(2026, 1, 5), request_id="b2", source="batch"),
            prediction(as_of=date(2026, 1, 4), request_id="a1"),
            prediction(vin=VIN_B, as_of=date(2026, 1, 4), request_id="a2", alarm=False, probability=0.1),
        ])
        assert [r["as_of"] for r in store.predictions_for_vin(VIN_A)] == [date(2026, 1, 5), date(2026, 1, 4), date(2026, 1, 3)]
        assert [r["request_id"] for r in store.predictions_for_vin(VIN_A, limit=1)] == ["b2"]
        assert store.predictions_for_vin("LNOPREDICTIONS000") == []
        between = store.predictions_between(date(2026, 1, 4), date(2026, 1, 5))
        assert [(r["vin"], r["as_of"], r["request_id"]) for r in between] == [
            (VIN_B, date(2026, 1, 4), "a2"), (VIN_A, date(2026, 1, 4), "a1"), (VIN_A, date(2026, 1, 5), "b2")]
        alarms = store.predictions_between(date(2026, 1, 1), date(2026, 1, 31), alarm_only=True)
        assert [r["request_id"] for r in alarms] == ["a1", "b2"]
        assert store.predictions_between(date(2026, 1, 6), date.max) == []

    def test_alarm_episodes_are_stored_once_and_notified_once(self, store: PredictionEventStore) -> None:
        episode = {"vin": VIN_A, "feature_set": "full", "model_version": "v1", "probability": 0.8, "threshold": 0.5}
        assert store.record_alert(**episode, first_as_of=date(2026, 1, 5), suspect_cell=17, created_at=MADE) is True
        assert store.record_alert(**episode | {"probability": 0.9}, first_as_of=date(2026, 1, 5)) is False
        assert store.record_alert(**episode, first_as_of=date(2026, 1, 20)) is True  # a later, new episode
        assert store.record_alert(**episode | {"feature_set": "signals6"}, first_as_of=date(2026, 1, 5)) is True
        assert store.record_alert(**episode | {"vin": VIN_B}, first_as_of=date(2026, 1, 7)) is True

        latest = store.open_alert(VIN_A, "full")
        assert (latest["first_as_of"], latest["notified_at"], latest["channel"]) == (date(2026, 1, 20), None, None)
        assert store.open_alert(VIN_B, "signals6") is None
        assert store.open_alert(VIN_A, "full", on_or_before=date(2026, 1, 19))["first_as_of"] == date(2026, 1, 5)
        assert store.open_alert(VIN_A, "full", on_or_before=date(2026, 1, 20))["first_as_of"] == date(2026, 1, 20)
        assert store.open_alert(VIN_A, "full", on_or_before=date(2026, 1, 4)) is None

        at = datetime(2026, 1, 6, 4, 0, tzinfo=UTC)
        assert store.mark_notified(VIN_A, "full", date(2026, 1, 5), at, "email") is True
        assert store.mark_notified(VIN_A, "full", date(2026, 1, 5), at + timedelta(hours=1), "slack") is False
        assert store.mark_notified(VIN_A, "full", date(2026, 2, 1), at, "email") is False  # no such episode
        assert store.open_alert(VIN_A, "full")["first_as_of"] == date(2026, 1, 20)  # stamping created nothing

        january_first_week = store.alerts_between(date(2026, 1, 1), date(2026, 1, 7))
        assert [(a["vin"], a["feature_set"], a["first_as_of"]) for a in january_first_week] == [
            (VIN_A, "full", date(2026, 1, 5)), (VIN_A, "signals6", date(2026, 1, 5)), (VIN_B, "full", date(2026, 1, 7))]
        first = january_first_week[0]
        assert (first["probability"], first["suspect_cell"], first["created_at"], first["notified_at"], first["channel"]) == (
            0.8, 17, MADE, at, "email")
        assert sorted(first) == sorted(["vin", "feature_set", "first_as_of", "model_version", "probability", "threshold",
                                        "suspect_cell", "created_at", "notified_at", "channel"])  # the SQL store's keys
        assert len(store.alerts_between(date(2026, 1, 1), date.max)) == 4  # alerts.py asks up to date.max

    def test_api_predictions_find_a_vehicle_dates_rows_by_request_id_oldest_first(self, store: PredictionEventStore) -> None:
        store.record_predictions([prediction(request_id="r1"), prediction(request_id="r2", probability=0.3),
                                  prediction(request_id="r1", model_version="v2", probability=0.9),
                                  prediction(request_id="r1", source="batch"),
                                  prediction(request_id="r1", as_of=date(2026, 1, 4)),
                                  prediction(request_id="r1", vin=VIN_B)])
        found = store.api_predictions([(VIN_A, DAY, "r1"), (VIN_A, DAY, "r9")])
        assert [(r["request_id"], r["model_version"], r["as_of"], r["source"]) for r in found] == [
            ("r1", "20260101t000000z-full-ab12cd34", DAY, "api"), ("r1", "v2", DAY, "api")]
        both = store.api_predictions([(VIN_A, DAY, "r2"), (VIN_B, DAY, "r1")])  # not (VIN_A, r1) nor (VIN_B, r2)
        assert [(r["vin"], r["request_id"]) for r in both] == [(VIN_A, "r2"), (VIN_B, "r1")]
        assert store.api_predictions([]) == []
