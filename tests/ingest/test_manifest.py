"""The manifest: ingest never repeats itself, notices touched-only objects, and replaces changed ones cleanly."""

from __future__ import annotations

import hashlib
import json
import os

from pipelines.ingest import pending_landing_keys
from pipelines.ingest.dedup import partition_key
from pipelines.ingest.manifest import entry_key, load_manifest, pending_objects, source_id_for

from .builders import (
    DAY,
    VIN_A,
    VIN_B,
    entry,
    frame_files,
    frames,
    landing_key,
    native_row,
    native_rows,
    put,
    put_native_csv,
    quarantine_rows,
    run_ingest,
    utc,
)


def touch(lake, key: str) -> None:
    """New modification stamp, same bytes."""
    stamp = os.stat(lake.path(key)).st_mtime_ns + 5_000_000_000
    os.utime(lake.path(key), ns=(stamp, stamp))


def test_source_id_is_readable_stable_and_unique() -> None:
    key = landing_key()
    assert source_id_for(key) == source_id_for(key)
    assert source_id_for(key).startswith(f"{VIN_A}_{DAY}.csv-")
    assert source_id_for(key) != source_id_for(key.replace("landing/simulator/", "landing/simulator/resent/"))
    assert source_id_for("landing/s/a b/c d?.csv").startswith("c_d_.csv-")


def test_manifest_entry_records_the_object(lake) -> None:
    key = put_native_csv(lake, native_rows(3))
    summary = run_ingest(lake, run_id="run-1")
    doc = json.loads(lake.read_bytes(entry_key(source_id_for(key))))
    data = lake.read_bytes(key)
    assert doc["key"] == key
    assert doc["source"] == "simulator" and doc["mapping"] == "simulator" and doc["file_format"] == "csv"
    assert doc["size"] == len(data) == os.stat(lake.path(key)).st_size
    assert doc["mtime_ns"] == os.stat(lake.path(key)).st_mtime_ns
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert (doc["status"], doc["rows_in"], doc["accepted"], doc["quarantined"], doc["duplicates"]) == ("ingested", 3, 3, 0, 0)
    assert doc["dates"] == [DAY]
    assert doc["run_id"] == "run-1" == summary.run_id
    assert doc["ingested_at"] == "2026-02-01T00:00:00+00:00"
    assert doc["error"] is None


def test_same_object_twice_is_a_no_op(lake) -> None:
    key = put_native_csv(lake, native_rows(3) + [native_row(ts="2026-01-05T00:01:00Z", soc_pct=150.0)])
    first = run_ingest(lake)
    assert (first.objects, first.accepted, first.quarantined) == (1, 3, 1)
    files = frame_files(lake)
    manifest = lake.read_bytes(entry_key(source_id_for(key)))
    quarantine = lake.read_bytes(f"quarantine/rows/{source_id_for(key)}.parquet")
    assert pending_landing_keys(lake) == []

    second = run_ingest(lake)
    assert second.counts() == {"objects": 0, "unchanged": 0, "rejected_objects": 0, "rows_in": 0, "accepted": 0,
                               "quarantined": 0, "duplicates": 0, "sentinels": {}, "rejected_by_rule": {},
                               "touched_dates": [], "data_docs": None}
    assert frame_files(lake) == files
    assert lake.read_bytes(entry_key(source_id_for(key))) == manifest
    assert lake.read_bytes(f"quarantine/rows/{source_id_for(key)}.parquet") == quarantine


def test_touched_object_is_not_reingested(lake) -> None:
    key = put_native_csv(lake, native_rows(3))
    run_ingest(lake)
    files = frame_files(lake)
    touch(lake, key)
    assert pending_landing_keys(lake) == [key]

    summary = run_ingest(lake)
    assert (summary.objects, summary.unchanged, summary.accepted) == (0, 1, 0)
    assert frame_files(lake) == files
    record = entry(lake, key)
    assert record.mtime_ns == os.stat(lake.path(key)).st_mtime_ns  # the new stamp is noted …
    assert record.run_id != summary.run_id  # … and the earlier result kept
    assert pending_landing_keys(lake) == []
    assert run_ingest(lake).unchanged == 0


def test_touched_object_still_counts_for_dedup(lake) -> None:
    """Another object re-sending a touched object's frames in the same run is a duplicate, not a second copy."""
    original = put_native_csv(lake, native_rows(3), key=landing_key(day="2026-01-06"))
    run_ingest(lake)
    touch(lake, original)
    copy = put_native_csv(lake, native_rows(3), key=landing_key(day="2026-01-05"))  # sorts (and runs) first
    summary = run_ingest(lake)
    assert (summary.unchanged, summary.accepted, summary.duplicates) == (1, 0, 3)
    assert entry(lake, copy).duplicates == 3
    assert frames(lake).num_rows == 3


def test_changed_object_replaces_its_frames_and_quarantine(lake) -> None:
    key = landing_key()
    sid = source_id_for(key)
    put_native_csv(lake, native_rows(3, start="2026-01-05T23:59:40Z") + [native_row(ts="2026-01-05T12:00:00Z", soc_pct=150.0)],
                   key=key)
    run_ingest(lake)
    assert entry(lake, key).dates == ["2026-01-05", "2026-01-06"]
    assert [q["rule"] for q in quarantine_rows(lake, key)] == ["soc_range"]

    # the upload is replaced: different rows, only 6 January, another bad row
    put_native_csv(lake, native_rows(2, start="2026-01-06T06:00:00Z") + [native_row(vin="SHORTVIN", ts="2026-01-06T07:00:00Z")],
                   key=key)
    summary = run_ingest(lake)
    assert (summary.objects, summary.rows_in, summary.accepted, summary.quarantined) == (1, 3, 2, 1)
    record = entry(lake, key)
    assert record.dates == ["2026-01-06"]
    assert not lake.exists(partition_key("2026-01-05", sid))  # stale partition file deleted
    assert [i.key for i in lake.list("frames")] == [partition_key("2026-01-06", sid)]
    assert frames(lake)["ts"].to_pylist() == [utc("2026-01-06T06:00:00Z"), utc("2026-01-06T06:00:10Z")]
    assert [(q["rule"], q["value"]) for q in quarantine_rows(lake, key)] == [("vin_format", "SHORTVIN")]
    assert len(load_manifest(lake)) == 1

    # and once more, now clean: the quarantine file goes away
    put_native_csv(lake, native_rows(2, start="2026-01-06T06:00:00Z"), key=key)
    run_ingest(lake)
    assert quarantine_rows(lake, key) == []
    assert not lake.list("quarantine")
    assert entry(lake, key).status == "ingested"


def test_changed_object_is_not_a_duplicate_of_its_former_self(lake) -> None:
    """Rows kept in the new version were in the lake under the old version: they are rewritten, not dropped."""
    key = put_native_csv(lake, native_rows(3))
    run_ingest(lake)
    put_native_csv(lake, native_rows(4), key=key)
    summary = run_ingest(lake)
    assert (summary.accepted, summary.duplicates) == (4, 0)
    assert frames(lake).num_rows == 4


def test_unreadable_object_fixed_later(lake) -> None:
    key = put(lake, landing_key(VIN_B), b"vin;ts;soc_pct\n")
    run_ingest(lake)
    original = f"quarantine/files/{source_id_for(key)}/{VIN_B}_{DAY}.csv"
    assert lake.read_bytes(original) == b"vin;ts;soc_pct\n"
    assert entry(lake, key).status == "rejected"

    put_native_csv(lake, native_rows(2, VIN_B), key=key)
    summary = run_ingest(lake)
    assert (summary.objects, summary.accepted, summary.rejected_objects) == (1, 2, 0)
    assert not lake.exists(original)
    assert quarantine_rows(lake, key) == []
    assert entry(lake, key).error is None


def test_pending_objects_limit_and_order(lake) -> None:
    keys = [put_native_csv(lake, native_rows(1, VIN_A if i % 2 else VIN_B), key=landing_key(day=f"2026-01-0{i}")) for i in (3, 1, 2)]
    assert [i.key for i in pending_objects(lake, {})] == sorted(keys)
    assert [i.key for i in pending_objects(lake, {}, limit=2)] == sorted(keys)[:2]
    lake.write_bytes("landing/simulator/x.csv.tmp-123", b"half")
    assert len(pending_objects(lake, {})) == 3


def test_max_objects_setting_leaves_the_rest_for_the_next_run(lake, monkeypatch) -> None:
    for day in ("2026-01-05", "2026-01-06", "2026-01-07"):
        put_native_csv(lake, native_rows(1, start=f"{day}T00:00:00Z"), key=landing_key(day=day))
    monkeypatch.setenv("CELLGUARD_INGEST_MAX_OBJECTS", "2")
    assert run_ingest(lake).objects == 2
    assert len(pending_landing_keys(lake)) == 1
    assert run_ingest(lake).objects == 1
    assert frames(lake).num_rows == 3


def test_keys_argument_ingests_only_those(lake) -> None:
    a = put_native_csv(lake, native_rows(1))
    b = put_native_csv(lake, native_rows(1, VIN_B))
    assert [e.key for e in run_ingest(lake, keys=[b]).entries] == [b]
    assert pending_landing_keys(lake) == [a]


def test_manifest_schema_names_every_field_of_the_record() -> None:
    from dataclasses import fields

    from pipelines.ingest.manifest import ManifestEntry
    from pipelines.schema import MANIFEST_SCHEMA

    assert MANIFEST_SCHEMA.names == [f.name for f in fields(ManifestEntry)]
