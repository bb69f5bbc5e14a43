"""The event store: idempotent predictions, alarm episodes, SQLite in WAL mode, and writers on many threads."""

from __future__ import annotations

import importlib.util
import json
import math
import sqlite3
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from pipelines.config import load_settings
from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage import event_store
from pipelines.storage.event_store import (
    EventStore,
    PredictionKey,
    alerts,
    insert_new,
    prediction_keys,
    prediction_table,
    predictions,
    python_values,
)

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
DAY = date(2026, 1, 5)
MADE = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)


def prediction(vin: str = VIN_A, as_of: date = DAY, request_id: str = "req-1", **changes) -> dict:
    """One prediction as the API makes it."""
    row = {"vin": vin, "as_of": as_of, "model_version": "20260101t000000z-full-ab12cd34", "feature_set": "full",
           "probability": 0.72, "alarm": True, "threshold": 0.5, "suspect_cell": 17,
           "reasons": [{"feature": "suspect_cell_z_lag1", "contribution": 1.25, "value": 4.5},
                       {"feature": "cell_range_max_mv_lag3", "contribution": -0.5, "value": None}],
           "source": "api", "request_id": request_id, "created_at": MADE}
    return row | changes


@pytest.fixture
def store(tmp_path: Path):
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    yield store
    store.close()


def flushed_at(store: EventStore) -> dict[str, datetime | None]:
    with store.engine.connect() as connection:
        return dict(connection.execute(select(predictions.c.request_id, predictions.c.flushed_at)).all())


def test_recording_a_key_twice_keeps_the_first_row(store: EventStore) -> None:
    assert store.record_predictions([prediction()]) == 1
    assert store.record_predictions([prediction(probability=0.1, alarm=False)]) == 0  # same key: unchanged
    assert store.record_predictions([prediction(request_id="req-2", probability=0.3)]) == 1  # another request
    rows = store.predictions_for_vin(VIN_A)
    # Same as_of and time made: the later recorded comes first.
    assert [(r["request_id"], r["probability"], r["alarm"]) for r in rows] == [("req-2", 0.3, True), ("req-1", 0.72, True)]


def test_a_batch_with_repeated_and_known_keys_counts_only_new_rows(store: EventStore) -> None:
    store.record_predictions([prediction(request_id="a")])
    batch = [prediction(request_id=r) for r in ("a", "b", "b", "c")]
    assert store.record_predictions(batch) == 2
    assert sorted(flushed_at(store)) == ["a", "b", "c"]


def test_rows_read_back_exactly_as_the_contract(store: EventStore) -> None:
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


def stored_rows(path: Path) -> list[tuple]:
    """Every predictions row as SQLite holds it (but the id), in key order."""
    with sqlite3.connect(path) as connection:
        columns = ", ".join(c.name for c in predictions.c if c.name != "id")
        return connection.execute(f"select {columns} from predictions order by vin, as_of, request_id").fetchall()


def test_sqlite_batches_store_exactly_what_sqlalchemy_core_stores(tmp_path: Path) -> None:
    rows = [prediction(request_id="plain"),
            prediction(vin=VIN_B, as_of=DAY + timedelta(days=1), request_id="odd", suspect_cell=None, reasons=None,
                       alarm=False, probability=0.0, created_at=datetime(2026, 1, 6, 2, 0, 1, 234567, tzinfo=UTC)),
            prediction(request_id="nan", source="batch", reasons=[{"feature": "total_voltage_lag2",
                                                                   "contribution": 0.1, "value": float("nan")}])]
    fast = EventStore(f"sqlite:///{tmp_path / 'fast.sqlite'}")
    assert fast.record_predictions(rows) == 3
    core = EventStore(f"sqlite:///{tmp_path / 'core.sqlite'}")
    records = prediction_table(rows).to_pylist()  # what record_predictions did before its SQLite path
    for record in records:
        record["reasons"] = None if record["reasons"] is None else json.dumps(record["reasons"])
    with core.engine.begin() as connection:
        connection.execute(insert_new("sqlite", predictions), records)
    at = datetime(2026, 1, 7, 1, 2, 3, 456789, tzinfo=UTC)
    fast.mark_flushed(prediction_keys(prediction_table(rows))[:2], at)
    with core.engine.begin() as connection:
        for key in prediction_keys(prediction_table(rows))[:2]:
            connection.execute(predictions.update().where(*(predictions.c[name] == value for name, value in
                                                            zip(event_store.PREDICTION_KEY, key, strict=True)))
                               .values(flushed_at=at))
    assert stored_rows(tmp_path / "fast.sqlite") == stored_rows(tmp_path / "core.sqlite")
    odd = [row for row in stored_rows(tmp_path / "fast.sqlite") if row[10] == "odd"][0]
    assert odd == (VIN_B, "2026-01-06", "20260101t000000z-full-ab12cd34", "full", 0.0, 0, 0.5, None, None, "api",
                   "odd", "2026-01-06 02:00:01.234000", "2026-01-07 01:02:03.456789")
    fast.close()
    core.close()


def test_large_batches_are_written_in_chunks_counting_only_new_keys(store: EventStore,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_store, "WRITE_CHUNK_ROWS", 7)
    store.record_predictions([prediction(request_id="r03"), prediction(request_id="r20")])
    batch = [prediction(request_id=f"r{i:02d}", as_of=DAY + timedelta(days=i % 3)) for i in range(30)]
    batch += [prediction(request_id="r05", as_of=DAY + timedelta(days=2))]  # repeated within the batch
    assert store.record_predictions(batch) == 30 - 1  # r03 was stored already (r20's as_of differs: new)
    assert len(store.predictions_between(DAY, DAY + timedelta(days=2))) == 2 + 29
    store.mark_flushed(prediction_keys(prediction_table(batch)), MADE)
    with store.engine.connect() as connection:
        unflushed = connection.execute(select(predictions.c.request_id, predictions.c.as_of)
                                       .where(predictions.c.flushed_at.is_(None))).all()
    assert [tuple(row) for row in unflushed] == [("r20", DAY)]  # recorded before, not in this batch


def test_python_values_convert_each_distinct_date_and_time_once() -> None:
    times = pa.chunked_array([pa.array([MADE, None], pa.timestamp("ms", tz="UTC")),
                              pa.array([MADE, MADE + timedelta(seconds=1)], pa.timestamp("ms", tz="UTC"))])
    assert python_values(times) == [MADE, None, MADE, MADE + timedelta(seconds=1)]
    seen = []
    assert python_values(pa.array([DAY, DAY, None], pa.date32()), lambda d: seen.append(d) or d.isoformat()) == [
        "2026-01-05", "2026-01-05", None]
    assert seen == [DAY]
    assert python_values(pa.array([], pa.date32())) == [] and python_values(pa.array(["a", None])) == ["a", None]


@pytest.mark.parametrize(("changes", "message"), [
    ({"created_at": None}, "prediction row 1: created_at is missing"),
    ({"source": "web"}, r"prediction row 1: source 'web' is not one of \('batch', 'api'\)"),
    ({"probability": 1.5}, "prediction row 1: probability = 1.5 is not between 0 and 1"),
    ({"probability": float("nan")}, "prediction row 1: probability = nan is not between 0 and 1"),
    ({"as_of": "yesterday"}, "prediction rows do not match the contract"),
])
def test_rows_breaking_the_contract_are_refused_with_the_reason(store: EventStore, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.record_predictions([prediction(**changes)])
    assert store.unflushed().num_rows == 0


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(store: EventStore, tmp_path: Path) -> None:
    with store.engine.connect() as connection:
        pragmas = {name: connection.exec_driver_sql(f"pragma {name}").scalar()
                   for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")}
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 30000, "foreign_keys": 1}
    store.record_predictions([prediction()])
    with sqlite3.connect(tmp_path / "events.sqlite") as other:  # WAL is a property of the file, seen by any reader
        assert other.execute("pragma journal_mode").fetchone() == ("wal",)
        assert other.execute("select count(*) from predictions").fetchone() == (1,)


def test_one_engine_per_process_and_url(store: EventStore, tmp_path: Path) -> None:
    assert EventStore(store.url).engine is store.engine
    assert EventStore(f"sqlite:///{tmp_path / 'other.sqlite'}").engine is not store.engine


def test_eight_threads_writing_at_once_lose_nothing(store: EventStore) -> None:
    start = threading.Barrier(8)
    new_counts: list[int] = []
    errors: list[BaseException] = []

    def api_worker(worker: int) -> None:
        try:
            start.wait()
            for i in range(40):
                new_counts.append(store.record_predictions([prediction(vin=f"LSVAB1234CD5{worker:05d}",
                                                                       request_id=f"w{worker}-{i}")]))
                new_counts.append(store.record_predictions([prediction(request_id=f"shared-{i}")]))  # all race
                if i % 10 == 0:
                    store.predictions_for_vin(VIN_A, limit=5)  # readers between the writes
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=api_worker, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(new_counts) == 8 * 40 + 40  # each worker's own rows, and each shared key exactly once
    assert store.unflushed().num_rows == 360
    assert len(store.predictions_for_vin(VIN_A, limit=1000)) == 40
    assert len(store.predictions_for_vin("LSVAB1234CD500007", limit=1000)) == 40


def test_unflushed_oldest_first_until_marked(store: EventStore) -> None:
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
    assert flushed_at(store) == {"r1": at, "r2": at, "r3": None}
    store.mark_flushed([PredictionKey(VIN_A, DAY, "20260101t000000z-full-ab12cd34", "api", "r3")], at)
    assert store.unflushed().num_rows == 0


def test_predictions_by_vehicle_and_by_date(store: EventStore) -> None:
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


def test_api_predictions_find_a_vehicle_dates_rows_by_request_id_oldest_first(store: EventStore) -> None:
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


def test_alarm_episodes_are_stored_once_and_notified_once(store: EventStore) -> None:
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

    january_first_week = store.alerts_between(date(2026, 1, 1), date(2026, 1, 7))
    assert [(a["vin"], a["feature_set"], a["first_as_of"]) for a in january_first_week] == [
        (VIN_A, "full", date(2026, 1, 5)), (VIN_A, "signals6", date(2026, 1, 5)), (VIN_B, "full", date(2026, 1, 7))]
    first = january_first_week[0]
    assert (first["probability"], first["suspect_cell"], first["created_at"], first["notified_at"], first["channel"]) == (
        0.8, 17, MADE, at, "email")


def test_the_store_named_by_the_settings(cellguard_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().event_store_url == f"sqlite:///{cellguard_env.resolve() / 'events.sqlite'}"
    store = EventStore.from_settings()
    store.record_predictions([prediction()])
    store.close()
    assert (cellguard_env / "events.sqlite").is_file()
    monkeypatch.setenv("CELLGUARD_EVENT_STORE_URL", f"sqlite:///{tmp_path / 'elsewhere' / 'e.db'}")
    elsewhere = EventStore.from_settings()
    assert elsewhere.unflushed().num_rows == 0
    elsewhere.close()
    assert (tmp_path / "elsewhere" / "e.db").is_file()


@pytest.mark.parametrize("url", ["mysql://root@db/events", "events.sqlite", "sqlite:/events.sqlite"])
def test_event_store_url_setting_errors(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("CELLGUARD_EVENT_STORE_URL", url)
    with pytest.raises(ValueError, match="CELLGUARD_EVENT_STORE_URL must be a SQLAlchemy URL of SQLite or "
                                         f"PostgreSQL.*not '{url}'"):
        load_settings()


def test_event_store_url_setting_accepts_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLGUARD_EVENT_STORE_URL", " postgresql+psycopg://cellguard@db:5432/events ")
    assert load_settings().event_store_url == "postgresql+psycopg://cellguard@db:5432/events"


def test_a_password_in_a_bad_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLGUARD_EVENT_STORE_URL", "mysql+pymysql://app:s3cret@db/events")
    with pytest.raises(ValueError) as error:
        load_settings()
    assert "s3cret" not in str(error.value) and "app:***@db" in str(error.value)


def test_unsupported_dialects_and_missing_drivers_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="event store dialect 'mysql' is not supported"):
        EventStore("mysql://root@localhost/events")
    with pytest.raises(ValueError, match="is not a database URL"):
        EventStore("events.sqlite")
    if importlib.util.find_spec("psycopg") is None:
        with pytest.raises(ValueError, match=r"PostgreSQL driver for the event store is not installed \(psycopg\)"):
            EventStore("postgresql+psycopg://cellguard@localhost/events")


def test_postgresql_gets_the_same_tables_and_upsert() -> None:
    dialect = postgresql.dialect()
    ddl = str(CreateTable(predictions).compile(dialect=dialect))
    assert "id BIGSERIAL NOT NULL" in ddl and "probability DOUBLE PRECISION NOT NULL" in ddl
    assert "created_at TIMESTAMP WITH TIME ZONE NOT NULL" in ddl
    assert "CONSTRAINT uq_predictions_key UNIQUE (vin, as_of, model_version, source, request_id)" in ddl
    assert "CONSTRAINT uq_alerts_episode UNIQUE (vin, feature_set, first_as_of)" in str(CreateTable(alerts).compile(dialect=dialect))
    unflushed_index = next(i for i in predictions.indexes if i.name == "ix_predictions_unflushed")
    assert str(CreateIndex(unflushed_index).compile(dialect=dialect)).endswith("WHERE flushed_at IS NULL")
    upsert = str(insert_new("postgresql", predictions).returning(predictions.c.id).compile(dialect=dialect))
    assert upsert.endswith("ON CONFLICT DO NOTHING RETURNING predictions.id")
