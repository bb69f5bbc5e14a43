"""pipelines/storage/lake.py on S3 (moto on loopback, http): the same API as the folder lake, seen from boto3 too."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import Settings
from pipelines.schema import DAILY_SCHEMA
from pipelines.storage import daily_zone, predictions_zone
from pipelines.storage.lake import Lake, ObjectInfo

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"


@pytest.fixture
def lake(aws_settings: Settings) -> Lake:
    """The lake the aws settings name: s3://<fresh bucket>/lake at the moto endpoint."""
    return Lake.from_settings(aws_settings)


def bucket_keys(aws_client, bucket: str) -> list[str]:
    """Every key in the bucket, as S3 itself lists them (no pyarrow in between)."""
    pages = aws_client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_settings_point_the_lake_at_the_http_endpoint(lake: Lake, aws_settings: Settings, s3_bucket: str) -> None:
    assert aws_settings.s3_endpoint_url == aws_settings.aws_endpoint_url.rstrip("/")
    assert aws_settings.s3_endpoint_url.startswith("http://127.0.0.1:")
    assert (lake.root, lake.is_local, lake.url("frames/x.parquet")) == (
        f"{s3_bucket}/lake", False, f"s3://{s3_bucket}/lake/frames/x.parquet")
    assert lake.fs.region == "eu-west-1"


def test_write_read_list_and_delete(lake: Lake, aws_client, s3_bucket: str) -> None:
    lake.write_bytes("frames/dt=2026-01-06/b.parquet", b"12345")
    lake.write_bytes("frames/dt=2026-01-05/z.parquet", b"1")
    lake.write_bytes("frames/dt=2026-01-05/a.parquet", b"12")
    lake.write_bytes("framesX/other.parquet", b"1")
    assert lake.read_bytes("frames/dt=2026-01-06/b.parquet") == b"12345"
    assert b"".join(lake.iter_chunks("frames/dt=2026-01-06/b.parquet", chunk_size=2)) == b"12345"

    infos = lake.list("frames")
    assert [(i.key, i.size) for i in infos] == [("frames/dt=2026-01-05/a.parquet", 2), ("frames/dt=2026-01-05/z.parquet", 1),
                                               ("frames/dt=2026-01-06/b.parquet", 5)]
    head = aws_client("s3").head_object(Bucket=s3_bucket, Key="lake/frames/dt=2026-01-05/a.parquet")
    assert infos[0] == ObjectInfo("frames/dt=2026-01-05/a.parquet", 2, int(head["LastModified"].timestamp()) * 10**9)
    assert lake.list("frames/dt=2026-01-05/") == infos[:2]
    assert lake.list("nothing/here") == []
    # Only the objects themselves: no temporary names, no directory markers written alongside.
    assert bucket_keys(aws_client, s3_bucket) == ["lake/frames/dt=2026-01-05/a.parquet", "lake/frames/dt=2026-01-05/z.parquet",
                                                   "lake/frames/dt=2026-01-06/b.parquet", "lake/framesX/other.parquet"]

    assert lake.exists("frames/dt=2026-01-06/b.parquet") and not lake.exists("frames/dt=2026-01-06")
    lake.delete("frames/dt=2026-01-06/b.parquet")
    lake.delete("frames/dt=2026-01-06/b.parquet")  # twice is fine
    assert not lake.exists("frames/dt=2026-01-06/b.parquet")
    assert [i.key for i in lake.list("frames")] == ["frames/dt=2026-01-05/a.parquet", "frames/dt=2026-01-05/z.parquet"]
    # pyarrow keeps an emptied "directory" as a zero-byte marker; the lake's listing never shows it.
    assert "lake/frames/dt=2026-01-06/" in bucket_keys(aws_client, s3_bucket)
    with pytest.raises(FileNotFoundError):
        lake.read_bytes("frames/dt=2026-01-06/b.parquet")


def test_parquet_round_trip_is_zstd_and_byte_identical_when_repeated(lake: Lake, aws_client, s3_bucket: str) -> None:
    table = pa.table({
        "vin": [VIN_A, VIN_B],
        "ts": pa.array([datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 5, 0, 0, 10, tzinfo=UTC)], pa.timestamp("ms", tz="UTC")),
        "cell_mv": pa.array([[3650, None, 3652], []], pa.list_(pa.uint16())),
        "alarm_flags": pa.array([0x400, None], pa.uint32()),
    })
    lake.write_parquet("frames/dt=2026-01-05/x.parquet", table)
    assert lake.read_parquet("frames/dt=2026-01-05/x.parquet").equals(table)
    assert lake.read_parquet("frames/dt=2026-01-05/x.parquet", columns=["vin"]).column_names == ["vin"]
    stored = aws_client("s3").get_object(Bucket=s3_bucket, Key="lake/frames/dt=2026-01-05/x.parquet")["Body"].read()
    assert pq.ParquetFile(pa.BufferReader(stored)).metadata.row_group(0).column(0).compression == "ZSTD"
    lake.write_parquet("frames/dt=2026-01-05/x.parquet", table)
    assert lake.read_bytes("frames/dt=2026-01-05/x.parquet") == stored


def test_readers_see_the_old_object_or_the_new_one_never_a_part(lake: Lake, aws_client, s3_bucket: str) -> None:
    """Objects above S3's 5 MB part size go up as multipart uploads: none is visible before it completes."""
    old, new = b"o" * (6 << 20), b"n" * (7 << 20)
    lake.write_bytes("big.bin", old)
    seen: set[tuple[int, bytes]] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                data = lake.read_bytes("big.bin")
                seen.add((len(data), data[:1] + data[-1:]))
                assert set(data[:4096]) == set(data[-4096:])  # one writer's bytes from start to end
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for write in range(1, 41):  # until the reader has read both versions while they were being replaced
            lake.write_bytes("big.bin", old if write % 2 == 0 else new)
            if write >= 6 and len(seen) >= 2:
                break
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert seen == {(len(old), b"oo"), (len(new), b"nn")}
    assert bucket_keys(aws_client, s3_bucket) == ["lake/big.bin"]  # no temporary objects, no leftover uploads
    assert aws_client("s3").list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def daily_row(vin: str, day: date, total_voltage: float, alarm: bool = False) -> dict:
    """A daily-contract row with the few values this test looks at."""
    row = {name: None for name in DAILY_SCHEMA.names}
    return row | {"vin": vin, "dt": day, "total_voltage": total_voltage, "suspect_cell": 7, "alarm": alarm,
                  "frame_count": 2880}


def test_daily_zone_round_trips_on_s3_and_a_computed_row_wins(lake: Lake, aws_client, s3_bucket: str) -> None:
    day = date(2026, 1, 5)
    computed = pa.Table.from_pylist([daily_row(VIN_A, day, 352.1, alarm=True)], schema=DAILY_SCHEMA)
    imported = pa.Table.from_pylist([daily_row(VIN_A, day, 300.0), daily_row(VIN_B, day, 351.0)], schema=DAILY_SCHEMA)
    cells = pa.Table.from_pylist([{"vin": VIN_A, "dt": day, "cell_index": 7, "cell_dev_mv": -12.5, "cell_dev_rest_mv": -11.0,
                                   "cell_dev_load_mv": -14.0, "valid_frames": 2880}], schema=daily_zone.CELL_DAILY_SCHEMA)
    daily_zone.write_imported(lake, day, imported, "ref-1")
    assert daily_zone.write_computed(lake, day, computed, cells) == 1

    daily = daily_zone.read_daily(lake)
    assert [(r["vin"], r["dt"], r["total_voltage"], r["alarm"]) for r in daily.to_pylist()] == [
        (VIN_B, day, 351.0, False), (VIN_A, day, 352.1, True)]
    assert daily_zone.read_cell_daily(lake).to_pylist()[0]["cell_dev_mv"] == -12.5
    assert daily_zone.daily_days(lake) == daily_zone.computed_days(lake) == [day]
    assert bucket_keys(aws_client, s3_bucket) == ["lake/cell_daily/dt=2026-01-05/frames.parquet",
                                                   "lake/daily/dt=2026-01-05/frames.parquet",
                                                   "lake/daily/dt=2026-01-05/import-ref-1.parquet"]

    empty = computed.slice(0, 0)
    assert daily_zone.write_computed(lake, day, empty, cells.slice(0, 0)) == 0  # an empty day deletes its objects
    assert [r["total_voltage"] for r in daily_zone.read_daily(lake).sort_by("vin").to_pylist()] == [351.0, 300.0]
    assert daily_zone.computed_days(lake) == []


def test_predictions_zone_round_trips_on_s3(lake: Lake, aws_client, s3_bucket: str) -> None:
    made = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    rows = [{"vin": vin, "as_of": date(2026, 1, 5), "model_version": "v1", "feature_set": "full", "probability": p,
             "alarm": p >= 0.5, "threshold": 0.5, "suspect_cell": 3,
             "reasons": [{"feature": "cell_range_max_mv_lag1", "contribution": 0.8, "value": 41.0}],
             "source": "batch", "request_id": f"batch-{vin}", "created_at": made}
            for vin, p in ((VIN_A, 0.9), (VIN_B, 0.1))]
    key = predictions_zone.write_batch(lake, date(2026, 1, 5), "v1", pa.Table.from_pylist(rows))
    assert key == "predictions/dt=2026-01-05/batch-v1.parquet"
    api_keys = predictions_zone.write_rows(lake, pa.Table.from_pylist([rows[0] | {"source": "api", "request_id": "req-1"}]))
    read = predictions_zone.read_predictions(lake, date(2026, 1, 5), date(2026, 1, 5))
    assert [(r["vin"], r["source"], r["probability"], r["reasons"][0]["value"]) for r in read.to_pylist()] == [
        (VIN_B, "batch", 0.1, 41.0), (VIN_A, "api", 0.9, 41.0), (VIN_A, "batch", 0.9, 41.0)]
    assert bucket_keys(aws_client, s3_bucket) == sorted(f"lake/{k}" for k in [key, *api_keys])
