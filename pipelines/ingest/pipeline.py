"""Ingest landing objects: read, map, check, de-duplicate, validate with GE, write frames, quarantine, manifest."""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import pyarrow as pa

from pipelines.config import Settings, load_settings
from pipelines.ingest.dedup import LakeKeys, partition_key, utc_dates
from pipelines.ingest.manifest import (
    ManifestEntry,
    load_manifest,
    pending_objects,
    save_entry,
    sha256_of,
    source_id_for,
    waits_for_mapping,
)
from pipelines.ingest.mapping import load_mappings, source_of
from pipelines.ingest.objects import (
    LoadedObject,
    ObjectOutcome,
    convert_alike,
    deduplicate,
    load_object,
)
from pipelines.schema import FRAME_PARQUET_OPTIONS
from pipelines.storage.lake import Lake, ObjectInfo

QUARANTINE_PREFIX = "quarantine"
DATA_DOCS_PREFIX = "reports/data_docs"
CHUNK_FRAMES = 2_000_000  # validate and write in chunks of about this many frames, to bound memory
WINDOW_ROWS = 100_000  # uploads are converted in windows of about this many rows, those alike together
WORKERS = min(4, os.cpu_count() or 1)  # Arrow, DuckDB and numpy release the GIL: threads use every core


class ContractViolation(RuntimeError):
    """Great Expectations found rows the row rules let through: a bug to fix, so nothing was written."""


@dataclass
class IngestSummary:
    """What one ingest run did; counts reconcile: rows_in = accepted + quarantined + duplicates."""

    run_id: str
    objects: int = 0
    unchanged: int = 0
    rejected_objects: int = 0
    rows_in: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    sentinels: dict[str, int] = field(default_factory=dict)
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    touched_dates: list[str] = field(default_factory=list)
    data_docs: str | None = None
    entries: list[ManifestEntry] = field(default_factory=list)
    # Seconds spent per stage, summed over threads (for benchmarks/ingest.py's breakdown).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.perf_counter() - started

    def add(self, entry: ManifestEntry) -> None:
        self.objects += 1
        self.rejected_objects += entry.status == "rejected"
        self.rows_in += entry.rows_in
        self.accepted += entry.accepted
        self.quarantined += entry.quarantined
        self.duplicates += entry.duplicates
        for name, n in entry.sentinels.items():
            self.sentinels[name] = self.sentinels.get(name, 0) + n
        for rule, n in entry.rejected_by_rule.items():
            self.rejected_by_rule[rule] = self.rejected_by_rule.get(rule, 0) + n
        self.touched_dates = sorted(set(self.touched_dates) | set(entry.dates))
        self.entries.append(entry)

    def reconciles(self) -> bool:
        return self.rows_in == self.accepted + self.quarantined + self.duplicates

    def counts(self) -> dict:
        """The run's figures as plain values (for XCom, asset extras and the CLI)."""
        return {"objects": self.objects, "unchanged": self.unchanged, "rejected_objects": self.rejected_objects,
                "rows_in": self.rows_in, "accepted": self.accepted, "quarantined": self.quarantined,
                "duplicates": self.duplicates, "sentinels": dict(self.sentinels),
                "rejected_by_rule": dict(self.rejected_by_rule), "touched_dates": list(self.touched_dates),
                "data_docs": self.data_docs}


def _write_outcome(lake: Lake, outcome: ObjectOutcome, previous: ManifestEntry | None) -> None:
    """Frames per date partition, quarantine, then the manifest record last (so a crash means a clean redo).

    What an earlier version of the object left behind (other dates, quarantine, a copied file) is removed;
    a new object has nothing to remove, which spares a few file-system calls per upload.
    """
    entry = outcome.entry
    if outcome.frames is not None:
        dates = utc_dates(outcome.frames["ts"])
        for date in entry.dates:
            rows = outcome.frames if len(entry.dates) == 1 else outcome.frames.filter(pa.array(dates == date))
            lake.write_parquet(partition_key(date, entry.source_id), rows, FRAME_PARQUET_OPTIONS)
    quarantine_key = f"{QUARANTINE_PREFIX}/rows/{entry.source_id}.parquet"
    original_key = f"{QUARANTINE_PREFIX}/files/{entry.source_id}/{PurePosixPath(entry.key).name}"
    if outcome.quarantine.num_rows:
        lake.write_parquet(quarantine_key, outcome.quarantine)
    if outcome.original is not None:
        lake.write_bytes(original_key, outcome.original)
    if previous is not None:
        for stale in sorted(set(previous.dates) - set(entry.dates)):
            lake.delete(partition_key(stale, entry.source_id))
        if not outcome.quarantine.num_rows:
            lake.delete(quarantine_key)
        if outcome.original is None:
            lake.delete(original_key)
    save_entry(lake, entry)


def _validate_chunk(lake: Lake, outcomes: list[ObjectOutcome], run_id: str, earliest: datetime, latest: datetime,
                    settings: Settings) -> str | None:
    """Great Expectations over the chunk's accepted frames; Data Docs go to the lake's reports/ zone."""
    from pipelines.ingest.data_docs_mirror import mirrored_site, site_url
    from pipelines.quality.runner import validate_frames

    tables = [o.frames for o in outcomes if o.frames is not None]
    if not tables:
        return None
    metrics = pa.concat_tables([o.metrics for o in outcomes if o.frames is not None])
    frames = pa.concat_tables(tables)
    if settings.data_docs and not lake.is_local:
        # GE's site builder writes files: on S3 it works in a local mirror of the site, published when it is done.
        with mirrored_site(lake, DATA_DOCS_PREFIX, settings) as docs_dir:
            report = validate_frames(frames, f"ingest {run_id}", docs_dir, earliest, latest, metrics=metrics)
        docs = site_url(lake, DATA_DOCS_PREFIX)
    else:
        docs_dir = Path(lake.path(DATA_DOCS_PREFIX)) if settings.data_docs else None
        report = validate_frames(frames, f"ingest {run_id}", docs_dir, earliest, latest, metrics=metrics)
        docs = str(report.docs_index) if report.docs_index else None
    if not report.success:
        raise ContractViolation(f"Great Expectations rejected frames the row rules accepted (nothing written): {report.failures}")
    return docs


def ingest_pending(lake: Lake | None = None, settings: Settings | None = None, keys: list[str] | None = None,
                   progress: Callable[[int, int], None] | None = None, now: datetime | None = None,
                   run_id: str | None = None) -> IngestSummary:
    """Ingest every pending landing object (or just `keys`); safe to run again: done objects are skipped.

    `progress(done_rows, done_objects)` is called after each object.
    """
    settings = settings or load_settings()
    lake = lake or Lake.from_settings(settings)
    now = now or datetime.now(UTC)
    run_id = run_id or f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    earliest = datetime.fromisoformat(settings.earliest_ts).replace(tzinfo=UTC)
    latest = now + timedelta(hours=settings.max_clock_skew_hours)
    mappings = load_mappings(settings.mappings_dir)
    manifest = load_manifest(lake)
    infos = pending_objects(lake, manifest, settings.ingest_max_objects, set(mappings))
    if keys is not None:
        wanted = set(keys)
        infos = [i for i in infos if i.key in wanted]
    summary = IngestSummary(run_id)
    # Touched-only objects keep their frames, so dedup must still see them; only changed (or new) objects are replaced.
    touched = {i.key for i in infos if i.key in manifest and not waits_for_mapping(manifest[i.key], set(mappings))
               and sha256_of(lake.iter_chunks(i.key)) == manifest[i.key].sha256}
    lake_keys = LakeKeys(lake, {source_id_for(i.key) for i in infos if i.key not in touched})
    chunk: list[tuple[ObjectOutcome, ManifestEntry | None]] = []
    chunk_rows = 0

    def load(info: ObjectInfo) -> LoadedObject | None:
        if info.key in touched:
            return None
        with summary.timed("read and parse"):
            return load_object(info, lake.read_bytes(info.key), mappings.get(source_of(info.key)), sorted(mappings), now, run_id)

    def convert(window: list[LoadedObject]) -> list[ObjectOutcome]:
        with summary.timed("map and check"):
            return convert_alike(window, earliest, latest, now)

    def write(pair: tuple[ObjectOutcome, ManifestEntry | None]) -> None:
        with summary.timed("write"):
            _write_outcome(lake, *pair)

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ingest") as pool:
        def flush() -> None:
            nonlocal chunk, chunk_rows
            with summary.timed("great expectations"):
                docs = _validate_chunk(lake, [o for o, _ in chunk], run_id, earliest, latest, settings)
            summary.data_docs = docs or summary.data_docs
            list(pool.map(write, chunk))
            for outcome, _ in chunk:
                summary.add(outcome.entry)
            chunk, chunk_rows = [], 0

        def settle(outcomes: list[ObjectOutcome]) -> None:
            nonlocal chunk_rows
            for outcome in outcomes:
                with summary.timed("dedup"):
                    deduplicate(outcome, lake_keys)
                chunk.append((outcome, manifest.get(outcome.entry.key)))
                chunk_rows += outcome.entry.rows_in
                if progress:
                    progress(outcome.entry.rows_in, 1)
            if chunk_rows >= CHUNK_FRAMES:
                flush()

        converting: deque[Future] = deque()  # windows being converted, settled in key order
        window: list[LoadedObject] = []
        window_rows = 0

        def convert_window() -> None:
            nonlocal window, window_rows
            if window:
                converting.append(pool.submit(convert, window))
            window, window_rows = [], 0
            while len(converting) > WORKERS:
                settle(converting.popleft().result())

        # Objects are read and parsed in parallel, a few ahead; within a window of uploads, those alike
        # are converted together (a window per worker); dedup and writes follow in key order.
        for info, loaded in zip(infos, _ordered(pool, load, infos, ahead=4 * WORKERS), strict=True):
            if loaded is None:  # touched, not changed: note the new stamp, keep the result
                previous = manifest[info.key]
                previous.size, previous.mtime_ns = info.size, info.mtime_ns
                save_entry(lake, previous)
                summary.unchanged += 1
                if progress:
                    progress(0, 1)
                continue
            window.append(loaded)
            window_rows += loaded.batch.table.num_rows if loaded.batch is not None else 0
            if window_rows >= WINDOW_ROWS:
                convert_window()
        convert_window()
        while converting:
            settle(converting.popleft().result())
        if chunk:
            flush()
    return summary


def _ordered(pool: ThreadPoolExecutor, work: Callable, items: list, ahead: int) -> Iterator:
    """work(item) for each item, in order, with at most `ahead` items in flight (bounded memory)."""
    window: deque[Future] = deque()
    items_iter = iter(items)
    for item in itertools.islice(items_iter, ahead):
        window.append(pool.submit(work, item))
    while window:
        result = window.popleft().result()
        for item in itertools.islice(items_iter, 1):
            window.append(pool.submit(work, item))
        yield result


def pending_landing_keys(lake: Lake | None = None, settings: Settings | None = None) -> list[str]:
    """Keys of landing objects ingest has not processed in their current version (what the sensor waits for)."""
    settings = settings or load_settings()
    lake = lake or Lake.from_settings(settings)
    mapped_sources = set(load_mappings(settings.mappings_dir))
    return [info.key for info in pending_objects(lake, load_manifest(lake), settings.ingest_max_objects, mapped_sources)]
