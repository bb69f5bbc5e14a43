"""The manifest: one record per landing object saying what became of it, so ingest never repeats itself."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from pipelines.storage.lake import Lake, ObjectInfo

MANIFEST_PREFIX = "_manifest"
LANDING_PREFIX = "landing"


@dataclass
class ManifestEntry:
    """What ingest did with one landing object. Counts reconcile: rows_in = accepted + quarantined + duplicates."""

    key: str
    source_id: str
    source: str
    size: int
    mtime_ns: int
    sha256: str
    status: str  # ingested | partial | rejected
    mapping: str | None = None
    file_format: str | None = None
    rows_in: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    sentinels: dict[str, int] = field(default_factory=dict)
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    dates: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    ingested_at: str = ""
    run_id: str = ""

    def reconciles(self) -> bool:
        return self.rows_in == self.accepted + self.quarantined + self.duplicates


def source_id_for(key: str) -> str:
    """A stable, readable id for a landing key: its file name plus a hash of the whole key."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", PurePosixPath(key).name)[:80]
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def entry_key(source_id: str) -> str:
    return f"{MANIFEST_PREFIX}/{source_id}.json"


def sha256_of(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def load_manifest(lake: Lake) -> dict[str, ManifestEntry]:
    """Every manifest record, by landing key."""
    entries = {}
    for info in lake.list(MANIFEST_PREFIX):
        if info.key.endswith(".json"):
            entry = ManifestEntry(**json.loads(lake.read_bytes(info.key)))
            entries[entry.key] = entry
    return entries


def save_entry(lake: Lake, entry: ManifestEntry) -> None:
    lake.write_bytes(entry_key(entry.source_id), json.dumps(asdict(entry), indent=1, sort_keys=True).encode())


def waits_for_mapping(entry: ManifestEntry, mapped_sources: set[str]) -> bool:
    """The object was rejected for want of a column mapping, and its source has one now."""
    return entry.rejected_by_rule == {"no_mapping": 1} and entry.source in mapped_sources


def pending_objects(lake: Lake, manifest: dict[str, ManifestEntry], limit: int | None = None,
                    mapped_sources: set[str] = frozenset()) -> list[ObjectInfo]:
    """Landing objects that are new, whose size or modification stamp differ from the manifest's record,
    or that were rejected for want of a mapping their source now has."""
    pending = []
    for info in lake.list(LANDING_PREFIX):
        known = manifest.get(info.key)
        if (known is None or (known.size, known.mtime_ns) != (info.size, info.mtime_ns)
                or waits_for_mapping(known, mapped_sources)):
            pending.append(info)
            if limit and len(pending) >= limit:
                break
    return pending
