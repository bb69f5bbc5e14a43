"""ingest_pending end to end: formats side by side, counts, Parquet layout, Great Expectations and Data Docs."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.ingest import ingest_pending, pending_landing_keys
from pipelines.ingest import objects as ingest_objects
from pipelines.ingest import pipeline as ingest_pipeline
from pipelines.ingest.manifest import load_manifest, source_id_for
from pipelines.schema import FRAME_SCHEMA
from pipelines.storage.lake import Lake

from .builders import (
    DAY,
    NOW,
    VIN_A,
    VIN_B,
    entry,
    frames,
    landing_key,
    native_csv_bytes,
    native_jsonl_bytes,
    native_row,
    native_rows,
    put,
    put_native_parquet,
    put_wide_csv,
    quarantine_rows,
    run_ingest,
    utc,
    wide_rows,
)

VIN_C = "WVWZZZ1KZ6W000003"
VIN_D = "JN1AZ0000U0000004"


def landing_mix(lake: Lake) -> dict[str, str]:
    """One object per format a vehicle platform uploads, a few frames each, one bad row."""
    return {
        "csv": put(lake, landing_key(VIN_A), native_csv_bytes(native_rows(3) + [native_row(ts=f"{DAY}T00:01:00Z", soc_pct=-5)])),
        "csv.gz": put(lake, landing_key(VIN_B, ext="csv.gz"), native_csv_bytes(native_rows(2, VIN_B)), gzipped=True),
        "jsonl.gz": put(lake, landing_key(VIN_C, ext="jsonl.gz"), native_jsonl_bytes(native_rows(2, VIN_C)), gzipped=True),
        "parquet": put_native_parquet(lake, native_rows(2, VIN_D, start="2026-01-06T00:00:00Z"),
                                      key=landing_key(VIN_D, "2026-01-06", "parquet")),
        "wide": put_wide_csv(lake, wide_rows(2, start="2026-01-06 09:00:00"), vin=VIN_A, day="2026-01-06"),
    }


def test_ingest_every_format(lake: Lake) -> None:
    keys = landing_mix(lake)
    assert sorted(pending_landing_keys(lake)) == sorted(keys.values())
    seen: list[tuple[int, int]] = []
    summary = run_ingest(lake, progress=lambda rows, objects: seen.append((rows, objects)))

    assert summary.counts() == {
        "objects": 5, "unchanged": 0, "rejected_objects": 0, "rows_in": 12, "accepted": 11, "quarantined": 1,
        "duplicates": 0, "sentinels": {}, "rejected_by_rule": {"soc_range": 1},
        "touched_dates": ["2026-01-05", "2026-01-06"], "data_docs": None,
    }
    assert sorted(seen) == [(2, 1), (2, 1), (2, 1), (2, 1), (4, 1)]
    assert {e.file_format for e in summary.entries} == {"csv", "jsonl", "parquet"}
    assert entry(lake, keys["csv"]).status == "partial"
    assert {entry(lake, k).status for name, k in keys.items() if name != "csv"} == {"ingested"}
    assert len(load_manifest(lake)) == 5
    assert pending_landing_keys(lake) == []

    table = frames(lake)
    assert table.schema == FRAME_SCHEMA
    assert table.num_rows == 11
    by_vin = {vin: table["vin"].to_pylist().count(vin) for vin in (VIN_A, VIN_B, VIN_C, VIN_D)}
    assert by_vin == {VIN_A: 5, VIN_B: 2, VIN_C: 2, VIN_D: 2}
    wide = [r for r in table.to_pylist() if r["ts"] >= utc("2026-01-06T01:00:00Z")]
    assert [(r["vin"], r["ts"]) for r in wide] == [(VIN_A, utc("2026-01-06T01:00:00Z")), (VIN_A, utc("2026-01-06T01:00:10Z"))]


def test_frames_files_are_sorted_zstd_parquet_named_by_source(lake: Lake) -> None:
    key = put(lake, landing_key(), native_csv_bytes(list(reversed(native_rows(3))) + native_rows(2, VIN_B)[::-1]))
    run_ingest(lake)
    (info,) = lake.list("frames")
    assert info.key == f"frames/dt={DAY}/{source_id_for(key)}.parquet"
    parquet = pq.ParquetFile(lake.path(info.key))
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = parquet.read()
    assert table.schema == FRAME_SCHEMA
    assert list(zip(table["vin"].to_pylist(), table["ts"].to_pylist(), strict=True)) == sorted(
        zip(table["vin"].to_pylist(), table["ts"].to_pylist(), strict=True))


def test_future_window_follows_now_and_clock_skew_setting(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    put(lake, landing_key(), native_csv_bytes([native_row(ts="2026-02-01T23:00:00Z"), native_row(ts="2026-02-02T01:00:00Z")]))
    monkeypatch.setenv("CELLGUARD_MAX_CLOCK_SKEW_HOURS", "0")
    assert run_ingest(lake).rejected_by_rule == {"ts_future": 2}

    lake2 = Lake(lake.uri + "-2")
    put(lake2, landing_key(), native_csv_bytes([native_row(ts="2026-02-01T23:00:00Z"), native_row(ts="2026-02-02T01:00:00Z")]))
    monkeypatch.setenv("CELLGUARD_MAX_CLOCK_SKEW_HOURS", "24")
    summary = run_ingest(lake2)
    assert (summary.accepted, summary.rejected_by_rule) == (1, {"ts_future": 1})


def test_earliest_ts_setting(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLGUARD_EARLIEST_TS", "2026-01-05")
    put(lake, landing_key(), native_csv_bytes([native_row(ts="2026-01-04T23:59:59Z"), native_row(ts="2026-01-05T00:00:00Z")]))
    summary = run_ingest(lake)
    assert (summary.accepted, summary.rejected_by_rule) == (1, {"ts_too_old": 1})


def test_great_expectations_stops_frames_the_row_rules_missed(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a row rule regresses, GE still sees the broken frame and nothing at all is written."""
    from pipelines.quality.rules import frame_metrics

    # The row rules "regress" to checking nothing (they still hand GE the metrics they computed).
    monkeypatch.setattr(ingest_objects, "check_frames", lambda frames, *args, **kwargs: frame_metrics(frames))
    key = put(lake, landing_key(), native_csv_bytes(native_rows(2) + [native_row(ts=f"{DAY}T00:01:00Z", soc_pct=150.0)]))
    with pytest.raises(ingest_pipeline.ContractViolation) as error:
        ingest_pending(lake=lake, now=NOW)
    assert "soc_pct" in str(error.value)
    assert lake.list("frames") == [] and lake.list("_manifest") == [] and lake.list("quarantine") == []
    assert pending_landing_keys(lake) == [key]


def test_data_docs_written_under_the_lake(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLGUARD_DATA_DOCS", "1")
    put(lake, landing_key(), native_csv_bytes(native_rows(3)))
    summary = run_ingest(lake, run_id="docs-run-1")
    index = Path(lake.path("reports/data_docs/index.html"))
    assert summary.data_docs == str(index)
    assert index.is_file()
    html = index.read_text()
    assert "frame_contract" in html
    assert "docs-run-1" in html

    put(lake, landing_key(VIN_B), native_csv_bytes(native_rows(2, VIN_B)))
    second = run_ingest(lake, run_id="docs-run-2")
    assert second.data_docs == str(index)
    html = index.read_text()
    assert "docs-run-1" in html and "docs-run-2" in html


def test_gzip_landing_object_is_decompressed_by_ingest(lake: Lake) -> None:
    key = put(lake, landing_key(ext="csv.gz"), native_csv_bytes(native_rows(2)), gzipped=True)
    run_ingest(lake)
    assert lake.read_bytes(key)[:2] == b"\x1f\x8b"  # landing stays as received
    assert entry(lake, key).size == len(lake.read_bytes(key))
    assert frames(lake).num_rows == 2
    assert gzip.decompress(lake.read_bytes(key)) == native_csv_bytes(native_rows(2))


def test_nothing_pending_is_an_empty_run(lake: Lake) -> None:
    summary = run_ingest(lake)
    assert (summary.objects, summary.rows_in, summary.data_docs) == (0, 0, None)
    assert lake.list("") == []


def test_object_rejected_for_want_of_a_mapping_is_ingested_once_its_mapping_exists(lake: Lake, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    key = put(lake, landing_key(VIN_A, source="fleet_b"), native_csv_bytes(native_rows(3)))
    first = run_ingest(lake)
    assert (first.rejected_objects, entry(lake, key).rejected_by_rule) == (1, {"no_mapping": 1})
    assert "no column mapping for source 'fleet_b'" in entry(lake, key).error
    assert run_ingest(lake).objects == 0, "still no mapping: nothing to retry"

    mappings = tmp_path / "mappings"
    mappings.mkdir()
    builtin = (Path(ingest_pipeline.__file__).parent / "mappings" / "simulator.yaml").read_text()
    (mappings / "fleet_b.yaml").write_text(builtin.replace("name: simulator", "name: fleet_b"))
    monkeypatch.setenv("CELLGUARD_MAPPINGS_DIR", str(mappings))

    assert pending_landing_keys(lake) == [key]
    second = run_ingest(lake)
    assert (second.objects, second.accepted, second.rejected_objects) == (1, 3, 0)
    assert entry(lake, key).status == "ingested"
    assert not lake.exists(f"quarantine/rows/{source_id_for(key)}.parquet"), "the old rejection is replaced"


def test_objects_converted_together_keep_their_own_counts_vins_and_reasons(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several small uploads of one layout go through one vectorised pass; each keeps its own verdicts."""
    passes = []
    convert = ingest_objects.convert_objects
    monkeypatch.setattr(ingest_objects, "convert_objects", lambda loaded, *a: passes.append(len(loaded)) or convert(loaded, *a))
    keys = [
        put_wide_csv(lake, wide_rows(3, start="2026-01-05 08:00:00"), vin=VIN_A),
        put_wide_csv(lake, wide_rows(2, start="2026-01-05 09:00:00") + wide_rows(1, start="2026-01-05 09:00:00"), vin=VIN_B),
        put_wide_csv(lake, wide_rows(3, start="2026-01-05 10:00:00"), vin=VIN_C[:16], day="2026-01-05"),
    ]
    summary = run_ingest(lake)
    assert summary.objects == 3
    first, second, third = (entry(lake, k) for k in keys)
    assert (first.accepted, first.duplicates, first.quarantined) == (3, 0, 0)
    assert (second.accepted, second.duplicates, second.quarantined) == (2, 1, 0)
    assert passes == [3]
    assert (third.accepted, third.rejected_by_rule) == (0, {"vin_from_filename": 3})
    assert third.status == "rejected" and "names no VIN" in third.error
    vins = {r["vin"] for r in frames(lake).to_pylist()}
    assert vins == {VIN_A, VIN_B}
    assert [r["row_number"] for r in quarantine_rows(lake, keys[2])] == [2, 3, 4]


def test_summary_times_every_stage(lake: Lake) -> None:
    put(lake, landing_key(), native_csv_bytes(native_rows(3)))
    summary = run_ingest(lake)
    assert set(summary.stage_seconds) == {"read and parse", "map and check", "dedup", "great expectations", "write"}
    assert all(seconds >= 0 for seconds in summary.stage_seconds.values())


def test_wide_uploads_of_different_pack_sizes_and_types_convert_together(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pack sizes differ in their number of V_n columns, and a column may be whole numbers in one file and
    decimals in another: the files still share one pass, and each frame keeps exactly its own cells."""
    passes = []
    convert = ingest_objects.convert_objects
    monkeypatch.setattr(ingest_objects, "convert_objects", lambda loaded, *a: passes.append(len(loaded)) or convert(loaded, *a))
    put_wide_csv(lake, wide_rows(2, volts=(3.650, 3.651, 3.652, 3.653, 3.654, 3.655), vehSpeed=40), vin=VIN_A)
    put_wide_csv(lake, wide_rows(2, volts=(3.700, 3.701, 3.702), vehSpeed=12.5), vin=VIN_B)
    summary = run_ingest(lake)
    assert (summary.accepted, summary.quarantined) == (4, 0)
    assert passes == [2]
    rows = frames(lake).to_pylist()
    assert {(r["vin"], tuple(r["cell_mv"]), r["speed_kmh"]) for r in rows} == {
        (VIN_A, (3650, 3651, 3652, 3653, 3654, 3655), 40.0), (VIN_B, (3700, 3701, 3702), 12.5)}
