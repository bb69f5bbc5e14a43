"""What ingest decides about landing objects, before anything is written: read, map, check, de-duplicate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.checks import check_frames
from pipelines.ingest.convert import Segments, apply_mapping
from pipelines.ingest.dedup import LakeKeys, file_order, utc_dates, vin_ranks
from pipelines.ingest.manifest import ManifestEntry, sha256_of, source_id_for
from pipelines.ingest.mapping import Mapping, source_of
from pipelines.ingest.readers import RawBatch, UnreadableObject, read_object
from pipelines.ingest.rejections import Rejections, quarantine_record
from pipelines.schema import QUARANTINE_SCHEMA
from pipelines.storage.lake import ObjectInfo


@dataclass
class ObjectOutcome:
    """One processed object, held in memory until its chunk is validated and written."""

    entry: ManifestEntry
    frames: pa.Table | None
    quarantine: pa.Table
    original: bytes | None = None  # kept for an unreadable object, copied into quarantine
    metrics: pa.Table | None = None  # frame_metrics of `frames`, row for row, for Great Expectations


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
    raw = pa.concat_tables([item.batch.table for item in loaded], promote_options="permissive")
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
        vin_rank = vin_ranks(frames["vin"])  # shared by the cell-count check and the file order
        metrics = check_frames(frames, rejections, earliest, latest, mapped.list_metrics, segments.ids, vin_rank)

    keep = ~rejections.rejected
    if frames is None:
        rows, repeated = np.flatnonzero(keep), np.zeros(len(keep), dtype=bool)
        accepted = accepted_metrics = None
    else:
        ts_ms = pc.fill_null(frames["ts"].cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        rows, repeated = file_order(vin_rank, ts_ms, segments.ids, keep)
        if len(rows) == frames.num_rows and (rows[1:] > rows[:-1]).all():  # the usual window: nothing to copy
            accepted, accepted_metrics = frames, metrics
        else:  # one `take` drops rejected and repeated rows and sorts: list columns are copied once
            accepted, accepted_metrics = frames.take(pa.array(rows)), metrics.take(pa.array(rows))
    # Kept rows are grouped by object, in object order: object i's are kept_before[i]..kept_before[i + 1].
    kept_before = np.searchsorted(segments.ids[rows], np.arange(len(loaded) + 1))
    outcomes = []
    for index, item in enumerate(loaded):
        start, stop = int(segments.starts[index]), int(segments.starts[index + 1])
        first, last = int(kept_before[index]), int(kept_before[index + 1])
        entry, batch = item.entry, item.batch
        quarantine = rejections.to_table(raw, entry.key, entry.source_id, batch.row_numbers, now, start, stop)
        if batch.bad_lines:
            lines = pa.Table.from_pylist(_bad_line_records(batch, entry.key, entry.source_id, now), QUARANTINE_SCHEMA)
            quarantine = pa.concat_tables([lines, quarantine])
        entry.rows_in = batch.rows_in
        entry.accepted = last - first if accepted is not None else 0
        entry.duplicates = int(repeated[start:stop].sum())
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


def layout_of(item: LoadedObject) -> tuple:
    """Objects with the same layout (mapping, columns and types) can be converted in one pass."""
    if item.outcome is not None or not item.batch.table.num_rows:
        return ("alone", item.info.key)
    # Files of one layout may differ in column types (a CSV column of whole numbers one day, decimals the
    # next) and in how many wide cell and probe columns they have (pack sizes): concatenation promotes types
    # and pads missing wide columns with empty cells, which every conversion accepts.
    names = item.batch.table.column_names
    wide = {c for spec in (item.mapping.cells, item.mapping.probes) for c in spec.wide_columns(names)}
    return (item.mapping.name, tuple(n for n in names if n not in wide), bool(wide))


def convert_alike(window: list[LoadedObject], earliest: datetime, latest: datetime, now: datetime) -> list[ObjectOutcome]:
    """Outcomes for a window of loaded objects, in the window's order; objects alike are converted together."""
    layouts: dict[tuple, list[LoadedObject]] = {}
    for item in window:
        layouts.setdefault(layout_of(item), []).append(item)
    outcomes: dict[str, ObjectOutcome] = {}
    for items in layouts.values():
        if items[0].outcome is not None:
            outcomes[items[0].info.key] = items[0].outcome
            continue
        try:
            converted = convert_objects(items, earliest, latest, now)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # types that do not promote (numbers and text): one by one
            converted = [o for item in items for o in convert_objects([item], earliest, latest, now)]
        outcomes.update((o.entry.key, o) for o in converted)
    return [outcomes[item.info.key] for item in window]


def deduplicate(outcome: ObjectOutcome, keys: LakeKeys) -> None:
    """Drop frames the lake or an earlier object of this run already holds; settle counts and status.

    Repeats within the object were dropped when it was converted; frames stay in (vin, ts) order.
    """
    entry, accepted = outcome.entry, outcome.frames
    if accepted is not None:
        vin = accepted["vin"].to_numpy(zero_copy_only=False)
        ts_ms = accepted["ts"].cast(pa.int64()).to_numpy(zero_copy_only=False)
        dates = utc_dates(accepted["ts"])
        seen = keys.seen(dates, vin, ts_ms)
        if seen.any():  # a re-delivery: rare, so the copy is too
            kept = ~seen
            vin, ts_ms, dates = vin[kept], ts_ms[kept], dates[kept]
            outcome.frames, outcome.metrics = accepted.filter(pa.array(kept)), outcome.metrics.filter(pa.array(kept))
        keys.add(dates, vin, ts_ms)
        entry.duplicates += int(seen.sum())
        entry.accepted = len(vin)
        entry.dates = sorted(set(dates.tolist()))
        if not entry.accepted:
            outcome.frames = outcome.metrics = None
    if entry.error is None or entry.rows_in:
        entry.status = _status(entry)
    if entry.status == "rejected" and entry.error is None and outcome.quarantine.num_rows:
        entry.error = outcome.quarantine["reason"][0].as_py()


