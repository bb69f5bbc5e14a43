"""Ingest and simulator throughput, measured side by side in one run on this machine.

Prints frames/s for: the simulator (physics + landing files), ingest of a ~1M-frame batch from Parquet,
and the same batch from CSV (parse + map + check + dedup + Great Expectations + write), plus peak memory.
Usage: python benchmarks/ingest.py [--frames 1000000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import load_settings
from pipelines.ingest import ingest_pending
from pipelines.ingest.pipeline import WORKERS
from pipelines.ingest.readers import read_object
from pipelines.schema import FRAME_PARQUET_OPTIONS
from pipelines.simulate import SimulationParams, simulate_fleet
from pipelines.storage.lake import Lake

DAYS = 10


# name -> (file format, days per upload file): daily files are what fleets send; 10-day files show the
# per-file overhead by contrast.
CASES = {"parquet": ("parquet", 1), "csv": ("csv", 1), "parquet-10d": ("parquet", DAYS)}


def _params(vehicles: int, file_format: str, period_days: int) -> SimulationParams:
    return SimulationParams(vehicles=vehicles, days=DAYS, start_date=dt.date(2026, 1, 1), interval_s=10, seed=11,
                            file_format=file_format, gzip=False, period_days=period_days)


def _simulate(root: Path, vehicles: int, case: str) -> tuple[int, float, int]:
    file_format, period_days = CASES[case]
    lake = Lake((root / case / "lake").as_uri())
    started = time.perf_counter()
    summary = simulate_fleet(_params(vehicles, file_format, period_days), lake)
    return summary.frames + summary.duplicates_written, time.perf_counter() - started, summary.files


def _ingest(root: Path, case: str) -> tuple[int, float, dict[str, float]]:
    os.environ["CELLGUARD_HOME"] = str(root / case)
    os.environ["CELLGUARD_INGEST_MAX_OBJECTS"] = "100000"
    settings = load_settings()
    started = time.perf_counter()
    summary = ingest_pending(settings=settings)
    seconds = time.perf_counter() - started
    assert summary.reconciles(), "counts must reconcile"
    return summary.rows_in, seconds, summary.stage_seconds


def _codec_floor(root: Path, case: str) -> float:
    """Seconds to parse every landing object and write the ingested frames back as one file per date, on
    every core, with nothing in between: the part of ingest no mapping, check or validation can save."""
    lake = Lake((root / case / "lake").as_uri())
    keys = [info.key for info in lake.list("landing")]
    by_date: dict[str, list[pa.Table]] = {}
    for info in lake.list("frames"):
        by_date.setdefault(info.key.split("/")[1], []).append(lake.read_parquet(info.key))
    tables = [pa.concat_tables(parts) for parts in by_date.values()]

    def write(table: pa.Table) -> None:
        pq.write_table(table, io.BytesIO(), **FRAME_PARQUET_OPTIONS)

    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda key: read_object(key, lake.read_bytes(key)), keys))
        list(pool.map(write, tables))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames in the ingest batch (approximately)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="cellguard-bench-"))
    os.environ["CELLGUARD_DATA_DOCS"] = "1"

    # Probe how many frames one vehicle makes over DAYS days, then size the fleet for the target.
    probe_frames, _, _ = _simulate(root / "probe", 2, "parquet-10d")
    vehicles = max(1, round(args.frames / (probe_frames / 2)))
    print(f"batch: {vehicles} vehicles × {DAYS} days at 10 s ≈ {args.frames:,} frames; work dir {root}")

    # Warm up Great Expectations' import (7–13 s once per process) so it is not billed to the first batch.
    from pipelines.quality.suite import import_great_expectations

    import_great_expectations()

    rows, breakdown = [], []
    for case in CASES:
        frames, sim_seconds, files = _simulate(root, vehicles, case)
        size_mb = sum(p.stat().st_size for p in (root / case / "lake" / "landing").rglob("*") if p.is_file()) / 1e6
        ingested, ingest_seconds, stages = _ingest(root, case)
        floor_seconds = _codec_floor(root, case)
        rows.append((case, frames, files, size_mb, sim_seconds, ingested, ingest_seconds, floor_seconds))
        breakdown.append((case, ingest_seconds, stages))

    print()
    print("| batch | frames | files | landing MB | simulate frames/s (incl. writing) | ingest frames/s | "
          "parse + write only, frames/s | ingest / parse + write | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, frames, files, size_mb, sim_s, ingested, ing_s, floor_s in rows:
        target = "≥ 150k" if case == "csv" else "≥ 400k"
        print(f"| {case} | {ingested:,} | {files:,} | {size_mb:,.0f} | {frames / sim_s:,.0f} | "
              f"{ingested / ing_s:,.0f} | {ingested / floor_s:,.0f} | {floor_s / ing_s:.2f} | {target} |")
    print("\n'parse + write only': the landing objects parsed and the accepted frames written (zstd, one file per "
          "date, every core), with no mapping, checks, de-duplication or validation: the ceiling for this machine.")
    print("\nIngest stages, seconds summed over threads (wall clock in the first column):")
    names = sorted({name for _, _, stages in breakdown for name in stages})
    print("| batch | wall | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for case, wall, stages in breakdown:
        print(f"| {case} | {wall:.1f} | " + " | ".join(f"{stages.get(n, 0):.1f}" for n in names) + " |")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory: {peak_mb:,.0f} MB; cores: {os.cpu_count()}")
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
