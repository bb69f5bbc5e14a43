"""The lake: atomic deterministic writes, listings without temporary files, Parquet, raw bytes for gzip objects."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import load_settings
from pipelines.storage.lake import Lake, ObjectInfo


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_write_bytes_is_atomic_and_leaves_no_temp_files(lake: Lake) -> None:
    lake.write_bytes("a/b/c.bin", b"one")
    lake.write_bytes("a/b/c.bin", b"two, longer")
    assert lake.read_bytes("a/b/c.bin") == b"two, longer"
    assert files_under(Path(lake.root)) == ["a/b/c.bin"]


def test_failed_write_leaves_neither_temp_file_nor_target(lake: Lake) -> None:
    lake.write_bytes("keep.bin", b"old")

    class FailingMove:
        """The local filesystem, except that the final rename fails."""

        def __init__(self, fs):
            self._fs = fs

        def __getattr__(self, name):
            return getattr(self._fs, name)

        def move(self, src, dest):
            raise OSError("disk full")

    lake.fs = FailingMove(lake.fs)
    with pytest.raises(OSError, match="disk full"):
        lake.write_bytes("keep.bin", b"new")
    with pytest.raises(OSError, match="disk full"):
        lake.write_bytes("fresh/x.bin", b"new")
    assert files_under(Path(lake.root)) == ["keep.bin"]
    assert lake.read_bytes("keep.bin") == b"old"


def test_list_is_recursive_sorted_and_skips_temp_files(lake: Lake) -> None:
    lake.write_bytes("frames/dt=2026-01-06/b.parquet", b"12345")
    lake.write_bytes("frames/dt=2026-01-05/z.parquet", b"1")
    lake.write_bytes("frames/dt=2026-01-05/a.parquet", b"12")
    lake.write_bytes("framesX/other.parquet", b"1")
    stray = Path(lake.path("frames/dt=2026-01-05/a.parquet.tmp-0123abcd"))
    stray.write_bytes(b"half written")

    infos = lake.list("frames")
    assert [i.key for i in infos] == ["frames/dt=2026-01-05/a.parquet", "frames/dt=2026-01-05/z.parquet",
                                      "frames/dt=2026-01-06/b.parquet"]
    assert [i.size for i in infos] == [2, 1, 5]
    assert infos[0] == ObjectInfo("frames/dt=2026-01-05/a.parquet", 2, os.stat(lake.path(infos[0].key)).st_mtime_ns)
    assert lake.list("frames/dt=2026-01-05/") == infos[:2]
    assert lake.list("nothing/here") == []
    assert len(lake.list("")) == 4


def test_parquet_round_trip(lake: Lake) -> None:
    table = pa.table({
        "vin": ["LSVAB1234CD567890", "LFV2A2156K3000001"],
        "ts": pa.array([datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 5, 0, 0, 10, tzinfo=UTC)], pa.timestamp("ms", tz="UTC")),
        "cell_mv": pa.array([[3650, None, 3652], []], pa.list_(pa.uint16())),
        "alarm_flags": pa.array([0x400, None], pa.uint32()),
    })
    lake.write_parquet("frames/dt=2026-01-05/x.parquet", table)
    assert lake.read_parquet("frames/dt=2026-01-05/x.parquet").equals(table)
    assert lake.read_parquet("frames/dt=2026-01-05/x.parquet", columns=["vin"]).column_names == ["vin"]
    assert pq.ParquetFile(lake.path("frames/dt=2026-01-05/x.parquet")).metadata.row_group(0).column(0).compression == "ZSTD"
    assert files_under(Path(lake.root)) == ["frames/dt=2026-01-05/x.parquet"]


def test_same_table_written_twice_gives_the_same_bytes(lake: Lake) -> None:
    table = pa.table({"x": [1, 2, 3]})
    lake.write_parquet("a.parquet", table)
    first = lake.read_bytes("a.parquet")
    lake.write_parquet("a.parquet", table)
    assert lake.read_bytes("a.parquet") == first


def test_gzip_named_objects_are_raw_bytes(lake: Lake) -> None:
    """The lake never decompresses: ingest must see (and hash) exactly what landed."""
    compressed = gzip.compress(b"vin,ts\nLSVAB1234CD567890,2026-01-05T00:00:00Z\n")
    lake.write_bytes("landing/simulator/x.csv.gz", compressed)
    assert lake.read_bytes("landing/simulator/x.csv.gz") == compressed
    assert b"".join(lake.iter_chunks("landing/simulator/x.csv.gz", chunk_size=7)) == compressed
    assert Path(lake.path("landing/simulator/x.csv.gz")).read_bytes() == compressed  # stored as given, too
    assert lake.list("landing")[0].size == len(compressed)


def test_iter_chunks_streams_in_pieces(lake: Lake) -> None:
    lake.write_bytes("big.bin", bytes(range(256)) * 40)
    chunks = list(lake.iter_chunks("big.bin", chunk_size=4096))
    assert [len(c) for c in chunks] == [4096, 4096, 2048]


def test_exists_and_delete(lake: Lake) -> None:
    assert not lake.exists("a.bin")
    lake.write_bytes("a.bin", b"x")
    assert lake.exists("a.bin")
    assert not lake.exists("")  # a folder is not an object
    lake.delete("a.bin")
    lake.delete("a.bin")  # twice is fine
    assert not lake.exists("a.bin")


def test_uris_paths_and_urls(tmp_path: Path) -> None:
    lake = Lake(f"{(tmp_path / 'lake').as_uri()}/")
    assert lake.root == str(tmp_path / "lake")
    assert lake.is_local
    assert lake.path("frames/x.parquet") == f"{tmp_path}/lake/frames/x.parquet"
    assert lake.path("/frames/x.parquet") == f"{tmp_path}/lake/frames/x.parquet"
    assert lake.url("/frames/x.parquet") == f"{(tmp_path / 'lake').as_uri()}/frames/x.parquet"
    assert Lake(str(tmp_path / "plain")).root == str(tmp_path / "plain")
    with pytest.raises(ValueError, match="unsupported lake URI 'ftp://host/lake'"):
        Lake("ftp://host/lake")
    with pytest.raises(ValueError, match="lake URI 's3:///lake' names no bucket: use s3://bucket/prefix"):
        Lake("s3:///lake")


def test_from_settings(cellguard_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Lake.from_settings().root == str(cellguard_env.resolve() / "lake")
    monkeypatch.setenv("CELLGUARD_LAKE_URI", (tmp_path / "elsewhere").as_uri())
    assert Lake.from_settings(load_settings()).root == str(tmp_path / "elsewhere")
