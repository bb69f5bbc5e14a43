"""The lake: one object store API over a local folder or S3, with atomic, deterministic writes."""

from __future__ import annotations

import io
import posixpath
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
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

    def __init__(self, uri: str, s3_endpoint_url: str | None = None, s3_region: str | None = None,
                 s3_credentials: dict[str, str] | None = None):
        self.uri = uri.rstrip("/")
        parsed = urlparse(self.uri)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"lake URI {uri!r} names no bucket: use s3://bucket/prefix")
            self.fs: pafs.FileSystem = _s3_filesystem(s3_endpoint_url, s3_region, s3_credentials)
            self.root = (parsed.netloc + parsed.path).rstrip("/")
            self.bucket = parsed.netloc
            self._s3_options = _boto3_options(s3_endpoint_url, s3_region, s3_credentials)
        elif parsed.scheme in ("file", ""):
            self.fs = pafs.LocalFileSystem()
            self.root = parsed.path if parsed.scheme == "file" else self.uri
        else:
            raise ValueError(f"unsupported lake URI {uri!r}: use file:///path or s3://bucket/prefix")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self._s3_client: Any = None
        self._s3_client_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Lake:
        """The lake the current settings point at."""
        settings = settings or load_settings()
        if not settings.lake_uri.startswith("s3://"):
            return cls(settings.lake_uri)
        from pipelines.storage.aws import lake_credentials

        return cls(settings.lake_uri, settings.s3_endpoint_url, settings.aws_region, lake_credentials(settings))

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
        """An object's bytes: on S3 from one GET, so an object replaced meanwhile is read whole, old or new."""
        if not self.is_local:
            body = self._get_object(key)
            try:
                return body.read()
            finally:
                body.close()
        with self.fs.open_input_stream(self.path(key), compression=None) as stream:
            return stream.read()

    def iter_chunks(self, key: str, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        """Stream an object's bytes (for hashing large uploads without holding them), on S3 from one GET."""
        if not self.is_local:
            body = self._get_object(key)
            try:
                yield from body.iter_chunks(chunk_size)
            finally:
                body.close()
            return
        with self.fs.open_input_stream(self.path(key), compression=None) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def _get_object(self, key: str) -> Any:
        """The body of one S3 GET of the whole object.

        pyarrow reads an S3 object as a HEAD and ranged GETs: an object replaced between them reads as a mix of
        both, or fails with HTTP 416 (seen against moto). One GET answers with a single version of the object."""
        with self._s3_client_lock:
            if self._s3_client is None:
                import boto3

                self._s3_client = boto3.session.Session().client("s3", **self._s3_options)
            client = self._s3_client
        try:
            return client.get_object(Bucket=self.bucket, Key=self.path(key)[len(self.bucket) + 1:])["Body"]
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no object {key!r} in the lake {self.uri}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the new one, never a partial one."""
        target = self.path(key)
        if not self.is_local:
            # S3 makes an object visible only when its PUT (or multipart upload) completes, so no temporary name
            # (a rename would be a copy and a delete there). The bytes go in one write: the stream is never
            # closed, and so never completed, with part of them.
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
        """One Parquet object as a table (on S3 from one GET, like read_bytes)."""
        if not self.is_local:
            return pq.read_table(pa.BufferReader(self.read_bytes(key)), columns=columns)
        return pq.read_table(self.path(key), columns=columns, filesystem=self.fs)

    def delete(self, key: str) -> None:
        """Delete an object if present (deleting twice is fine)."""
        if self.exists(key):
            self.fs.delete_file(self.path(key))


def _s3_filesystem(endpoint_url: str | None, region: str | None, credentials: dict[str, str] | None) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem at an endpoint (http:// or https://, as given), in a region, with explicit keys if any."""
    options: dict = dict(credentials or {})
    if endpoint_url:
        # pyarrow takes the scheme from the URL itself (http for moto or MinIO on loopback). It ignores
        # AWS_ENDPOINT_URL, hence the explicit setting.
        options["endpoint_override"] = endpoint_url
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def _boto3_options(endpoint_url: str | None, region: str | None, credentials: dict[str, str] | None) -> dict:
    """The same endpoint, region and keys for the boto3 client that reads whole objects."""
    from botocore.config import Config

    keys = credentials or {}
    options: dict = {"endpoint_url": endpoint_url, "region_name": region,
                     "config": Config(retries={"mode": "standard", "total_max_attempts": 10})}
    if keys:
        options |= {"aws_access_key_id": keys["access_key"], "aws_secret_access_key": keys["secret_key"],
                    "aws_session_token": keys.get("session_token")}
    return options
