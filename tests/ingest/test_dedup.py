"""Duplicate frames: the same (vin, ts) within a file, across files and runs, and late rows in an older partition."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.ingest.dedup import LakeKeys, file_order, partition_key, utc_dates, vin_ranks
from pipelines.ingest.manifest import source_id_for

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
    put_native_csv,
    put_native_jsonl,
    put_wide_csv,
    quarantine_rows,
    run_ingest,
    utc,
    wide_rows,
)


def test_file_order_sorts_kept_rows_and_keeps_each_files_first_copy() -> None:
    vin_rank = np.array([1, 1, 0, 1, 1, 1])
    ts = np.array([5, 5, 9, 2, 5, 5])
    objects = np.array([0, 0, 0, 0, 1, 1])
    rows, repeated = file_order(vin_rank, ts, objects, np.ones(6, dtype=bool))
    # object 0: vin 0 first, then vin 1 by time; row 1 repeats row 0; object 1 keeps its own first copy
    assert rows.tolist() == [2, 3, 0, 4]
    assert repeated.tolist() == [False, True, False, False, False, True]
    # a rejected first copy does not make the next one a repeat
    rows, repeated = file_order(vin_rank, ts, objects, np.array([False, True, True, True, True, True]))
    assert rows.tolist() == [2, 3, 1, 4]
    assert repeated.tolist() == [False, False, False, False, False, True]


def test_vin_ranks_follow_sorted_order() -> None:
    assert vin_ranks(pa.chunked_array([["B", "A"], ["C", "A"]])).tolist() == [1, 0, 2, 0]


def test_utc_dates_of_timestamps() -> None:
    stamps = ["2026-01-05T23:59:59.999Z", "2026-01-06T00:00:00Z", "2026-01-05T00:00:00Z", "1969-12-31T23:00:00Z"]
    ts = pa.array([utc(t) for t in stamps], pa.timestamp("ms", tz="UTC"))
    assert utc_dates(ts).tolist() == ["2026-01-05", "2026-01-06", "2026-01-05", "1969-12-31"]
    assert utc_dates(pa.chunked_array([ts[:2], ts[2:]])).tolist() == utc_dates(ts).tolist()


def test_lake_keys_see_lake_and_run_rows_but_not_replaced_files(lake) -> None:
    lake.write_parquet(partition_key(DAY, "old-file"), frames_table([(VIN_A, f"{DAY}T00:00:00Z"), (VIN_A, f"{DAY}T00:00:10Z")]))
    lake.write_parquet(partition_key(DAY, "being-replaced"), frames_table([(VIN_B, f"{DAY}T00:00:00Z")]))
    keys = LakeKeys(lake, replacing={"being-replaced"})
    ms = lambda text: int(utc(text).timestamp() * 1000)  # noqa: E731
    dates = np.array([DAY] * 4, dtype=object)
    vins = np.array([VIN_A, VIN_A, VIN_B, VIN_B], dtype=object)
    ts = np.array([ms(f"{DAY}T00:00:10Z"), ms(f"{DAY}T00:00:20Z"), ms(f"{DAY}T00:00:00Z"), ms(f"{DAY}T00:00:30Z")])
    assert keys.seen(dates, vins, ts).tolist() == [True, False, False, False]
    keys.add(dates[1:2], vins[1:2], ts[1:2])
    assert keys.seen(dates, vins, ts).tolist() == [True, True, False, False]
    assert keys.seen(np.array(["2026-01-06"], dtype=object), vins[:1], ts[:1]).tolist() == [False]


def frames_table(pairs):
    """A minimal frames table holding just (vin, ts) pairs, enough for LakeKeys."""
    return pa.table({"vin": [v for v, _ in pairs], "ts": pa.array([utc(t) for _, t in pairs], pa.timestamp("ms", tz="UTC"))})


def test_duplicate_rows_within_one_file(lake) -> None:
    rows = native_rows(3)
    key = put_native_csv(lake, [rows[0], rows[1], rows[0], rows[2], rows[1], rows[1]])
    summary = run_ingest(lake)
    record = entry(lake, key)
    assert (record.rows_in, record.accepted, record.quarantined, record.duplicates) == (6, 3, 0, 3)
    assert record.status == "ingested"
    assert summary.duplicates == 3
    assert [r["ts"] for r in frames(lake).to_pylist()] == [utc(r["ts"]) for r in rows]
    assert quarantine_rows(lake, key) == []


def test_same_vin_ts_with_different_values_keeps_the_first(lake) -> None:
    put_native_csv(lake, [native_row(soc_pct=50.0), native_row(soc_pct=51.0)])
    run_ingest(lake)
    assert frames(lake)["soc_pct"].to_pylist() == [50.0]


def test_duplicates_across_two_files_in_one_run(lake) -> None:
    rows = native_rows(4)
    first = put_native_csv(lake, rows[:3], key=landing_key(VIN_A, DAY, "csv"))
    second = put_native_jsonl(lake, rows[1:], key=landing_key(VIN_A, DAY, "jsonl"))
    summary = run_ingest(lake)
    assert (entry(lake, first).accepted, entry(lake, first).duplicates) == (3, 0)
    assert (entry(lake, second).rows_in, entry(lake, second).accepted, entry(lake, second).duplicates) == (3, 1, 2)
    assert (summary.rows_in, summary.accepted, summary.duplicates) == (6, 4, 2)
    assert frames(lake).num_rows == 4
    written = lake.read_parquet(partition_key(DAY, source_id_for(second)))
    assert written["ts"].to_pylist() == [utc(rows[3]["ts"])]


def test_duplicates_across_runs_and_formats(lake) -> None:
    """A wide export re-delivering frames the simulator already sent (same instant, Beijing time) adds nothing."""
    put_native_csv(lake, native_rows(3, VIN_B))
    run_ingest(lake)
    before = frame_files(lake)
    wide = put_wide_csv(lake, wide_rows(4), vin=VIN_B)  # 08:00:00 … 08:00:30 Beijing = 00:00:00 … 00:00:30 UTC
    summary = run_ingest(lake)
    assert (summary.objects, summary.accepted, summary.duplicates) == (1, 1, 3)
    assert entry(lake, wide).status == "ingested"
    after = frame_files(lake)
    assert {k: v for k, v in after.items() if k in before} == before
    assert frames(lake)["ts"].to_pylist() == [utc(f"{DAY}T00:00:{s:02d}Z") for s in (0, 10, 20, 30)]


def test_late_rows_land_in_their_own_date_partition(lake) -> None:
    day5 = put_native_csv(lake, native_rows(2, start="2026-01-05T23:59:40Z"))
    run_ingest(lake)
    late = native_rows(2, start="2026-01-05T23:59:40Z") + native_rows(1, start="2026-01-05T23:59:50Z")
    late += native_rows(2, start="2026-01-06T00:00:00Z") + native_rows(1, start="2026-01-05T12:00:00Z")
    day6 = put_native_csv(lake, late, key=landing_key(VIN_A, "2026-01-06"))
    summary = run_ingest(lake)

    record = entry(lake, day6)
    assert (record.rows_in, record.accepted, record.duplicates) == (6, 3, 3)
    assert record.dates == ["2026-01-05", "2026-01-06"]
    assert summary.touched_dates == ["2026-01-05", "2026-01-06"]
    day6_id = source_id_for(day6)
    assert sorted(i.key for i in lake.list("frames")) == sorted([
        partition_key("2026-01-05", source_id_for(day5)),
        partition_key("2026-01-05", day6_id),
        partition_key("2026-01-06", day6_id),
    ])
    assert lake.read_parquet(partition_key("2026-01-05", day6_id))["ts"].to_pylist() == [utc("2026-01-05T12:00:00Z")]
    assert lake.read_parquet(partition_key("2026-01-06", day6_id))["ts"].to_pylist() == [
        utc("2026-01-06T00:00:00Z"), utc("2026-01-06T00:00:10Z")]
    day5_frames = frames(lake, "2026-01-05")
    keys = list(zip(day5_frames["vin"].to_pylist(), day5_frames["ts"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == 3


def test_partitions_follow_the_utc_date_of_local_times(lake) -> None:
    """07:59:50 in Beijing on 5 January is 23:59:50 UTC on 4 January."""
    key = put_wide_csv(lake, wide_rows(3, start=f"{DAY} 07:59:50"))
    run_ingest(lake)
    assert entry(lake, key).dates == ["2026-01-04", "2026-01-05"]
    assert frames(lake, "2026-01-04")["ts"].to_pylist() == [utc("2026-01-04T23:59:50Z")]
    assert frames(lake, "2026-01-05")["ts"].to_pylist() == [utc("2026-01-05T00:00:00Z"), utc("2026-01-05T00:00:10Z")]
    assert frames(lake, "2026-01-05")["vin"].to_pylist() == [VIN_B, VIN_B]
