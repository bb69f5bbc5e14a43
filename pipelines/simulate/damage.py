"""Damaged re-uploads, as telematics platforms sometimes deliver them: for demos and drills of the quarantine."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import PurePosixPath

import numpy as np

from pipelines.storage.lake import Lake


def _lines(data: bytes) -> list[bytes]:
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).split(b"\n")


def _set_field(lines: list[bytes], row: int, column: str, value: bytes) -> list[bytes]:
    header = lines[0].split(b",")
    fields = lines[row].split(b",")
    fields[header.index(column.encode())] = value
    return [*lines[:row], b",".join(fields), *lines[row + 1:]]


# kind -> how it damages a native simulator CSV (header + data lines); each keeps most rows intact.
DAMAGES: dict[str, Callable[[list[bytes], int], bytes]] = {
    "soc_out_of_range": lambda lines, row: b"\n".join(_set_field(lines, row, "soc_pct", b"180")),
    "vin_typo": lambda lines, row: b"\n".join(_set_field(lines, row, "vin", lines[row].split(b",")[0][:16])),
    "not_a_number": lambda lines, row: b"\n".join(_set_field(lines, row, "pack_current_a", b"12.5A")),
    "future_timestamp": lambda lines, row: b"\n".join(_set_field(lines, row, "ts", b"2099-01-01T00:00:00.000Z")),
    "bad_bytes": lambda lines, row: b"\n".join([*lines[:row], b"\xff\xfe" + lines[row], *lines[row + 1:]]),
    "truncated_gzip": lambda lines, row: gzip.compress(b"\n".join(lines), mtime=0)[: len(b"\n".join(lines)) // 40],
}


def damage_uploads(lake: Lake, landing_keys: list[str], seed: int = 0) -> list[str]:
    """Write one damaged re-upload per kind of damage, each a copy of one of the fleet's CSV uploads."""
    rng = np.random.default_rng(seed)
    sources = [k for k in landing_keys if k.startswith("landing/simulator/") and ".csv" in k]
    written = []
    for number, (kind, damage) in enumerate(DAMAGES.items()):
        if not sources:
            break
        key = sources[int(rng.integers(len(sources)))]
        lines = _lines(lake.read_bytes(key))
        data_rows = [i for i in range(1, len(lines)) if lines[i].strip()]
        if len(data_rows) < 2:
            continue
        row = data_rows[int(rng.integers(len(data_rows)))]
        name = PurePosixPath(key).name.split(".")[0]
        suffix = "csv.gz" if kind == "truncated_gzip" else "csv"
        target = f"{PurePosixPath(key).parent}/{name}_resent{number}-{kind}.{suffix}"
        lake.write_bytes(target, damage(lines, row))
        written.append(target)
    return written
