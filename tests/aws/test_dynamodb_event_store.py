"""pipelines/storage/dynamodb_event_store.py against moto: the event store's contract, and what is DynamoDB's own.

`TestDynamoDbEventStore` runs tests/storage/event_store_contract.py, the checks the SQL store passes too, with the
same rows and expected values. moto keeps DynamoDB's state, conditions and transactions, so these are real reads
after real writes (moto's GSIs are consistent at once; AWS's are eventually consistent, see the module).
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from storage.event_store_contract import DAY, MADE, MODEL, VIN_A, VIN_B, EventStoreContract, prediction

from pipelines.config import Settings, load_settings
from pipelines.storage.dynamodb_event_store import SHARDS, DynamoDbEventStore, shard_of, table_definitions
from pipelines.storage.event_store import EventStore, PredictionKey
from pipelines.storage.event_stores import open_event_store


@pytest.fixture
def store(aws_settings: Settings) -> DynamoDbEventStore:
    return DynamoDbEventStore.from_settings(aws_settings)


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


def test_unflushed_merges_the_shards_in_arrival_order(store: DynamoDbEventStore) -> None:
    vins = [f"LSVAB1234CD5{i:05d}" for i in range(40)]
    for i, vin in enumerate(vins):
        store.record_predictions([prediction(vin=vin, request_id=f"r{i:02d}")])
    assert {shard_of(vin) for vin in vins} == {f"s{i}" for i in range(SHARDS)}  # the rows spread over every shard
    assert store.unflushed(limit=7)["request_id"].to_pylist() == [f"r{i:02d}" for i in range(7)]
    assert store.unflushed()["request_id"].to_pylist() == [f"r{i:02d}" for i in range(40)]


def test_a_vehicles_latest_predictions_across_many_dates(store: DynamoDbEventStore) -> None:
    """The limit falls inside a date with several rows: all of that date are read before the newest are chosen."""
    rows = [prediction(as_of=DAY - timedelta(days=d), request_id=f"d{d}-{k}", created_at=MADE + timedelta(minutes=k))
            for d in range(5) for k in (2, 0, 1)]
    store.record_predictions(rows)
    latest = store.predictions_for_vin(VIN_A, limit=5)
    assert [r["request_id"] for r in latest] == ["d0-2", "d0-1", "d0-0", "d1-2", "d1-1"]


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
    assert store.unflushed().num_rows == 0 and store.flushed_at(PredictionKey(VIN_A, DAY, MODEL, "api", "r1")) is not None

    store.record_predictions([prediction(request_id="crashed")])  # recorded by a process that stopped before flushing
    with PredictionBuffer(lake, store, max_rows=100, max_seconds=60) as restarted:
        assert restarted.recover() == 1
    assert read_predictions(lake)["request_id"].to_pylist() == ["crashed", "r1", "r2"]
    assert store.unflushed().num_rows == 0


class TestDynamoDbEventStore(EventStoreContract):
    """The contract on DynamoDB (tests/storage/event_store_contract.py)."""

    def flushed_at(self, store: DynamoDbEventStore, request_ids) -> dict[str, datetime | None]:
        return {r: store.flushed_at(PredictionKey(VIN_A, DAY, MODEL, "api", r)) for r in request_ids}
