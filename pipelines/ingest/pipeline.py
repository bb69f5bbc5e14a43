"""Ingest landing objects: read, map, check, de-duplicate, validate with GE, write frames, quarantine, manifest."""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa

from pipelines.config import Settings, load_settings
from pipelines.ingest.checks import check_frames
from pipelines.ingest.convert import Segments, apply_mapping
from pipelines.ingest.dedup import LakeKeys, duplicates_within, partition_key, utc_dates
from pipelines.ingest.manifest import (
    ManifestEntry,
    load_manifest,
    pending_objects,
    save_entry,
    sha256_of,
    source_id_for,
    waits_for_mapping,
)
from pipelines.ingest.mapping import Mapping, load_mappings, source_of
from pipelines.ingest.readers import RawBatch, UnreadableObject, read_object
from pipelines.ingest.rejections import Rejections, quarantine_record
from pipelines.schema import QUARANTINE_SCHEMA
from pipelines.storage.lake import Lake, ObjectInfo

log = logging.getLogger(__name__)

QUARANTINE_PREFIX = "quarantine"
DATA_DOCS_PREFIX = "reports/data_docs"
CHUNK_FRAMES = 2_000_000
GROUP_ROWS = 100_000  # objects alike are converted together up to about this many rows
WORKERS = min(4, os.cpu_count() or 1)  # Arrow, DuckDB and numpy release the GIL: threads use every core  # validate and write in chunks of about this many frames, to bound memory


class ContractViolation(RuntimeError):
    """Great Expectations found rows the row rules let through: a bug to fix, so nothing was written."""


@dataclass
class ObjectOutcome:
    """One processed object, held in memory until its chunk is validated and written."""

    entry: ManifestEntry
    frames: pa.Table | None
    quarantine: pa.Table
    original: bytes | None = None  # kept for an unreadable object, copied into quarantine
    metrics: pa.Table | None = None  # frame_metrics of `frames`, row for row, for Great Expectations


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


def _status(entry: ManifestEntry) -> str:
    if entry.accepted == 0 and entry.duplicates == 0:
        return "rejected"
    return "partial" if entry.quarantined else "ingested"


def _bad_line_records(batch: RawBatch, key: str, source_id: str, now: datetime) -> list[dict]:
    return [quarantine_record(key, source_id, line.line_number, "unparseable_line", "", "", line.reason, line.text, now)
            for line in batch.bad_lines]


@dataclass
class LoadedObject:
    """One landing object read and parsed (in parallel), waiting to be converted with others like it."""

    info: ObjectInfo
    entry: ManifestEntry
    mapping: Mapping | None
    batch: RawBatch | None = None
    outcome: ObjectOutcome | None = None  # already decided: the whole object is rejected


def load_object(info: ObjectInfo, data: bytes, mapping: Mapping | None, known_mappings: list[str], now: datetime,
                run_id: str) -> LoadedObject:
    """Hash and parse one object; an object without a mapping, or unreadable, is decided here."""
    key, source_id = info.key, source_id_for(info.key)
    entry = ManifestEntry(key=key, source_id=source_id, source=source_of(key), size=info.size, mtime_ns=info.mtime_ns,
                          sha256=sha256_of([data]), status="rejected", mapping=mapping.name if mapping else None,
                          ingested_at=now.isoformat(), run_id=run_id)

    def whole_file(rule: str, reason: str) -> LoadedObject:
        entry.error = reason
        entry.rejected_by_rule = {rule: 1}
        record = quarantine_record(key, source_id, 0, rule, "", PurePosixPath(key).name, reason, None, now)
        return LoadedObject(info, entry, mapping,
                            outcome=ObjectOutcome(entry, None, pa.Table.from_pylist([record], QUARANTINE_SCHEMA), data))

    if mapping is None:
        return whole_file("no_mapping", f"no column mapping for source {entry.source!r} (key {key}); known sources: "
                          f"{', '.join(known_mappings)}. Put a YAML mapping in CELLGUARD_MAPPINGS_DIR.")
    try:
        batch = read_object(key, data)
    except UnreadableObject as exc:
        return whole_file("unreadable", str(exc))
    entry.file_format = batch.file_format
    return LoadedObject(info, entry, mapping, batch)


def convert_objects(loaded: list[LoadedObject], earliest: datetime, latest: datetime, now: datetime) -> list[ObjectOutcome]:
    """Map and check objects that share a mapping and a column layout, in one vectorised pass.

    Duplicates against other objects are settled afterwards, in key order, by `deduplicate`.
    """
    mapping = loaded[0].mapping
    raw = pa.concat_tables([item.batch.table for item in loaded])
    segments = Segments([item.info.key for item in loaded],
                        np.concatenate(([0], np.cumsum([item.batch.table.num_rows for item in loaded]))))
    rejections = Rejections(raw.num_rows)
    names = raw.column_names
    missing = mapping.required_source_columns(names)
    frames = metrics = None
    if missing:
        lacking = "; ".join(f"{col} needs {what}" for col, what in missing.items())
        rejections.reject_all("required_column", ",".join(missing),
                              f"file lacks what mapping {mapping.name!r} needs: {lacking} (file columns: {', '.join(names[:12])}"
                              f"{', …' if len(names) > 12 else ''})")
    else:
        extra = sorted(set(names) - mapping.source_columns(names))
        mapped = apply_mapping(raw, mapping, segments, rejections)
        for item, sentinels, warnings in zip(loaded, mapped.segment_sentinels, mapped.segment_warnings, strict=True):
            if extra:
                item.entry.warnings.append(f"ignored columns not in mapping {mapping.name!r}: {', '.join(extra[:20])}"
                                           f"{' …' if len(extra) > 20 else ''}")
            item.entry.sentinels = sentinels
            item.entry.warnings += warnings
        frames = mapped.frames
        metrics = check_frames(frames, rejections, earliest, latest, mapped.list_metrics, segments.ids)

    keep = ~rejections.rejected
    accepted, accepted_metrics = (frames.filter(pa.array(keep)), metrics.filter(pa.array(keep))) if frames is not None else (None, None)
    kept_before = np.concatenate(([0], np.cumsum(keep)))  # accepted rows of object i: kept_before[start_i]..[stop_i]
    outcomes = []
    for index, item in enumerate(loaded):
        start, stop = int(segments.starts[index]), int(segments.starts[index + 1])
        first, last = int(kept_before[start]), int(kept_before[stop])
        entry, batch = item.entry, item.batch
        quarantine = rejections.to_table(raw, entry.key, entry.source_id, batch.row_numbers, now, start, stop)
        if batch.bad_lines:
            lines = pa.Table.from_pylist(_bad_line_records(batch, entry.key, entry.source_id, now), QUARANTINE_SCHEMA)
            quarantine = pa.concat_tables([lines, quarantine])
        entry.rows_in = batch.rows_in
        entry.accepted = last - first if accepted is not None else 0
        entry.quarantined = rejections.count_in(start, stop) + len(batch.bad_lines)
        entry.rejected_by_rule = rejections.by_rule(start, stop)
        if batch.bad_lines:
            entry.rejected_by_rule["unparseable_line"] = len(batch.bad_lines)
        if not entry.accepted:
            outcomes.append(ObjectOutcome(entry, None, quarantine))
        else:
            outcomes.append(ObjectOutcome(entry, accepted.slice(first, last - first), quarantine,
                                          metrics=accepted_metrics.slice(first, last - first)))
    return outcomes


def _same_layout(a: LoadedObject, b: LoadedObject) -> bool:
    """Objects that can be converted together: same mapping, same columns and types, rows in both."""
    return (a.mapping is b.mapping and a.batch.table.schema == b.batch.table.schema
            and a.batch.table.num_rows > 0 and b.batch.table.num_rows > 0)


def deduplicate(outcome: ObjectOutcome, keys: LakeKeys) -> None:
    """Drop frames already in the file, the lake or an earlier object of this run; settle counts and status."""
    entry, accepted = outcome.entry, outcome.frames
    if accepted is not None:
        vin = accepted["vin"].to_numpy(zero_copy_only=False)
        ts_ms = accepted["ts"].cast(pa.int64()).to_numpy(zero_copy_only=False)
        dates = utc_dates(accepted["ts"])
        dup = duplicates_within(vin, ts_ms, np.ones(len(vin), dtype=bool)) | keys.seen(dates, vin, ts_ms)
        keep = ~dup
        vin, ts_ms, dates = vin[keep], ts_ms[keep], dates[keep]
        keys.add(dates, vin, ts_ms)
        entry.duplicates, entry.accepted = int(dup.sum()), int(keep.sum())
        entry.dates = sorted(set(dates.tolist()))
        if not entry.accepted:
            outcome.frames = outcome.metrics = None
        else:
            if not keep.all():
                accepted, outcome.metrics = accepted.filter(pa.array(keep)), outcome.metrics.filter(pa.array(keep))
            # Files are written in (vin, ts) order; most uploads already are, and sorting list columns is costly.
            outcome.frames = accepted if _in_key_order(vin, ts_ms) else accepted.sort_by([("vin", "ascending"), ("ts", "ascending")])
    if entry.error is None or entry.rows_in:
        entry.status = _status(entry)
    if entry.status == "rejected" and entry.error is None and outcome.quarantine.num_rows:
        entry.error = outcome.quarantine["reason"][0].as_py()


def _in_key_order(vin: np.ndarray, ts_ms: np.ndarray) -> bool:
    if len(ts_ms) < 2:
        return True
    same_vin = vin[1:] == vin[:-1]
    return bool(((vin[1:] > vin[:-1]) | (same_vin & (ts_ms[1:] >= ts_ms[:-1]))).all())


def _write_outcome(lake: Lake, outcome: ObjectOutcome, previous: ManifestEntry | None) -> None:
    """Frames per date partition, quarantine, then the manifest record last (so a crash means a clean redo)."""
    entry = outcome.entry
    if outcome.frames is not None:
        dates = utc_dates(outcome.frames["ts"])
        for date in entry.dates:
            lake.write_parquet(partition_key(date, entry.source_id), outcome.frames.filter(pa.array(dates == date)))
    for stale in sorted(set(previous.dates if previous else []) - set(entry.dates)):
        lake.delete(partition_key(stale, entry.source_id))
    quarantine_key = f"{QUARANTINE_PREFIX}/rows/{entry.source_id}.parquet"
    if outcome.quarantine.num_rows:
        lake.write_parquet(quarantine_key, outcome.quarantine)
    else:
        lake.delete(quarantine_key)
    original_key = f"{QUARANTINE_PREFIX}/files/{entry.source_id}/{PurePosixPath(entry.key).name}"
    if outcome.original is not None:
        lake.write_bytes(original_key, outcome.original)
    else:
        lake.delete(original_key)
    save_entry(lake, entry)


def _validate_chunk(lake: Lake, outcomes: list[ObjectOutcome], run_id: str, earliest: datetime, latest: datetime,
                    settings: Settings) -> str | None:
    """Great Expectations over the chunk's accepted frames; Data Docs go to the lake's reports/ zone."""
    from pipelines.quality.runner import validate_frames

    tables = [o.frames for o in outcomes if o.frames is not None]
    if not tables:
        return None
    metrics = pa.concat_tables([o.metrics for o in outcomes if o.frames is not None])
    docs_dir = None
    if settings.data_docs and lake.is_local:
        docs_dir = Path(lake.path(DATA_DOCS_PREFIX))
    report = validate_frames(pa.concat_tables(tables), f"ingest {run_id}", docs_dir, earliest, latest, metrics=metrics)
    if not report.success:
        raise ContractViolation(f"Great Expectations rejected frames the row rules accepted (nothing written): {report.failures}")
    return str(report.docs_index) if report.docs_index else None


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
        return load_object(info, lake.read_bytes(info.key), mappings.get(source_of(info.key)), sorted(mappings), now, run_id)

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ingest") as pool:
        group: list[LoadedObject] = []
        group_rows = 0

        def flush() -> None:
            nonlocal chunk, chunk_rows
            docs = _validate_chunk(lake, [o for o, _ in chunk], run_id, earliest, latest, settings)
            summary.data_docs = docs or summary.data_docs
            list(pool.map(lambda pair: _write_outcome(lake, *pair), chunk))
            for outcome, _ in chunk:
                summary.add(outcome.entry)
            chunk, chunk_rows = [], 0

        def settle(outcomes: list[ObjectOutcome]) -> None:
            nonlocal chunk_rows
            for outcome in outcomes:
                deduplicate(outcome, lake_keys)
                chunk.append((outcome, manifest.get(outcome.entry.key)))
                chunk_rows += outcome.entry.rows_in
                if progress:
                    progress(outcome.entry.rows_in, 1)
            if chunk_rows >= CHUNK_FRAMES:
                flush()

        converting: deque[Future] = deque()  # groups being converted, settled in key order

        def convert_group() -> None:
            nonlocal group, group_rows
            if group:
                converting.append(pool.submit(convert_objects, group, earliest, latest, now))
            group, group_rows = [], 0
            while len(converting) > WORKERS:
                settle(converting.popleft().result())

        # Objects are read and parsed in parallel, a few ahead; objects alike are converted together, in
        # parallel too; dedup and writes follow in key order.
        for info, loaded in zip(infos, _ordered(pool, load, infos, ahead=4 * WORKERS), strict=True):
            if loaded is None:  # touched, not changed: note the new stamp, keep the result
                previous = manifest[info.key]
                previous.size, previous.mtime_ns = info.size, info.mtime_ns
                save_entry(lake, previous)
                summary.unchanged += 1
                if progress:
                    progress(0, 1)
                continue
            if loaded.outcome is not None or (group and not _same_layout(group[0], loaded)) or group_rows >= GROUP_ROWS:
                convert_group()
            if loaded.outcome is not None:
                decided: Future = Future()
                decided.set_result([loaded.outcome])
                converting.append(decided)
                continue
            group.append(loaded)
            group_rows += loaded.batch.table.num_rows
        convert_group()
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
