"""The lake: one object store API over a local folder or S3, with atomic, deterministic writes."""

from __future__ import annotations

import io
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.config import Settings, load_settings

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3}


@dataclass(frozen=True)
class ObjectInfo:
    """One object in the lake: key relative to the lake root, size in bytes, modification stamp."""

    key: str
    size: int
    mtime_ns: int


class Lake:
    """Keys are '/'-separated paths relative to the lake root, e.g. 'frames/dt=2026-01-01/x.parquet'."""

    def __init__(self, uri: str, s3_endpoint_url: str | None = None):
        self.uri = uri.rstrip("/")
        parsed = urlparse(self.uri)
        if parsed.scheme == "s3":
            self.fs: pafs.FileSystem = pafs.S3FileSystem(endpoint_override=s3_endpoint_url) if s3_endpoint_url else pafs.S3FileSystem()
            self.root = (parsed.netloc + parsed.path).rstrip("/")
        elif parsed.scheme in ("file", ""):
            self.fs = pafs.LocalFileSystem()
            self.root = parsed.path if parsed.scheme == "file" else self.uri
        else:
            raise ValueError(f"unsupported lake URI {uri!r}: use file:///path or s3://bucket/prefix")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Lake:
        """The lake the current settings point at."""
        settings = settings or load_settings()
        return cls(settings.lake_uri, settings.s3_endpoint_url)

    def path(self, key: str) -> str:
        """Filesystem path of a key (for pyarrow.fs and DuckDB)."""
        return posixpath.join(self.root, key.lstrip("/"))

    def url(self, key: str) -> str:
        """A URL for a key that DuckDB, Athena or a person can use."""
        return f"{self.uri}/{key.lstrip('/')}"

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object below a prefix, recursively, sorted by key; temporary files are skipped."""
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        infos = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File or ".tmp-" in info.base_name:
                continue
            key = posixpath.relpath(info.path, self.root)
            infos.append(ObjectInfo(key, info.size, info.mtime_ns or 0))
        return sorted(infos, key=lambda i: i.key)

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self.path(key)).type == pafs.FileType.File

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key), compression=None) as stream:
            return stream.read()

    def iter_chunks(self, key: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        """Stream an object's bytes (for hashing large uploads without holding them)."""
        with self.fs.open_input_stream(self.path(key), compression=None) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a partial one."""
        target = self.path(key)
        if not self.is_local:  # one S3 PUT is atomic already
            with self.fs.open_output_stream(target, compression=None) as out:
                out.write(data)
            return
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open_output_stream(tmp, compression=None) as out:
                out.write(data)
            self.fs.move(tmp, target)
        finally:
            if self.fs.get_file_info(tmp).type == pafs.FileType.File:
                self.fs.delete_file(tmp)

    def write_parquet(self, key: str, table: pa.Table, options: dict | None = None) -> None:
        """Write a table as one Parquet object (zstd unless `options` say otherwise), atomically."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, **(options or PARQUET_OPTIONS))
        self.write_bytes(key, buffer.getvalue())

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(key), columns=columns, filesystem=self.fs)

    def delete(self, key: str) -> None:
        """Delete an object if present (deleting twice is fine)."""
        if self.exists(key):
            self.fs.delete_file(self.path(key))
