"""pipelines/storage/dynamodb_event_store.py against moto: the SQL store's behavioural checks, on DynamoDB.

Each test below repeats one of tests/storage/test_event_store.py with the same rows and the same expected values,
so both stores keep one contract. moto keeps DynamoDB's state, conditions and transactions, so these are real
reads after real writes (moto's GSIs are consistent at once; AWS's are eventually consistent, see the module).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.config import Settings, load_settings
from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage.dynamodb_event_store import SHARDS, DynamoDbEventStore, shard_of, table_definitions
from pipelines.storage.event_store import EventStore, PredictionKey, prediction_keys
from pipelines.storage.event_stores import open_event_store

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
DAY = date(2026, 1, 5)
MADE = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)


def prediction(vin: str = VIN_A, as_of: date = DAY, request_id: str = "req-1", **changes) -> dict:
    """One prediction as the API makes it (the SQL store's tests use the same)."""
    row = {"vin": vin, "as_of": as_of, "model_version": "20260101t000000z-full-ab12cd34", "feature_set": "full",
           "probability": 0.72, "alarm": True, "threshold": 0.5, "suspect_cell": 17,
           "reasons": [{"feature": "suspect_cell_z_lag1", "contribution": 1.25, "value": 4.5},
                       {"feature": "cell_range_max_mv_lag3", "contribution": -0.5, "value": None}],
           "source": "api", "request_id": request_id, "created_at": MADE}
    return row | changes


@pytest.fixture
def store(aws_settings: Settings) -> DynamoDbEventStore:
    return DynamoDbEventStore.from_settings(aws_settings)


def flushed_at(store: DynamoDbEventStore, request_ids: list[str], vin: str = VIN_A) -> dict[str, datetime | None]:
    return {r: store.flushed_at(PredictionKey(vin, DAY, "20260101t000000z-full-ab12cd34", "api", r)) for r in request_ids}


def test_tables_keys_and_indexes(store: DynamoDbEventStore, aws_settings: Settings, aws_client) -> None:
    dynamodb = aws_client("dynamodb")
    prefix = aws_settings.dynamodb_table_prefix
    described = dynamodb.describe_table(TableName=f"{prefix}predictions")["Table"]
    assert described["KeySchema"] == [{"AttributeName": "vin", "KeyType": "HASH"},
                                      {"AttributeName": "prediction_key", "KeyType": "RANGE"}]
    assert {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in described["GlobalSecondaryIndexes"]} == {
        "by_as_of": ["day_shard", "day_sort"], "unflushed": ["unflushed_shard", "recorded"]}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    alerts = dynamodb.describe_table(TableName=f"{prefix}alerts")["Table"]
    assert [k["AttributeName"] for k in alerts["KeySchema"]] == ["episode", "first_as_of"]
    assert sorted(table_definitions(prefix)) == [f"{prefix}alerts", f"{prefix}predictions"]
    DynamoDbEventStore.from_settings(aws_settings)  # opening again finds the tables: nothing to create


def test_recording_a_key_twice_keeps_the_first_row(store: DynamoDbEventStore) -> None:
    assert store.record_predictions([prediction()]) == 1
    assert store.record_predictions([prediction(probability=0.1, alarm=False)]) == 0  # same key: unchanged
    assert store.record_predictions([prediction(request_id="req-2", probability=0.3)]) == 1  # another request
    rows = store.predictions_for_vin(VIN_A)
    # Same as_of and time made: the later recorded comes first.
    assert [(r["request_id"], r["probability"], r["alarm"]) for r in rows] == [("req-2", 0.3, True), ("req-1", 0.72, True)]


def test_a_batch_with_repeated_and_known_keys_counts_only_new_rows(store: DynamoDbEventStore) -> None:
    store.record_predictions([prediction(request_id="a")])
    batch = [prediction(request_id=r) for r in ("a", "b", "b", "c")]
    assert store.record_predictions(batch) == 2
    assert sorted(r["request_id"] for r in store.predictions_for_vin(VIN_A)) == ["a", "b", "c"]


def test_a_batch_larger_than_one_transaction_with_known_keys(store: DynamoDbEventStore) -> None:
    """150 rows: two transactions, the second cancelled by 20 known keys and sent again without them."""
    known = [prediction(vin=f"LSVAB1234CD5{i:05d}", request_id="b") for i in range(110, 130)]
    assert store.record_predictions(known) == 20
    rows = [prediction(vin=f"LSVAB1234CD5{i:05d}", request_id="b", source="batch") for i in range(150)]
    assert store.record_predictions(rows) == 150  # another source: all new
    again = [prediction(vin=f"LSVAB1234CD5{i:05d}", request_id="b", probability=0.01) for i in range(150)]
    assert store.record_predictions(again) == 130
    kept = {r["source"]: r["probability"] for r in store.predictions_for_vin("LSVAB1234CD500120")}
    assert kept == {"api": 0.72, "batch": 0.72}  # the first api row kept
    assert sorted(r["probability"] for r in store.predictions_for_vin("LSVAB1234CD500140")) == [0.01, 0.72]
    assert store.unflushed().num_rows == 300


def test_rows_read_back_exactly_as_the_contract(store: DynamoDbEventStore) -> None:
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
def test_rows_breaking_the_contract_are_refused_with_the_reason(store: DynamoDbEventStore, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.record_predictions([prediction(**changes)])
    assert store.unflushed().num_rows == 0


def test_eight_threads_writing_at_once_lose_nothing(store: DynamoDbEventStore) -> None:
    """One row per call, as API workers record them (each a conditional PutItem).

    Racing multi-row calls cannot be tested on moto: it rolls a cancelled transaction back by restoring a copy of
    the whole table taken when the transaction started, erasing other clients' writes made meanwhile."""
    start = threading.Barrier(8)
    new_counts: list[int] = []
    errors: list[BaseException] = []

    def api_worker(worker: int) -> None:
        try:
            start.wait()
            for i in range(10):
                new_counts.append(store.record_predictions([prediction(vin=f"LSVAB1234CD5{worker:05d}",
                                                                       request_id=f"w{worker}-{i}")]))
                new_counts.append(store.record_predictions([prediction(request_id=f"shared-{i}")]))  # all race
                if i % 5 == 0:
                    store.predictions_for_vin(VIN_A, limit=5)  # readers between the writes
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=api_worker, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(new_counts) == 8 * 10 + 10  # each worker's own rows, and each shared key exactly once
    assert store.unflushed().num_rows == 90
    assert len(store.predictions_for_vin(VIN_A, limit=1000)) == 10
    assert len(store.predictions_for_vin("LSVAB1234CD500007", limit=1000)) == 10


def test_unflushed_oldest_first_until_marked(store: DynamoDbEventStore) -> None:
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
    assert flushed_at(store, ["r1", "r2", "r3"]) == {"r1": at, "r2": at, "r3": None}
    store.mark_flushed([PredictionKey(VIN_A, DAY, "20260101t000000z-full-ab12cd34", "api", "r3")], at)
    assert store.unflushed().num_rows == 0
    # A key never recorded is not created by stamping it.
    store.mark_flushed([PredictionKey(VIN_B, DAY, "v0", "api", "ghost")], at)
    assert store.predictions_for_vin(VIN_B) == []


def test_unflushed_merges_the_shards_in_arrival_order(store: DynamoDbEventStore) -> None:
    vins = [f"LSVAB1234CD5{i:05d}" for i in range(40)]
    for i, vin in enumerate(vins):
        store.record_predictions([prediction(vin=vin, request_id=f"r{i:02d}")])
    assert {shard_of(vin) for vin in vins} == {f"s{i}" for i in range(SHARDS)}  # the rows spread over every shard
    assert store.unflushed(limit=7)["request_id"].to_pylist() == [f"r{i:02d}" for i in range(7)]
    assert store.unflushed()["request_id"].to_pylist() == [f"r{i:02d}" for i in range(40)]


def test_predictions_by_vehicle_and_by_date(store: DynamoDbEventStore) -> None:
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


def test_a_vehicles_latest_predictions_across_many_dates(store: DynamoDbEventStore) -> None:
    """The limit falls inside a date with several rows: all of that date are read before the newest are chosen."""
    rows = [prediction(as_of=DAY - timedelta(days=d), request_id=f"d{d}-{k}", created_at=MADE + timedelta(minutes=k))
            for d in range(5) for k in (2, 0, 1)]
    store.record_predictions(rows)
    latest = store.predictions_for_vin(VIN_A, limit=5)
    assert [r["request_id"] for r in latest] == ["d0-2", "d0-1", "d0-0", "d1-2", "d1-1"]


def test_alarm_episodes_are_stored_once_and_notified_once(store: DynamoDbEventStore) -> None:
    episode = {"vin": VIN_A, "feature_set": "full", "model_version": "v1", "probability": 0.8, "threshold": 0.5}
    assert store.record_alert(**episode, first_as_of=date(2026, 1, 5), suspect_cell=17, created_at=MADE) is True
    assert store.record_alert(**episode | {"probability": 0.9}, first_as_of=date(2026, 1, 5)) is False
    assert store.record_alert(**episode, first_as_of=date(2026, 1, 20)) is True  # a later, new episode
    assert store.record_alert(**episode | {"feature_set": "signals6"}, first_as_of=date(2026, 1, 5)) is True
    assert store.record_alert(**episode | {"vin": VIN_B}, first_as_of=date(2026, 1, 7)) is True

    latest = store.open_alert(VIN_A, "full")
    assert (latest["first_as_of"], latest["notified_at"], latest["channel"]) == (date(2026, 1, 20), None, None)
    assert store.open_alert(VIN_B, "signals6") is None

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


def test_both_stores_answer_alike(store: DynamoDbEventStore, tmp_path: Path) -> None:
    """The same calls on the SQL store and on DynamoDB give equal answers."""
    sql = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    rows = [prediction(request_id="a"), prediction(request_id="a", probability=0.2),
            prediction(vin=VIN_B, as_of=date(2026, 1, 4), request_id="b", alarm=False, probability=0.1, reasons=None)]
    answers = Counter()
    for each in (sql, store):
        answers[each.record_predictions(rows)] += 1
        each.record_alert(vin=VIN_A, feature_set="full", first_as_of=DAY, model_version="v1", probability=0.8,
                          threshold=0.5, created_at=MADE)
    assert answers == Counter({2: 2})
    assert sql.predictions_for_vin(VIN_A) == store.predictions_for_vin(VIN_A)
    assert sql.predictions_between(date(2026, 1, 1), DAY) == store.predictions_between(date(2026, 1, 1), DAY)
    assert sql.unflushed().equals(store.unflushed())
    assert sql.open_alert(VIN_A, "full") == store.open_alert(VIN_A, "full")
    assert sql.alerts_between(DAY, DAY) == store.alerts_between(DAY, DAY)
    keys = [(VIN_A, DAY, "a"), (VIN_A, DAY, "b"), (VIN_B, date(2026, 1, 4), "b")]
    assert sql.api_predictions(keys) == store.api_predictions(keys)
    assert [r["probability"] for r in store.api_predictions([(VIN_A, DAY, "a")])] == [0.72]  # the first one stands
    sql.close()


def test_open_event_store_follows_the_backend(aws_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_event_store()
    assert isinstance(store, DynamoDbEventStore)
    assert store.predictions_table == f"{aws_settings.dynamodb_table_prefix}predictions"
    monkeypatch.setenv("CELLGUARD_BACKEND", "local")
    local = open_event_store(load_settings())
    assert isinstance(local, EventStore) and local.url == load_settings().event_store_url
    local.close()


class ConflictingTransactions:
    """The moto client, except that the first `conflicts` transactions are cancelled by a conflict.

    AWS cancels a transaction so when another transaction holds one of its items; moto never does."""

    def __init__(self, client, conflicts: int):
        self._client, self.remaining, self.attempts = client, conflicts, 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def transact_write_items(self, **arguments):
        self.attempts += 1
        if self.remaining:
            self.remaining -= 1
            reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}] + [
                {"Code": "None"}] * (len(arguments["TransactItems"]) - 1)
            raise self._client.exceptions.TransactionCanceledException(
                {"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                 "CancellationReasons": reasons}, "TransactWriteItems")
        return self._client.transact_write_items(**arguments)


def test_a_transaction_cancelled_by_a_conflict_is_retried(store: DynamoDbEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipelines.storage.dynamodb_event_store.time.sleep", lambda seconds: None)
    store.client = ConflictingTransactions(store.client, conflicts=2)
    assert store.record_predictions([prediction(request_id=r) for r in ("a", "b", "c")]) == 3
    assert store.client.attempts == 3
    assert sorted(r["request_id"] for r in store.predictions_for_vin(VIN_A)) == ["a", "b", "c"]

    store.client = ConflictingTransactions(store.client._client, conflicts=100)
    monkeypatch.setattr("pipelines.storage.dynamodb_event_store.MAX_CONFLICT_RETRIES", 3)
    with pytest.raises(Exception, match="TransactionCanceledException") as error:
        store.record_predictions([prediction(request_id=r) for r in ("d", "e")])
    assert error.value.response["CancellationReasons"][0]["Code"] == "TransactionConflict"
    assert store.client.attempts == 4  # the first try and three retries, then the error reaches the caller
    assert len(store.predictions_for_vin(VIN_A)) == 3


def test_the_prediction_buffer_on_s3_and_dynamodb(aws_settings: Settings, store: DynamoDbEventStore) -> None:
    """The API's path on AWS: recorded in DynamoDB, flushed to the S3 lake, stamped; a restart writes what was left."""
    from pipelines.storage.lake import Lake
    from pipelines.storage.predictions_zone import PredictionBuffer, read_predictions

    lake = Lake.from_settings(aws_settings)
    with PredictionBuffer(lake, store, max_rows=2, max_seconds=60) as buffer:
        assert buffer.add([prediction(request_id="r1")]) == 1
        assert buffer.add([prediction(request_id="r1")]) == 0  # a replay is not buffered twice
        assert buffer.add([prediction(request_id="r2")]) == 1  # the second row fills the buffer: flushed
        assert buffer.pending_rows == 0
    assert read_predictions(lake)["request_id"].to_pylist() == ["r1", "r2"]
    assert store.unflushed().num_rows == 0 and flushed_at(store, ["r1"])["r1"] is not None

    store.record_predictions([prediction(request_id="crashed")])  # recorded by a process that stopped before flushing
    with PredictionBuffer(lake, store, max_rows=100, max_seconds=60) as restarted:
        assert restarted.recover() == 1
    assert read_predictions(lake)["request_id"].to_pylist() == ["crashed", "r1", "r2"]
    assert store.unflushed().num_rows == 0
