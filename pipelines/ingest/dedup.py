"""Duplicate frames: the same (vin, ts) twice in a file, or again after an earlier object delivered it."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.storage.lake import Lake

FRAMES_PREFIX = "frames"


def utc_dates(ts: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The partition date ('YYYY-MM-DD', UTC) of each timestamp, without formatting every row."""
    days = pc.fill_null(ts.cast(pa.int64()), 0).to_numpy(zero_copy_only=False) // 86_400_000
    unique, inverse = np.unique(days, return_inverse=True)
    names = np.array([str(np.datetime64(int(d), "D")) for d in unique], dtype=object)
    return names[inverse]


def partition_key(date: str, source_id: str) -> str:
    return f"{FRAMES_PREFIX}/dt={date}/{source_id}.parquet"


def one_vin(vin: np.ndarray) -> bool:
    """The usual upload holds one vehicle: then (vin, ts) keys reduce to timestamps, without pandas."""
    return len(vin) > 0 and bool((vin == vin[0]).all())


def _groups(dates: np.ndarray, vin: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(date, vin, row indexes) for each date and vehicle among the rows."""
    if one_vin(vin):
        codes, names = pd.factorize(dates)  # hashing, not sorting, the few distinct dates
        if len(names) == 1:
            return [(names[0], vin[0], np.arange(len(vin)))]
        return [(date, vin[0], np.flatnonzero(codes == code)) for code, date in enumerate(names)]
    frame = pd.DataFrame({"date": dates, "vin": vin})
    return [(date, one_vin, rows.to_numpy()) for (date, one_vin), rows in frame.groupby(["date", "vin"], sort=False).groups.items()]


def vin_ranks(vin: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each row's VIN as its place in sorted order, through the (small) dictionary of distinct VINs."""
    encoded = pc.dictionary_encode(vin.combine_chunks() if isinstance(vin, pa.ChunkedArray) else vin)
    dictionary = encoded.dictionary.to_numpy(zero_copy_only=False).astype(str)
    if not len(dictionary):  # no VIN at all: those rows are rejected anyway
        return np.zeros(len(encoded), dtype=np.int64)
    ranks = np.argsort(np.argsort(dictionary, kind="stable"), kind="stable")
    return ranks[pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)]


def file_order(vin_rank: np.ndarray, ts_ms: np.ndarray, objects: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kept rows in (object, vin, ts) order without repeats within their object, and which rows repeated.

    A repeat is a (vin, ts) its file already delivered: the sort is stable, so the file's first one wins.
    """
    alive = np.flatnonzero(keep)
    if not len(alive):
        return alive, np.zeros(len(keep), dtype=bool)
    vin, ts, obj = vin_rank[alive], ts_ms[alive], objects[alive]
    order = np.lexsort((ts, vin, obj))
    vin, ts, obj, rows = vin[order], ts[order], obj[order], alive[order]
    repeat = np.concatenate(([False], (obj[1:] == obj[:-1]) & (vin[1:] == vin[:-1]) & (ts[1:] == ts[:-1])))
    repeated = np.zeros(len(keep), dtype=bool)
    repeated[rows[repeat]] = True
    return rows[~repeat], repeated


class LakeKeys:
    """(vin, ts) already in the frames zone, per date partition, read lazily and kept up to date in a run.

    Files of `replacing` (source ids being re-ingested) are left out: their rows are about to be rewritten.
    """

    def __init__(self, lake: Lake, replacing: set[str]):
        self.lake = lake
        self.replacing = replacing
        self._by_date: dict[str, dict[str, np.ndarray]] = {}

    def _load(self, date: str) -> dict[str, np.ndarray]:
        if date not in self._by_date:
            keys: dict[str, list[np.ndarray]] = defaultdict(list)
            for info in self.lake.list(f"{FRAMES_PREFIX}/dt={date}"):
                if info.key.rsplit("/", 1)[-1].removesuffix(".parquet") in self.replacing:
                    continue
                table = self.lake.read_parquet(info.key, columns=["vin", "ts"])
                frame = pd.DataFrame({"vin": table["vin"].to_numpy(zero_copy_only=False),
                                      "ts": table["ts"].cast(pa.int64()).to_numpy(zero_copy_only=False)})
                for vin, group in frame.groupby("vin", sort=False):
                    keys[vin].append(group["ts"].to_numpy())
            self._by_date[date] = {vin: np.unique(np.concatenate(parts)) for vin, parts in keys.items()}
        return self._by_date[date]

    def seen(self, dates: np.ndarray, vin: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
        """Which rows are already in the lake (or were accepted earlier in this run)."""
        hit = np.zeros(len(vin), dtype=bool)
        for date, one_vin, rows in _groups(dates, vin):
            known = self._load(date).get(one_vin)
            if known is not None:
                hit[rows] = np.isin(ts_ms[rows], known)
        return hit

    def add(self, dates: np.ndarray, vin: np.ndarray, ts_ms: np.ndarray) -> None:
        """Remember rows accepted in this run."""
        for date, one_vin, rows in _groups(dates, vin):
            partition = self._load(date)
            known = partition.get(one_vin)
            new = ts_ms[rows]
            partition[one_vin] = np.union1d(known, new) if known is not None else np.unique(new)
