"""Great Expectations Data Docs for a lake on S3: built in a local mirror of the site, then published to the lake.

GE's site builder writes files. On a folder lake it writes straight into `reports/data_docs/`; on S3 the site is
mirrored into a folder under CELLGUARD_HOME: objects whose size or stamp changed since the last sync are fetched,
GE adds the run (and prunes old results), then what it wrote is uploaded with its content type and what it removed
is deleted from the lake. A worker without a mirror (a fresh MWAA worker) fetches the whole site once. Ingest runs
one at a time (max_active_runs=1), so one writer publishes at a time.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.config import Settings
from pipelines.storage.lake import Lake

# In the mirror: per file, the (size, stamp) of the lake's object and of the local copy when they were last equal.
SYNC_STATE = ".lake-sync.json"

Stamps = dict[str, tuple[int, int]]
SyncState = dict[str, tuple[tuple[int, int], tuple[int, int]]]


def mirror_folder(settings: Settings, lake: Lake, prefix: str) -> Path:
    """The local folder mirroring one lake prefix (one per lake, so two lakes never share a site)."""
    digest = hashlib.sha256(lake.url(prefix).encode()).hexdigest()[:12]
    return settings.home / "data_docs_mirror" / digest


def _lake_stamps(lake: Lake, prefix: str) -> Stamps:
    """Every object below the prefix: its key below the prefix and its (size, stamp)."""
    return {info.key[len(prefix) + 1:]: (info.size, info.mtime_ns) for info in lake.list(prefix)}


def _local_stamps(folder: Path) -> Stamps:
    """Every file of the mirror but the sync state: its relative path and its (size, stamp)."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.name != SYNC_STATE:
            stat = path.stat()
            found[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def _read_state(folder: Path) -> SyncState:
    try:
        state = json.loads((folder / SYNC_STATE).read_text())
        return {key: (tuple(remote), tuple(local)) for key, (remote, local) in state.items()}
    except (OSError, ValueError, TypeError):
        return {}  # no mirror yet, or one left half-written: fetch everything


def _write_state(lake: Lake, prefix: str, folder: Path) -> None:
    """Record that the mirror and the lake now hold the same files."""
    remote, local = _lake_stamps(lake, prefix), _local_stamps(folder)
    state = {key: [remote[key], local[key]] for key in remote.keys() & local.keys()}
    (folder / SYNC_STATE).write_text(json.dumps(state))


def fetch(lake: Lake, prefix: str, folder: Path) -> int:
    """Make the mirror equal the lake's copy: fetch what changed on either side, drop what the lake no longer has.

    Returns how many files were fetched."""
    folder.mkdir(parents=True, exist_ok=True)
    remote, local, known = _lake_stamps(lake, prefix), _local_stamps(folder), _read_state(folder)
    fetched = 0
    for key, stamp in remote.items():
        if known.get(key) != (stamp, local.get(key)):  # (a run that died before publishing leaves local edits)
            path = folder / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(lake.read_bytes(f"{prefix}/{key}"))
            fetched += 1
    for key in local.keys() - remote.keys():
        (folder / key).unlink()
    _write_state(lake, prefix, folder)
    return fetched


def publish(lake: Lake, prefix: str, folder: Path, before: Stamps, s3: Any) -> tuple[int, int]:
    """Upload the mirror's new or changed files, delete the lake objects of files GE removed; (uploaded, deleted)."""
    after = _local_stamps(folder)
    changed = sorted(key for key, stamp in after.items() if before.get(key) != stamp)
    removed = sorted(before.keys() - after.keys())
    bucket, _, root = lake.path(prefix).partition("/")
    for key in changed:
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        s3.put_object(Bucket=bucket, Key=f"{root}/{key}", Body=(folder / key).read_bytes(), ContentType=content_type)
    for key in removed:  # boto3, not the lake's pyarrow delete: that leaves a directory marker behind
        s3.delete_object(Bucket=bucket, Key=f"{root}/{key}")
    _write_state(lake, prefix, folder)
    return len(changed), len(removed)


@contextmanager
def mirrored_site(lake: Lake, prefix: str, settings: Settings) -> Iterator[Path]:
    """A local folder holding the lake's Data Docs site; what GE changes in it is published when the block ends."""
    from pipelines.storage.aws import aws_client

    if lake.is_local:
        raise ValueError(f"a folder lake holds its Data Docs itself; mirroring is for S3 lakes, not {lake.uri!r}")
    folder = mirror_folder(settings, lake, prefix)
    fetch(lake, prefix, folder)
    before = _local_stamps(folder)
    yield folder
    publish(lake, prefix, folder, before, aws_client("s3", settings))


def site_url(lake: Lake, prefix: str) -> str:
    """Where the published site's index is."""
    return lake.url(f"{prefix}/index.html")
