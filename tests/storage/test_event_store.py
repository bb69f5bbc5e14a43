"""The event store: idempotent predictions, alarm episodes, SQLite in WAL mode, and writers on many threads."""

from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from pipelines.config import load_settings
from pipelines.storage import event_store
from pipelines.storage.event_store import (
    EventStore,
    alerts,
    insert_new,
    prediction_keys,
    prediction_table,
    predictions,
    python_values,
)

from .event_store_contract import DAY, MADE, VIN_A, VIN_B, EventStoreContract, prediction


@pytest.fixture
def store(tmp_path: Path):
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    yield store
    store.close()


def flushed_at(store: EventStore) -> dict[str, datetime | None]:
    with store.engine.connect() as connection:
        return dict(connection.execute(select(predictions.c.request_id, predictions.c.flushed_at)).all())


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


def test_a_few_plain_rows_are_stored_without_a_table_exactly_as_through_one(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [prediction(request_id="plain"),
            prediction(vin=VIN_B, as_of=DAY + timedelta(days=1), request_id="odd", suspect_cell=None, reasons=None,
                       alarm=False, probability=0.0, created_at=datetime(2026, 1, 6, 3, 0, 1, 234000,
                                                                          tzinfo=timezone(timedelta(hours=1)))),
            prediction(request_id="nan", source="batch", reasons=[{"feature": "total_voltage_lag2",
                                                                   "contribution": 0.1, "value": float("nan")}])]
    through_table = EventStore(f"sqlite:///{tmp_path / 'table.sqlite'}")
    assert through_table.record_predictions(prediction_table(rows)) == 3
    plain = EventStore(f"sqlite:///{tmp_path / 'plain.sqlite'}")
    with monkeypatch.context() as patch:
        patch.setattr(event_store, "prediction_table", lambda rows: pytest.fail("plain rows were made a table"))
        assert plain.record_predictions(rows) == 3
        assert plain.record_predictions(rows[:1]) == 0  # a key stored before
    assert stored_rows(tmp_path / "plain.sqlite") == stored_rows(tmp_path / "table.sqlite")
    assert {row[10]: row[11] for row in stored_rows(tmp_path / "plain.sqlite")}["odd"] == "2026-01-06 02:00:01.234000"
    through_table.close()
    plain.close()


@pytest.mark.parametrize("change", [{"probability": 1.5}, {"probability": float("nan")}, {"source": "cli"},
                                    {"vin": None}, {"probability": 1}, {"suspect_cell": True},
                                    {"reasons": [{"contribution": 1.0, "feature": "x", "value": None}]},
                                    {"created_at": datetime(2026, 1, 5, 10, 0, 0, 1)}])
def test_rows_that_are_not_plainly_valid_take_the_checked_table_path(store: EventStore, change: dict) -> None:
    row = prediction(**change)
    assert event_store._plain_driver_rows([row], store._binders()) is None
    try:
        expected = prediction_table([row])
    except ValueError as error:  # the table path names what is wrong
        with pytest.raises(ValueError, match=re.escape(str(error))):
            store.record_predictions([row])
    else:  # or accepts what it can convert exactly, as before
        assert store.record_predictions([row]) == 1 and expected.num_rows == 1


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


def test_a_writer_waits_while_another_process_holds_the_write_queue(store: EventStore, tmp_path: Path) -> None:
    """The queue is a flock of `<database>-writers`: a writer here waits for another process to let go, then
    writes (SQLite's own lock is never met, so its sleeping busy handler never runs)."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys
        with open({str(tmp_path / 'events.sqlite-writers')!r}, "a+b") as queue:
            fcntl.flock(queue, fcntl.LOCK_EX)
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        recorded: list[int] = []
        writer = threading.Thread(target=lambda: recorded.append(store.record_predictions([prediction()])))
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive() and recorded == []  # still waiting its turn
        holder.stdin.write("release\n")
        holder.stdin.flush()
        writer.join(timeout=30)
        assert recorded == [1]
    finally:
        holder.kill()
        holder.wait()


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from event_store_contract import prediction
        from pipelines.storage.event_store import EventStore
        store = EventStore({url!r})
        new = sum(store.record_predictions([prediction(request_id=f"{{sys.argv[1]}}-{{i}}"),
                                            prediction(request_id=f"shared-{{i}}")]) for i in range(150))
        print(new)
        """)
    writers = [subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE, text=True)
               for name in ("a", "b")]
    new = [int(writer.communicate(timeout=120)[0]) for writer in writers]
    assert all(writer.returncode == 0 for writer in writers)
    assert sum(new) == 2 * 150 + 150  # each process's own rows, and each shared key exactly once
    assert EventStore(url).unflushed().num_rows == 450


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


class TestSqlEventStore(EventStoreContract):
    """The contract on SQLite (tests/storage/event_store_contract.py)."""

    def flushed_at(self, store: EventStore, request_ids) -> dict[str, datetime | None]:
        stamps = flushed_at(store)
        return {request_id: stamps.get(request_id) for request_id in request_ids}
