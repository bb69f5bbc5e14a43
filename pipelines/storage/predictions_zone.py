"""The `predictions` zone: batch and API predictions as Parquet, one object per as_of date and writer.

    predictions/dt=D/batch-<model_version>.parquet   one batch inference run's rows for as_of D (replaced on re-run)
    predictions/dt=D/api-<request_id>-<hash>.parquet  one flush of the API's buffer, named by its rows

Every object holds PREDICTION_SCHEMA rows (zstd). The event store is the system of record: the API records a
prediction there before anything else (`PredictionBuffer.add`), keeps it in memory and writes it here in
flushes; a row reaching the lake is stamped `flushed_at` in the store. A crash between recording and flushing
loses nothing: `PredictionBuffer.recover()` writes the store's unflushed rows at the next start. A crash between
writing an object and stamping its rows can leave a row in two objects; readers (`read_predictions`, the
catalog view) keep one row per prediction key, so the zone reads exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import weakref
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage.event_store import (
    PREDICTION_KEY,
    PredictionEventStore,
    prediction_keys,
    prediction_table,
)
from pipelines.storage.lake import Lake

PREFIX = "predictions"
_PARTITION = re.compile(r"^predictions/dt=(?P<dt>\d{4}-\d{2}-\d{2})/(?P<name>[^/]+)\.parquet$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SORT = [("as_of", "ascending"), ("vin", "ascending"), ("created_at", "ascending"), ("source", "ascending"),
         ("request_id", "ascending"), ("model_version", "ascending")]

log = logging.getLogger(__name__)


def partition_key(as_of: date, source: str, part: str) -> str:
    """`predictions/dt=YYYY-MM-DD/<source>-<part>.parquet`."""
    return f"{PREFIX}/dt={as_of.isoformat()}/{source}-{part}.parquet"


def write_batch(lake: Lake, as_of: date, model_version: str, table: pa.Table) -> str:
    """Replace one batch run's predictions for as_of (no rows deletes them); returns the key.

    The rows are sorted before writing, so the same rows give the same bytes, whatever their order."""
    if not model_version or _UNSAFE.search(model_version):
        raise ValueError(f"model version {model_version!r} cannot name a lake object (letters, digits, . _ - only)")
    table = _unique(prediction_table(table))
    for column, expected in (("as_of", as_of), ("source", "batch"), ("model_version", model_version)):
        wrong = pc.invert(pc.equal(table[column], pa.scalar(expected, PREDICTION_SCHEMA.field(column).type)))
        if pc.any(wrong).as_py():
            row = pc.index(wrong, True).as_py()
            raise ValueError(f"batch row {row + 1}: {column} = {table[column][row].as_py()!r}, but this batch "
                             f"object holds {column} = {expected!r} only")
    key = partition_key(as_of, "batch", model_version)
    if table.num_rows:
        lake.write_parquet(key, table.sort_by(_SORT))
    else:
        lake.delete(key)
    return key


def write_rows(lake: Lake, rows: pa.Table) -> list[str]:
    """Write predictions as one object per (as_of, source), each named by its rows; returns the keys.

    The same rows always give the same key and bytes, so a retried write replaces its own object; different
    rows give a different key, so no write ever replaces rows another write put in the lake."""
    table = _unique(prediction_table(rows))
    keys = []
    for as_of, source in sorted(set(zip(table["as_of"].to_pylist(), table["source"].to_pylist(), strict=True))):
        mask = pc.and_(pc.equal(table["as_of"], pa.scalar(as_of, pa.date32())), pc.equal(table["source"], source))
        group = table.filter(mask).sort_by(_SORT)
        digest = hashlib.sha256("\n".join(sorted("\x1f".join(map(str, key)) for key in prediction_keys(group)))
                                .encode()).hexdigest()[:16]
        first_request = _UNSAFE.sub("_", group["request_id"][0].as_py())[:40].strip("._-") or "rows"
        key = partition_key(as_of, source, f"{first_request}-{digest}")
        lake.write_parquet(key, group)
        keys.append(key)
    return keys


def publish_batch(lake: Lake, store: PredictionEventStore, as_of: date, model_version: str, table: pa.Table) -> str:
    """What batch inference does with its rows: record them, write the batch object, stamp them flushed."""
    table = prediction_table(table)
    store.record_predictions(table)
    key = write_batch(lake, as_of, model_version, table)
    store.mark_flushed(prediction_keys(table), datetime.now(UTC))
    return key


def pending_table(parts: list[list[dict] | pa.Table]) -> pa.Table:
    """Buffered predictions as one contract table: consecutive lists of rows become one table at once."""
    tables, rows = [], []
    for part in parts:
        if isinstance(part, list):
            rows.extend(part)
            continue
        if rows:
            tables.append(prediction_table(rows))
            rows = []
        tables.append(part)
    if rows:
        tables.append(prediction_table(rows))
    return pa.concat_tables(tables) if tables else prediction_table([])


def _unique(table: pa.Table) -> pa.Table:
    """One row per prediction key, the first one kept."""
    if table.num_rows < 2:
        return table
    numbered = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    first = numbered.group_by(list(PREDICTION_KEY), use_threads=False).aggregate([("_row", "min")])["_row_min"]
    return table.take(pc.take(first, pc.sort_indices(first)))  # the kept rows, in their original order


def read_predictions(lake: Lake, first: date | None = None, last: date | None = None) -> pa.Table:
    """Predictions with as_of in [first, last] (either end open), one row per key, by as_of, vin and time."""
    keys = []
    for info in lake.list(PREFIX):
        match = _PARTITION.match(info.key)
        if match:
            day = date.fromisoformat(match["dt"])
            if (first is None or day >= first) and (last is None or day <= last):
                keys.append(info.key)
    if not keys:
        return PREDICTION_SCHEMA.empty_table()
    table = ds.dataset([lake.path(k) for k in keys], schema=PREDICTION_SCHEMA, format="parquet",
                       filesystem=lake.fs).to_table()
    return _unique(table).sort_by(_SORT)


class PredictionBuffer:
    """Predictions recorded in the event store at once and written to the lake in batches.

    A flush happens when `max_rows` are waiting (in the `add` that reaches it) or when the oldest has waited
    `max_seconds` (a daemon timer thread). `close()` flushes the rest; `recover()` at start writes what an
    earlier process recorded but never flushed. Thread-safe: API workers call `add` at once."""

    def __init__(self, lake: Lake, store: PredictionEventStore, max_rows: int = 500, max_seconds: float = 30.0):
        if max_rows < 1 or not max_seconds > 0:
            raise ValueError(f"a prediction buffer needs max_rows >= 1 and max_seconds > 0, not {max_rows}, {max_seconds}")
        self.lake, self.store = lake, store
        self.max_rows, self.max_seconds = max_rows, max_seconds
        self._lock = threading.Lock()  # guards _pending and _closed
        self._flush_lock = threading.Lock()  # one flush at a time, so a retried object is never written twice at once
        self._pending: list[tuple[float, list[dict] | pa.Table]] = []  # (monotonic time added, rows)
        self._pending_rows = 0
        self._closed = False
        self._stop = threading.Event()
        # The timer holds only a weak reference: a buffer dropped without close() (a crash, in tests) ends it too.
        weakref.finalize(self, self._stop.set)
        tick = min(1.0, max(0.01, max_seconds / 4))
        self._timer = threading.Thread(target=_flush_when_due, args=(weakref.ref(self), self._stop, tick),
                                       name="prediction-buffer-flush", daemon=True)
        self._timer.start()

    def __enter__(self) -> PredictionBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending_rows(self) -> int:
        """Rows recorded but not yet written to the lake by this buffer."""
        with self._lock:
            return self._pending_rows

    def add(self, rows: list[dict] | pa.Table) -> int:
        """Record predictions in the event store (durable when this returns), then buffer them for the lake.

        Returns how many were new to the store. A failed flush is logged, not raised: the rows are recorded,
        and the next flush, close() or recover() writes them."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the prediction buffer is closed")
        new = self.store.record_predictions(rows)  # checks the rows against the contract first
        if new == 0:
            return 0  # every key was recorded before: it is buffered, or in the lake already
        with self._lock:  # a list stays a list until the flush makes one table of every pass's rows
            self._pending.append((time.monotonic(), rows if isinstance(rows, list) else prediction_table(rows)))
            self._pending_rows += len(rows)
            full = self._pending_rows >= self.max_rows or self._closed
        if full:
            try:
                self.flush()
            except Exception:
                log.exception("writing %d buffered predictions to the lake failed; they stay recorded and buffered",
                              self.pending_rows)
        return new

    def flush(self) -> int:
        """Write every buffered prediction to the lake and stamp it in the store; returns how many were written."""
        with self._flush_lock:
            with self._lock:
                taken, self._pending, self._pending_rows = self._pending, [], 0
            if not taken:
                return 0
            table = pending_table([rows for _, rows in taken])
            try:
                write_rows(self.lake, table)
                self.store.mark_flushed(prediction_keys(table), datetime.now(UTC))
            except BaseException:
                with self._lock:  # back in front, keeping their age, for the next attempt
                    self._pending = taken + self._pending
                    self._pending_rows += table.num_rows
                raise
            return table.num_rows

    def _flush_if_due(self) -> None:
        with self._lock:
            due = bool(self._pending) and time.monotonic() - self._pending[0][0] >= self.max_seconds
        if due:
            try:
                self.flush()
            except Exception:
                log.exception("writing buffered predictions to the lake failed; retrying in %s s", self.max_seconds)
                with self._lock:  # wait max_seconds again instead of retrying every tick
                    now = time.monotonic()
                    self._pending = [(now, rows) for _, rows in self._pending]

    def close(self) -> None:
        """Stop the timer and flush the rest (a clean shutdown loses nothing). Closing twice is fine."""
        with self._lock:
            self._closed = True
        self._stop.set()
        if self._timer is not threading.current_thread():
            self._timer.join()
        self.flush()

    def recover(self) -> int:
        """Write what the store holds unflushed (recorded by a process that stopped before flushing); returns rows.

        Rows this buffer holds are left to its own flush."""
        table = self.store.unflushed()
        with self._lock:
            mine = {key for _, rows in self._pending for key in prediction_keys(pending_table([rows]))}
        if mine and table.num_rows:
            keep = [key not in mine for key in prediction_keys(table)]
            table = table.filter(pa.array(keep, pa.bool_()))
        if table.num_rows == 0:
            return 0
        with self._flush_lock:
            write_rows(self.lake, table)
            self.store.mark_flushed(prediction_keys(table), datetime.now(UTC))
        return table.num_rows


def _flush_when_due(buffer_ref: weakref.ref[PredictionBuffer], stop: threading.Event, tick: float) -> None:
    """The timer thread: every tick, flush the buffer if its oldest row has waited long enough."""
    while not stop.wait(tick):
        buffer = buffer_ref()
        if buffer is None:
            return
        buffer._flush_if_due()
        del buffer
