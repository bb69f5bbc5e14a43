"""Daily-feature and training throughput on this machine: build_daily over a lake of ≥ 5M frames, XGBoost on 1M windows.

Features: simulated vehicles (pipelines.simulate, every vehicle unique, no replication) are written in the lake's
frame layout — frames/dt=YYYY-MM-DD/<vin>-<date>.parquet, FRAME_SCHEMA, zstd with FRAME_PARQUET_OPTIONS, one file
per vehicle and day as ingest writes daily uploads — under --data (kept, so reruns skip generation). Then
`build_daily` runs once over every date, reading the Parquet files by path as the DAG does, beside two bare scans
of the same files for comparison: DuckDB's count(*) and sum of each frame's highest cell (every cell item read), and
pyarrow reading the cell_mv column alone.
Training: synthetic windows with the `full` feature set's column count (~8 % missing days), trained by
pipelines.training.train.train_booster with its default parameters (DMatrix construction included).

Each measured part runs in a fresh process, so its peak resident memory is its own. Figures only, never asserts.
Usage: python benchmarks/features.py [--frames 5000000] [--days 14] [--windows 1000000] [--rounds 200]
                                     [--data DIR] [--only features|training]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pipelines.simulate import SimulationParams, VehicleSpec

START = dt.date(2026, 1, 1)
SEED = 11
INTERVAL_S = 10
DATA_VERSION = 1  # bump when the generated layout changes, so cached data is rebuilt


# ---------------------------------------------------------------- data generation


def _params(days: int, fleet_size: int) -> SimulationParams:
    """The simulated fleet: 10 s reports, the simulator's default fault fraction."""
    from pipelines.simulate import SimulationParams

    return SimulationParams(vehicles=fleet_size, days=days, start_date=START, interval_s=INTERVAL_S, seed=SEED)


def _write_vehicle(frames_dir: str, params: SimulationParams, spec: VehicleSpec) -> tuple[int, list[str]]:
    """Simulate one vehicle and write one file per UTC day: (frames, paths written)."""
    from pipelines.schema import FRAME_PARQUET_OPTIONS
    from pipelines.simulate import simulate_vehicle_frames

    table = simulate_vehicle_frames(params, spec)
    dates = pc.cast(table["ts"], pa.date32())
    paths = []
    for day in pc.unique(dates).to_pylist():
        rows = table.filter(pc.equal(dates, pa.scalar(day, pa.date32())))
        folder = Path(frames_dir) / f"dt={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{spec.vin}-{day.isoformat()}.parquet"
        pq.write_table(rows, path, **FRAME_PARQUET_OPTIONS)
        paths.append(str(path))
    return table.num_rows, paths


def ensure_frames(data: Path, target_frames: int, days: int) -> dict:
    """The cached lake under `data`, or a new one: vehicles simulated in fleet order until ≥ target frames."""
    meta_path = data / "frames.json"
    wanted = {"version": DATA_VERSION, "target_frames": target_frames, "days": days, "seed": SEED,
              "interval_s": INTERVAL_S}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            print(f"frames: cached in {data / 'frames'} ({meta['frames']:,} frames, {meta['vehicles']} vehicles × "
                  f"{days} days, {meta['files']:,} files); delete the folder to regenerate")
            return meta
    elif (data / "frames").exists():
        raise SystemExit(f"{data / 'frames'} holds frames this benchmark did not write: choose another --data")
    shutil.rmtree(data / "frames", ignore_errors=True)  # an earlier run's lake with other parameters
    meta_path.unlink(missing_ok=True)
    frames_dir = data / "frames"
    frames_dir.mkdir(parents=True)
    from pipelines.simulate import build_fleet

    # The fleet is drawn up front (seeded, ~2x what the target needs); its first vehicles are simulated.
    params = _params(days, max(8, 2 * target_frames // (days * 1000)))
    fleet = build_fleet(params)
    workers = os.cpu_count() or 1
    started = time.perf_counter()
    total, vehicles, files = 0, 0, 0
    pending: list[Future] = []
    next_index = 0
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while total < target_frames:
            while len(pending) < 2 * workers and next_index < len(fleet):
                pending.append(pool.submit(_write_vehicle, str(frames_dir), params, fleet[next_index]))
                next_index += 1
            if not pending:
                raise RuntimeError(f"{len(fleet)} vehicles made only {total:,} frames: raise the fleet size")
            n, paths = pending.pop(0).result()  # in fleet order, so the lake does not depend on timing
            total, vehicles, files = total + n, vehicles + 1, files + len(paths)
            if vehicles % 10 == 0:
                print(f"\rsimulating: {vehicles} vehicles, {total:,} frames", end="", flush=True)
        for future in pending:  # vehicles beyond the target: simulated ahead, not kept
            for path in future.result()[1]:
                Path(path).unlink()
    seconds = time.perf_counter() - started
    print(f"\rsimulated {vehicles} vehicles × {days} days at {INTERVAL_S} s: {total:,} frames in {files:,} files, "
          f"{seconds:.0f} s ({total / seconds:,.0f} frames/s with writing)")
    size_mb = sum(p.stat().st_size for p in frames_dir.rglob("*.parquet")) / 1e6
    meta = {**wanted, "frames": total, "vehicles": vehicles, "files": files, "size_mb": round(size_mb, 1)}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


# ---------------------------------------------------------------- measured parts (each in a fresh process)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _dates(frames_dir: Path) -> list[str]:
    return sorted(p.name.removeprefix("dt=") for p in frames_dir.iterdir() if p.name.startswith("dt="))


def measure_build_daily(frames_dir: str) -> dict:
    """build_daily over every date of the lake, frames read from Parquet by path (as the DAG passes them)."""
    from pipelines.features.daily import build_daily

    days = _dates(Path(frames_dir))
    cpu, started = _cpu_seconds(), time.perf_counter()
    result = build_daily(Path(frames_dir), days)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    frames = int(pc.sum(result.daily["frame_count"]).as_py())
    return {"seconds": seconds, "cpu_seconds": cpu, "frames": frames, "daily_rows": result.daily.num_rows,
            "cell_rows": result.cell_daily.num_rows, "days": len(days), "peak_rss_mb": _peak_rss_mb()}


def measure_bare_scan(frames_dir: str) -> dict:
    """A bare DuckDB scan of the same files: count(*) and the sum of each frame's highest cell (every cell item read)."""
    import duckdb

    glob = f"{frames_dir}/**/*.parquet"
    with duckdb.connect(":memory:") as con:
        cpu, started = _cpu_seconds(), time.perf_counter()
        frames, _ = con.execute("select count(*), sum(list_max(cell_mv)) from read_parquet(?, hive_partitioning = true)",
                                [glob]).fetchone()
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        threads = con.execute("select current_setting('threads')").fetchone()[0]
    return {"seconds": seconds, "cpu_seconds": cpu, "frames": int(frames), "threads": int(threads),
            "peak_rss_mb": _peak_rss_mb()}


def measure_arrow_read(frames_dir: str) -> dict:
    """pyarrow decoding only the cell_mv column of the same files, on every core."""
    import pyarrow.dataset as ds

    cpu, started = _cpu_seconds(), time.perf_counter()
    cells = ds.dataset(frames_dir, format="parquet", partitioning="hive").to_table(columns=["cell_mv"])
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "frames": cells.num_rows, "peak_rss_mb": _peak_rss_mb()}


def synthetic_windows(rows: int, columns: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Window-shaped float32 features (~8 % missing days as NaN) and a ~5 % positive label tied to a few columns."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, columns), dtype=np.float32)
    signal = x[:, : min(columns, 8)].sum(axis=1) + rng.standard_normal(rows, dtype=np.float32)
    y = (signal > np.quantile(signal, 0.95)).astype(np.float32)
    missing_days = rng.random((rows, 14)) < 0.08  # a whole context day missing, as in real windows
    per_day = columns // 14
    if per_day:
        x[:, : 14 * per_day].reshape(rows, 14, per_day)[missing_days] = np.nan
    return x, y


def measure_training(rows: int, rounds: int) -> dict:
    """train_booster with DEFAULT_PARAMS on `rows` synthetic windows with the full feature set's columns."""
    from pipelines.features.window_signals import feature_columns
    from pipelines.training.train import DEFAULT_PARAMS, train_booster

    columns = len(feature_columns("full"))
    x, y = synthetic_windows(rows, columns)
    started = time.perf_counter()
    booster = train_booster(x, y, dict(DEFAULT_PARAMS), rounds, verbose=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "features": columns, "rounds": booster.num_boosted_rounds(),
            "positives": int(y.sum()), "peak_rss_mb": _peak_rss_mb()}


def in_fresh_process(function: Callable[..., dict], *args: object) -> dict:
    """Run one measured part in its own process: its peak memory is not inflated by another part's."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ---------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5_000_000, help="frames in the lake (at least; default 5M)")
    parser.add_argument("--days", type=int, default=14, help="simulated days per vehicle")
    parser.add_argument("--windows", type=int, default=1_000_000, help="training rows (default 1M)")
    parser.add_argument("--rounds", type=int, default=200, help="boosting rounds (default 200)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/cellguard-bench-features"),
                        help="where the generated lake is kept between runs")
    parser.add_argument("--only", choices=("features", "training"), default=None, help="run one part only")
    args = parser.parse_args()
    summary: list[tuple[str, str, str, str]] = []
    print(f"cores: {os.cpu_count()}")

    if args.only in (None, "features"):
        meta = ensure_frames(args.data, args.frames, args.days)
        frames_dir = str(args.data / "frames")
        print(f"lake: {meta['frames']:,} frames, {meta['vehicles']} vehicles × {meta['days']} days, "
              f"{meta['files']:,} files, {meta['size_mb']:,.0f} MB (every vehicle simulated, none replicated; one file per "
              f"vehicle and day, as ingest writes)")
        arrow = in_fresh_process(measure_arrow_read, frames_dir)
        scan = in_fresh_process(measure_bare_scan, frames_dir)
        daily = in_fresh_process(measure_build_daily, frames_dir)
        assert daily["frames"] == scan["frames"] == arrow["frames"] == meta["frames"], (daily, scan, arrow, meta)
        rate = daily["frames"] / daily["seconds"]
        for name, part in (("pyarrow read of cell_mv alone", arrow),
                           (f"duckdb scan, {scan['threads']} threads: count(*), sum(list_max(cell_mv))", scan),
                           (f"build_daily over {daily['days']} dates from the Parquet paths", daily)):
            print(f"{name}: {part['seconds']:.2f} s ({part['cpu_seconds']:.1f} s CPU), "
                  f"{part['frames'] / part['seconds']:,.0f} frames/s, peak RSS {part['peak_rss_mb']:,.0f} MB")
        print(f"build_daily wrote {daily['daily_rows']:,} daily rows and {daily['cell_rows']:,} cell rows; "
              f"its speed is {scan['seconds'] / daily['seconds']:.2f} × the duckdb scan's")
        summary.append(("pyarrow read of cell_mv", f"{arrow['frames']:,} frames", f"{arrow['seconds']:.2f}",
                        f"{arrow['frames'] / arrow['seconds']:,.0f} frames/s, peak {arrow['peak_rss_mb']:,.0f} MB"))
        summary.append(("duckdb scan: count(*), sum(list_max(cell_mv))", f"{scan['frames']:,} frames",
                        f"{scan['seconds']:.2f}",
                        f"{scan['frames'] / scan['seconds']:,.0f} frames/s, peak {scan['peak_rss_mb']:,.0f} MB"))
        summary.append(("build_daily", f"{daily['frames']:,} frames", f"{daily['seconds']:.2f}",
                        f"{rate:,.0f} frames/s ({scan['seconds'] / daily['seconds']:.2f} × the duckdb scan's), "
                        f"{daily['cpu_seconds']:.0f} s CPU, peak {daily['peak_rss_mb']:,.0f} MB"))

    if args.only in (None, "training"):
        training = in_fresh_process(measure_training, args.windows, args.rounds)
        print(f"training: {training['rows']:,} rows × {training['features']} features ({training['positives']:,} "
              f"positive), {training['rounds']} rounds: {training['seconds']:.1f} s, "
              f"peak RSS {training['peak_rss_mb']:,.0f} MB")
        summary.append(("train_booster (default params)", f"{training['rows']:,} × {training['features']}",
                        f"{training['seconds']:.1f}",
                        f"{training['rounds']} rounds, {training['seconds'] / training['rounds']:.2f} s/round, "
                        f"peak {training['peak_rss_mb']:,.0f} MB"))

    print("\n| part | size | seconds | figures |")
    print("|---|---|---|---|")
    for row in summary:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
