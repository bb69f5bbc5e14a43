"""The prediction event store: every prediction and alert, durable as soon as it is made (SQLite, or PostgreSQL by URL).

The lake's `predictions/` zone is for analysts and catalogs; this store is the system of record that the API
writes before it answers and that the batch DAG reads alarm episodes from. Two tables:

    predictions   the prediction contract (schema.PREDICTION_SCHEMA; `reasons` as JSON text) plus `flushed_at`,
                  when the row reached the lake. Unique on (vin, as_of, model_version, source, request_id):
                  recording a key twice leaves the first row unchanged.
    alerts        one row per alarm episode, unique on (vin, feature_set, first_as_of), with when and how it
                  was notified. Which prediction starts an episode is the caller's decision; this only stores.

`PredictionEventStore` is the interface (a DynamoDB store implements the same methods); `EventStore` is the
SQL implementation with SQLAlchemy Core. One Engine per process and URL, short transactions, so API worker
threads write at once: SQLite runs in WAL mode (readers never wait for the writer) and writers, of any thread or
process, queue on SqliteWriteQueue (a lock and a flock) instead of SQLite's sleeping busy handler. On SQLite, recording and stamping many predictions (a batch run's 100k)
skips Core's per-row work: the driver's executemany in chunks of WRITE_CHUNK_ROWS, one transaction, with the
values Core would bind (100k rows: record 7.6 → 0.9 s, mark_flushed 4.4 → 0.7–1.2 s on this machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    make_url,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError

from pipelines.config import Settings, load_settings
from pipelines.schema import PREDICTION_SCHEMA, REASON_TYPE

PREDICTION_KEY = ("vin", "as_of", "model_version", "source", "request_id")
SOURCES = ("batch", "api")
SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another writer's transaction before failing


class PredictionKey(NamedTuple):
    """What makes a prediction unique (DESIGN.md "prediction")."""

    vin: str
    as_of: date
    model_version: str
    source: str
    request_id: str


class PredictionEventStore(Protocol):
    """What the API, the prediction buffer and the batch DAG need from an event store (SQL or DynamoDB)."""

    def record_predictions(self, rows: list[dict] | pa.Table) -> int: ...
    def unflushed(self, limit: int | None = None) -> pa.Table: ...
    def mark_flushed(self, keys: Iterable[PredictionKey], at: datetime) -> None: ...
    def predictions_for_vin(self, vin: str, limit: int = 100) -> list[dict]: ...
    def api_predictions(self, keys: Iterable[tuple[str, date, str]]) -> list[dict]: ...
    def predictions_between(self, first: date, last: date, alarm_only: bool = False) -> list[dict]: ...
    def record_alert(self, *, vin: str, feature_set: str, first_as_of: date, model_version: str, probability: float,
                     threshold: float, suspect_cell: int | None = None, created_at: datetime | None = None) -> bool: ...
    def open_alert(self, vin: str, feature_set: str, on_or_before: date | None = None) -> dict | None: ...
    def mark_notified(self, vin: str, feature_set: str, first_as_of: date, at: datetime, channel: str) -> bool: ...
    def alerts_between(self, first: date, last: date) -> list[dict]: ...


# ---------------------------------------------------------------------------------------------- rows


def prediction_table(rows: list[dict] | pa.Table) -> pa.Table:
    """Rows as a table in PREDICTION_SCHEMA exactly, or a ValueError naming the column and the row."""
    if isinstance(rows, pa.Table):
        missing = [name for name in PREDICTION_SCHEMA.names if name not in rows.column_names]
        if missing:
            raise ValueError(f"prediction rows lack contract columns {missing}")
        columns = []
        for field in PREDICTION_SCHEMA:
            try:  # timestamps are truncated to the contract's milliseconds, every other cast must be exact
                columns.append(rows[field.name].cast(field.type, safe=not pa.types.is_timestamp(field.type)))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
                raise ValueError(f"prediction column {field.name!r} cannot be read as {field.type}: {error}") from None
        table = pa.Table.from_arrays(columns, schema=PREDICTION_SCHEMA)
    else:
        try:
            table = pa.Table.from_pylist(list(rows), schema=PREDICTION_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"prediction rows do not match the contract: {error}") from None
    for field in PREDICTION_SCHEMA:
        if not field.nullable and table[field.name].null_count:
            row = pc.index(pc.is_null(table[field.name]), True).as_py()
            raise ValueError(f"prediction row {row + 1}: {field.name} is missing (the contract requires it)")
    bad_source = pc.invert(pc.is_in(table["source"], pa.array(SOURCES)))
    if pc.any(bad_source).as_py():
        row = pc.index(bad_source, True).as_py()
        raise ValueError(f"prediction row {row + 1}: source {table['source'][row].as_py()!r} is not one of {SOURCES}")
    for name in ("probability", "threshold"):
        outside = pc.invert(pc.and_(pc.greater_equal(table[name], 0.0), pc.less_equal(table[name], 1.0)))
        if pc.any(pc.fill_null(outside, True)).as_py():  # NaN compares false, so it is outside too
            row = pc.index(pc.fill_null(outside, True), True).as_py()
            raise ValueError(f"prediction row {row + 1}: {name} = {table[name][row].as_py()!r} is not between 0 and 1")
    return table


def prediction_keys(table: pa.Table) -> list[PredictionKey]:
    """The unique keys of prediction rows, in row order."""
    return [PredictionKey(*key) for key in zip(*(python_values(table[name]) for name in PREDICTION_KEY), strict=True)]


def python_values(column: pa.ChunkedArray | pa.Array, convert: Callable[[Any], Any] | None = None) -> list:
    """A column as Python values, each passed through `convert` if given (None stays None).

    Dates and timestamps become Python objects one distinct value at a time: a batch holds few distinct ones, and
    making 100k datetime objects costs ~1 s."""
    if not (convert or pa.types.is_date(column.type) or pa.types.is_timestamp(column.type)):
        return column.to_pylist()
    encoded = pc.dictionary_encode(column)
    encoded = encoded.combine_chunks() if isinstance(encoded, pa.ChunkedArray) else encoded
    if len(encoded) == 0:
        return []
    distinct = [convert(value) if convert else value for value in encoded.dictionary.to_pylist()]
    lookup = np.array(distinct + [None], dtype=object)
    return lookup[pc.fill_null(encoded.indices, len(distinct)).to_numpy()].tolist()


# ---------------------------------------------------------------------------------------------- tables


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on SQLite (which stores no zone) as on PostgreSQL (timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)  # naive means UTC
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()
_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite auto-increments only an INTEGER primary key

predictions = Table(
    "predictions", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),  # arrival order: "oldest first" for the lake
    Column("vin", String(64), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("feature_set", String(64), nullable=False),
    Column("probability", Double, nullable=False),
    Column("alarm", Boolean, nullable=False),
    Column("threshold", Double, nullable=False),
    Column("suspect_cell", Integer),
    Column("reasons", Text),  # JSON list of {feature, contribution, value}; NaN kept as JSON's NaN extension
    Column("source", String(16), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("flushed_at", UTCDateTime),  # when the row reached the lake's predictions/ zone
    UniqueConstraint(*PREDICTION_KEY, name="uq_predictions_key"),
)
Index("ix_predictions_as_of", predictions.c.as_of)
Index("ix_predictions_unflushed", predictions.c.id, sqlite_where=predictions.c.flushed_at.is_(None),
      postgresql_where=predictions.c.flushed_at.is_(None))

alerts = Table(
    "alerts", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("vin", String(64), nullable=False),
    Column("feature_set", String(64), nullable=False),
    Column("first_as_of", Date, nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("probability", Double, nullable=False),
    Column("threshold", Double, nullable=False),
    Column("suspect_cell", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("notified_at", UTCDateTime),
    Column("channel", Text),
    UniqueConstraint("vin", "feature_set", "first_as_of", name="uq_alerts_episode"),
)
Index("ix_alerts_first_as_of", alerts.c.first_as_of)

_PREDICTION_COLUMNS = [predictions.c[name] for name in PREDICTION_SCHEMA.names]
_ALERT_COLUMNS = [column for column in alerts.c if column.name != "id"]


# ---------------------------------------------------------------------------------------------- engines

_WRITE = "cellguard_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _forget_engines_after_fork() -> None:
    """A forked child must not use its parent's pooled connections: it opens its own."""
    global _engines_lock
    _engines_lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    # A lock a parent's thread held at the fork would never be released here, and a flock belongs to the open file
    # the child shares with its parent: the child opens its own.
    _sqlite_write_locks.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN is switched off so that _begin below decides how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (f"busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}", "journal_mode = WAL", "synchronous = NORMAL",
                       "foreign_keys = ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # A writer takes the write lock up front (waiting on the busy timeout). Starting deferred and upgrading
        # later fails at once with SQLITE_BUSY if another writer committed in between.
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class SqliteWriteQueue:
    """Writers of one SQLite file take turns here before BEGIN IMMEDIATE, so none meets SQLite's lock taken.

    A writer that finds SQLite's lock taken sleeps in growing steps (its busy handler: 1, 2, 5, 10 … 100 ms)
    before trying again, so a short write can wait far longer than it takes. Threads of this process queue on a
    lock; processes queue on an exclusive flock of `<database>-writers`, a kernel lock that wakes the next waiter
    the moment the holder lets go. With two API worker processes on one file this was the difference between
    1.2 and 2 busy cores. SQLite's own locking still guards the data; this only orders the writers."""

    def __init__(self, database: str | None):
        self._threads = threading.Lock()
        self._file = None
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            self._file = open(path.with_name(path.name + "-writers"), "a+b")  # noqa: SIM115 - held for the process

    def __enter__(self) -> SqliteWriteQueue:
        self._threads.acquire()
        if self._file is not None:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()


_sqlite_write_locks: dict[str, SqliteWriteQueue] = {}


def _sqlite_write_lock(url: str) -> SqliteWriteQueue:
    """The process's one write queue for a SQLite URL (shared by every EventStore on it)."""
    with _engines_lock:
        queue = _sqlite_write_locks.get(url)
        if queue is None:
            queue = _sqlite_write_locks[url] = SqliteWriteQueue(make_url(url).database)
        return queue


def engine_for(url: str) -> Engine:
    """The process's one Engine for a URL, its tables created if missing."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            try:
                dialect = make_url(url).get_backend_name()
            except ArgumentError:
                raise ValueError(f"event store URL {url!r} is not a database URL "
                                 "(sqlite:////path/events.sqlite or postgresql+psycopg://host/db)") from None
            if dialect == "sqlite":
                engine = _sqlite_engine(url)
            elif dialect == "postgresql":
                try:
                    engine = create_engine(url, pool_pre_ping=True)
                except ModuleNotFoundError as error:
                    raise ValueError(f"the PostgreSQL driver for the event store is not installed ({error.name}): "
                                     "pip install 'psycopg[binary]' and use a postgresql+psycopg:// URL") from None
            else:
                raise ValueError(f"event store dialect {dialect!r} is not supported: use sqlite or postgresql")
            with engine.connect() as connection:
                connection.execution_options(**{_WRITE: True})
                with connection.begin():  # SQLite: IMMEDIATE, so processes starting together create tables once
                    metadata.create_all(connection)
            _engines[url] = engine
        return engine


def insert_new(dialect_name: str, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for SQLite or PostgreSQL: an existing key is left as it is."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[dialect_name]
    return dialect.insert(table).on_conflict_do_nothing()


# ---------------------------------------------------------------------------------------------- store


class EventStore:
    """Predictions and alerts in a SQL database (SQLite file by default, PostgreSQL by URL)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._bound: dict[str, Callable[[Any], Any]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> EventStore:
        """The store CELLGUARD_EVENT_STORE_URL names."""
        settings = settings or load_settings()
        return cls(settings.event_store_url)

    def close(self) -> None:
        """Close pooled connections (the Engine reconnects if this process uses the store again)."""
        self.engine.dispose()

    def _binders(self) -> dict[str, Callable[[Any], Any]]:
        """Per contract column, what SQLAlchemy does to a value before the driver gets it."""
        if self._bound is None:
            self._bound = {name: _bind(predictions.c[name], self.engine.dialect) for name in PREDICTION_SCHEMA.names}
        return self._bound

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        # SQLite has one writer at a time: writers take turns in SqliteWriteQueue rather than in its busy handler.
        queue = _sqlite_write_lock(self.url) if write and self._sqlite else contextlib.nullcontext()
        with queue, self.engine.connect() as connection:
            if write:
                connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection

    # ------------------------------------------------------------------ predictions

    def record_predictions(self, rows: list[dict] | pa.Table) -> int:
        """Store predictions; a key already stored is left unchanged. Returns how many rows were new."""
        if self._sqlite and isinstance(rows, list) and 0 < len(rows) <= PLAIN_ROWS_LIMIT:
            # The API's few rows a pass: checked and bound in Python, as the Arrow path below would store them
            # (~0.2 ms a pass less than building, checking and unbuilding a table for 16 rows).
            values = _plain_driver_rows(rows, self._binders())
            if values is not None:
                with self._transaction(write=True) as connection:
                    return connection.exec_driver_sql(_SQLITE_INSERT, values).rowcount
        table = prediction_table(rows)
        if table.num_rows == 0:
            return 0
        if self._sqlite:  # the driver's executemany: Core's per-row binding costs ~70 µs
            new = 0
            with self._transaction(write=True) as connection:
                for start in range(0, table.num_rows, WRITE_CHUNK_ROWS):
                    values = _driver_rows(table.slice(start, WRITE_CHUNK_ROWS), self.engine.dialect)
                    new += connection.exec_driver_sql(_SQLITE_INSERT, values).rowcount
            return new
        records = table.to_pylist()
        for record in records:
            record["reasons"] = None if record["reasons"] is None else json.dumps(record["reasons"])
        statement = insert_new(self.engine.dialect.name, predictions).returning(predictions.c.id)
        with self._transaction(write=True) as connection:
            return len(connection.execute(statement, records).all())

    def unflushed(self, limit: int | None = None) -> pa.Table:
        """Predictions not yet in the lake, oldest first, in PREDICTION_SCHEMA."""
        query = (select(*_PREDICTION_COLUMNS).where(predictions.c.flushed_at.is_(None))
                 .order_by(predictions.c.id).limit(limit))
        with self._transaction() as connection:
            rows = [_prediction(row) for row in connection.execute(query)]
        return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)

    def mark_flushed(self, keys: Iterable[PredictionKey], at: datetime) -> None:
        """Stamp predictions as written to the lake (a row already stamped keeps its first stamp)."""
        if self.engine.dialect.name == "sqlite":
            dialect, keys = self.engine.dialect, list(keys)
            if not keys:
                return
            stamp, day = _bind(predictions.c.flushed_at, dialect), _bind(predictions.c.as_of, dialect)
            flushed, days = stamp(at), {d: day(d) for d in {k[1] for k in keys}}
            with self._transaction(write=True) as connection:
                for start in range(0, len(keys), WRITE_CHUNK_ROWS):
                    connection.exec_driver_sql(_SQLITE_MARK_FLUSHED, [(flushed, k[0], days[k[1]], k[2], k[3], k[4])
                                                                      for k in keys[start:start + WRITE_CHUNK_ROWS]])
            return
        params = [{"k_vin": k[0], "k_as_of": k[1], "k_model_version": k[2], "k_source": k[3], "k_request_id": k[4],
                   "k_at": at} for k in keys]
        if not params:
            return
        c = predictions.c
        statement = (update(predictions)
                     .where(c.vin == bindparam("k_vin", type_=c.vin.type),
                            c.as_of == bindparam("k_as_of", type_=c.as_of.type),
                            c.model_version == bindparam("k_model_version", type_=c.model_version.type),
                            c.source == bindparam("k_source", type_=c.source.type),
                            c.request_id == bindparam("k_request_id", type_=c.request_id.type),
                            c.flushed_at.is_(None))
                     .values(flushed_at=bindparam("k_at", type_=UTCDateTime())))
        with self._transaction(write=True) as connection:
            connection.execute(statement, params)

    def predictions_for_vin(self, vin: str, limit: int = 100) -> list[dict]:
        """A vehicle's latest predictions: newest as_of first, newest made first within a date."""
        query = (select(*_PREDICTION_COLUMNS).where(predictions.c.vin == vin)
                 .order_by(predictions.c.as_of.desc(), predictions.c.created_at.desc(), predictions.c.id.desc())
                 .limit(limit))
        with self._transaction() as connection:
            return [_prediction(row) for row in connection.execute(query)]

    def api_predictions(self, keys: Iterable[tuple[str, date, str]]) -> list[dict]:
        """The API's predictions made for these (vin, as_of, request id), in the order recorded: what a replay returns."""
        wanted = set(keys)
        if not wanted:
            return []
        # One statement for every key (a pass of concurrent requests asks at once); the unique key's index leads
        # with vin, and the rows of other dates or ids of those vehicles are dropped here.
        query = (select(*_PREDICTION_COLUMNS)
                 .where(predictions.c.vin.in_(sorted({vin for vin, _, _ in wanted})), predictions.c.source == "api",
                        predictions.c.request_id.in_(sorted({request_id for _, _, request_id in wanted})))
                 .order_by(predictions.c.id))
        with self._transaction() as connection:
            rows = [_prediction(row) for row in connection.execute(query)]
        return [row for row in rows if (row["vin"], row["as_of"], row["request_id"]) in wanted]

    def predictions_between(self, first: date, last: date, alarm_only: bool = False) -> list[dict]:
        """Predictions with as_of in [first, last] (only alarms if asked), by as_of, vin, then when made."""
        query = select(*_PREDICTION_COLUMNS).where(predictions.c.as_of.between(first, last))
        if alarm_only:
            query = query.where(predictions.c.alarm.is_(True))
        query = query.order_by(predictions.c.as_of, predictions.c.vin, predictions.c.created_at, predictions.c.id)
        with self._transaction() as connection:
            return [_prediction(row) for row in connection.execute(query)]

    # ------------------------------------------------------------------ alerts

    def record_alert(self, *, vin: str, feature_set: str, first_as_of: date, model_version: str, probability: float,
                     threshold: float, suspect_cell: int | None = None, created_at: datetime | None = None) -> bool:
        """Store the start of an alarm episode; False if that episode (vin, feature_set, first_as_of) exists."""
        values = {"vin": vin, "feature_set": feature_set, "first_as_of": first_as_of, "model_version": model_version,
                  "probability": probability, "threshold": threshold, "suspect_cell": suspect_cell,
                  "created_at": created_at or datetime.now(UTC), "notified_at": None, "channel": None}
        statement = insert_new(self.engine.dialect.name, alerts).values(**values).returning(alerts.c.id)
        with self._transaction(write=True) as connection:
            return connection.execute(statement).first() is not None

    def open_alert(self, vin: str, feature_set: str, on_or_before: date | None = None) -> dict | None:
        """The vehicle's latest alarm episode for a feature set (begun on or before a date, if given; None if
        there is none)."""
        query = select(*_ALERT_COLUMNS).where(alerts.c.vin == vin, alerts.c.feature_set == feature_set)
        if on_or_before is not None:
            query = query.where(alerts.c.first_as_of <= on_or_before)
        query = query.order_by(alerts.c.first_as_of.desc()).limit(1)
        with self._transaction() as connection:
            row = connection.execute(query).first()
        return None if row is None else dict(row._mapping)

    def mark_notified(self, vin: str, feature_set: str, first_as_of: date, at: datetime, channel: str) -> bool:
        """Stamp an episode as notified; False if it does not exist or was notified already (notify once)."""
        statement = (update(alerts)
                     .where(alerts.c.vin == vin, alerts.c.feature_set == feature_set,
                            alerts.c.first_as_of == first_as_of, alerts.c.notified_at.is_(None))
                     .values(notified_at=at, channel=channel))
        with self._transaction(write=True) as connection:
            return connection.execute(statement).rowcount == 1

    def alerts_between(self, first: date, last: date) -> list[dict]:
        """Episodes that started in [first, last], by start date, vin, feature set."""
        query = (select(*_ALERT_COLUMNS).where(alerts.c.first_as_of.between(first, last))
                 .order_by(alerts.c.first_as_of, alerts.c.vin, alerts.c.feature_set))
        with self._transaction() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


WRITE_CHUNK_ROWS = 20_000  # rows per executemany: bounds the Python values alive at once
PLAIN_ROWS_LIMIT = 512  # more rows than this go through the Arrow table, whose fixed costs they then outweigh
_REASON_KEYS = tuple(field.name for field in REASON_TYPE)
_SQLITE_INSERT = (f"INSERT INTO predictions ({', '.join(PREDICTION_SCHEMA.names)}) "
                  f"VALUES ({', '.join('?' * len(PREDICTION_SCHEMA))}) ON CONFLICT DO NOTHING")
_SQLITE_MARK_FLUSHED = ("UPDATE predictions SET flushed_at = ? WHERE vin = ? AND as_of = ? AND model_version = ? "
                        "AND source = ? AND request_id = ? AND flushed_at IS NULL")


def _bind(column: Column, dialect: Any) -> Callable[[Any], Any]:
    """What SQLAlchemy does to a value of this column before the driver gets it (so raw rows match Core's)."""
    return column.type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)


def _driver_rows(table: pa.Table, dialect: Any) -> list[tuple]:
    """Contract rows as the driver's parameter tuples, built column by column (`reasons` as JSON text)."""
    columns = []
    for name in PREDICTION_SCHEMA.names:
        if name == "reasons":
            present = pc.is_valid(table[name]).to_numpy(zero_copy_only=False)
            texts = iter([json.dumps(reasons) for reasons in table[name].filter(present).to_pylist()])
            columns.append([next(texts) if given else None for given in present.tolist()])
            continue
        processor = predictions.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        columns.append(python_values(table[name], processor))
    return list(zip(*columns, strict=True))


def _plain_driver_rows(rows: list[dict], binders: dict[str, Callable[[Any], Any]]) -> list[tuple] | None:
    """The driver's parameter tuples for contract rows given as plain dicts, exactly as `_driver_rows` makes them
    from `prediction_table(rows)`; None as soon as a row is anything but plainly valid, so that the Arrow path
    checks it and names what is wrong."""
    tuples = []
    for row in rows:
        if type(row) is not dict:
            return None
        try:
            values = [row[name] for name in PREDICTION_SCHEMA.names]
        except KeyError:
            return None
        vin, as_of, version, feature_set, probability, alarm, threshold, cell, reasons, source, request_id, made = values
        if not (type(vin) is type(version) is type(feature_set) is type(request_id) is str and source in SOURCES
                and type(as_of) is date and type(alarm) is bool
                and type(probability) is type(threshold) is float and 0.0 <= probability <= 1.0
                and 0.0 <= threshold <= 1.0
                and (cell is None or (type(cell) is int and -(2**31) <= cell < 2**31))
                and type(made) is datetime and made.tzinfo is not None and made.microsecond % 1000 == 0
                and (reasons is None or _plain_reasons(reasons))):
            return None
        values[8] = None if reasons is None else json.dumps(reasons)
        values[11] = made.astimezone(UTC)
        tuples.append(tuple(binders[name](value) if value is not None else None
                            for name, value in zip(PREDICTION_SCHEMA.names, values, strict=True)))
    return tuples


def _plain_reasons(reasons: object) -> bool:
    """A list of {"feature": str, "contribution": float, "value": float | None}, keys in that order."""
    return type(reasons) is list and all(
        type(reason) is dict and tuple(reason) == _REASON_KEYS and type(reason["feature"]) is str
        and type(reason["contribution"]) is float and (reason["value"] is None or type(reason["value"]) is float)
        for reason in reasons)


def _prediction(row: Any) -> dict:
    """A stored row as a contract dict (reasons parsed back from JSON)."""
    record = dict(row._mapping)
    record["reasons"] = None if record["reasons"] is None else json.loads(record["reasons"])
    return record
