"""Serving throughput on this machine: the prediction API under load, batch inference, one call per row vs one call.

Data (kept under --data, so reruns skip generation): a small "serving" lake of synthetic daily rows (60 vehicles ×
120 days, ~40 % of them drifting into an alarm) with `signals6` and `full` champions trained on it by
`train_and_register` (the DAG's defaults, reference recipe skipped); and a "batch" lake of synthetic daily rows for
as many vehicles as --windows asks (14 context days per as_of date), generated with numpy and written with
`daily_zone.write_computed`, holding a copy of the same champions.

API: `cellguard serve-api` in a subprocess (one process, and once with CELLGUARD_API_WORKERS=2) over a fresh CELLGUARD_HOME (a copy of the serving lake, SQLite event
store, the buffered lake writer with its default flush settings); the load comes from a separate process on loopback:
16 keep-alive connections (a minimal HTTP/1.1 client on asyncio streams by default, or httpx.AsyncClient with
--client httpx, which costs ~20× more CPU per request, CPU this 2-core machine's server then lacks), warm-up first,
then --requests requests or --seconds seconds. Every request carries its own X-Request-ID (so every one is scored,
recorded and written), except in the run that lets the server make the id. A GET /healthz run gives the ceiling of
the HTTP stack and load generator alone. Then the API's own functions are timed in-process, one at a time, to show
where a request's server time goes.
Batch: `score_dates` as the DAG calls it (read daily → windows → one predict call → reasons → event store and
`predictions/`), then its parts timed one by one in the same process.
Per row: the reference's pattern, one `POST /invocations` (text/csv, one row) per window against
`cellguard serve-model` in a subprocess, for a sample, beside one `predict_fn` call on all the windows.

Figures only, never asserts. Each measured part runs in a fresh process (its peak memory is its own).
Usage: python benchmarks/serving.py [--only api|batch|per-row] [--requests 20000] [--seconds 60] [--concurrency 16]
                                    [--client raw|httpx] [--windows 100000] [--as-of-dates 1] [--sample 2000]
                                    [--data DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

DATA_VERSION = 2  # bump when the generated data or training changes, so cached data is rebuilt
SEED = 11
SERVING_VEHICLES, SERVING_DAYS = 60, 120
SERVING_FIRST_DAY = date(2026, 1, 1)
BATCH_FIRST_DAY = date(2026, 6, 1)
BATCH_FAULTY = 0.05
MISSING_DAY = 0.08  # share of (vehicle, day) rows absent, as when a car is parked all day
SPIKE_DAY = 0.02  # share of healthy days with a sensor glitch in the rest range
# The BMS alarms around 80 mV, not exactly at it: with this softness the champions come out near the size of the
# demo's (~45–75 trees of depth ≤ 6) instead of a few trees that a clean threshold would need.
ALARM_SOFTNESS_MV = 10.0
API_FLEET = 10_000  # VINs the form (a) requests are spread over
TARGETS = {"api_rps": 1_000, "api_p99_ms": 20.0, "batch_wps": 500_000, "ratio": 1_000}


# ---------------------------------------------------------------- small helpers


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reporting(function: Callable[..., dict], *args: object) -> dict:
    """Call function; an exception comes back as a RuntimeError carrying its traceback (some cannot be pickled)."""
    try:
        return function(*args)
    except Exception:
        raise RuntimeError(f"{function.__name__} failed:\n{traceback.format_exc()}") from None


def in_fresh_process(function: Callable[..., dict], *args: object) -> dict:
    """Run one measured part in its own process: its peak memory is not inflated by another part's."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_reporting, function, *args).result()


def _vins(prefix: str, count: int) -> list[str]:
    """Valid VINs (17 characters, no I, O, Q): a 6-letter prefix and 11 digits."""
    return [f"{prefix}{i:011d}" for i in range(count)]


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


# ---------------------------------------------------------------- synthetic daily rows


def synthetic_daily(vins: list[str], first_day: date, days: int, seed: int, onset: tuple[int, int],
                    faulty_fraction: float = 0.4) -> Iterator[tuple[date, pa.Table]]:
    """One DAILY_SCHEMA table per day: every column filled, faulty vehicles' weakest cell drifting from an onset day
    (4 mV/day on average) until the pack's rest range passes 80 mV and the BMS alarms; ~8 % of rows missing."""
    rng = np.random.default_rng(seed)
    n = len(vins)
    vin_array = np.array(vins)
    faulty = rng.random(n) < faulty_fraction
    onset_day = rng.integers(onset[0], onset[1], n)
    rate = rng.uniform(2.0, 6.0, n)
    base_voltage = rng.normal(352.0, 4.0, n)
    base_range = rng.uniform(14.0, 26.0, n)
    weak_cell = rng.integers(1, 97, n)
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        idx = np.flatnonzero(rng.random(n) >= MISSING_DAY)
        m = len(idx)
        noise = rng.standard_normal((12, m))
        drifting = faulty[idx] & (offset >= onset_day[idx])
        drift = np.where(drifting, rate[idx] * (offset - onset_day[idx]), 0.0)
        cell_range = base_range[idx] + 2.0 * np.abs(noise[0]) + drift
        rest_max = cell_range * 1.2 + 6.0 * noise[1]
        spike = rng.random(m) < SPIKE_DAY  # a healthy pack's bad sensor day
        rest_max = np.where(spike, rest_max + rng.uniform(20.0, 80.0, m), rest_max)
        alarm = rng.random(m) < 1.0 / (1.0 + np.exp(-(rest_max - 80.0) / ALARM_SOFTNESS_MV))
        max_temperature = 31.0 + 2.0 * noise[2]
        frames = rng.integers(1_500, 8_640, m)
        rest_frames = (frames * rng.uniform(0.3, 0.8, m)).astype(np.int64)
        dev = -drift / 2.0 + 1.5 * noise[3]
        random_cell = rng.integers(1, 97, m)
        suspect = np.where(drifting, weak_cell[idx], random_cell).astype(np.int32)
        columns = {
            "vin": pa.array(vin_array[idx], pa.string()),
            "dt": pa.array([day] * m, pa.date32()),
            "total_voltage": base_voltage[idx] - 0.02 * drift + 3.0 * noise[4],
            "total_current": -8.0 + 6.0 * noise[5],
            "cell_max_voltage": 3.70 + 0.01 * noise[6] + cell_range / 2000.0,
            "cell_min_voltage": 3.70 + 0.01 * noise[6] - cell_range / 2000.0,
            "max_temperature": max_temperature,
            "min_temperature": max_temperature - 4.0 - np.abs(noise[7]),
            "cell_range_mean_mv": cell_range,
            "cell_range_p95_mv": cell_range * 1.15 + np.abs(noise[8]),
            "cell_range_max_mv": cell_range * 1.4 + 2.0 * np.abs(noise[8]),
            "cell_range_rest_mean_mv": cell_range * 0.9 + noise[9],
            "cell_range_rest_p95_mv": cell_range * 1.05 + noise[9],
            "cell_range_rest_max_mv": rest_max,
            "cell_range_load_mean_mv": cell_range * 1.1 + noise[10],
            "cell_range_load_p95_mv": cell_range * 1.3 + noise[10],
            "cell_range_load_max_mv": cell_range * 1.6 + 2.0 * np.abs(noise[10]),
            "probe_spread_mean_c": 3.0 + np.abs(noise[11]),
            "probe_spread_max_c": 5.0 + 2.0 * np.abs(noise[11]),
            "suspect_cell": pa.array(suspect, pa.int32(), mask=~drifting & (rng.random(m) < 0.3)),
            "suspect_cell_dev_mv": dev,
            "suspect_cell_dev_rest_mv": dev * 0.9,
            "suspect_cell_dev_load_mv": dev * 1.1,
            "suspect_cell_z": dev / 3.0,
            "suspect_cell_dev_7d_mv": dev * 0.95,
            "suspect_cell_z_7d": dev / 3.2,
            "suspect_cell_days_7d": np.where(drifting, np.minimum(7, offset - onset_day[idx] + 1), 0).astype(np.int64),
            "cell_count": np.full(m, 96, np.int64),
            "probe_count": np.full(m, 32, np.int64),
            "frame_count": frames.astype(np.int64),
            "hours_covered": (frames // 360).astype(np.int64),
            "rest_frames": rest_frames,
            "load_frames": frames - rest_frames,
            "alarm": alarm,
            "alarm_frames": np.where(alarm, rng.integers(1, 200, m), 0).astype(np.int64),
        }
        yield day, pa.table(columns)


def write_daily(lake_dir: Path, tables: Iterator[tuple[date, pa.Table]]) -> int:
    """Write each day's rows into the lake's daily zone as the feature DAG does; returns the row count."""
    from pipelines.schema import CELL_DAILY_SCHEMA
    from pipelines.storage import daily_zone
    from pipelines.storage.lake import Lake

    lake = Lake(lake_dir.as_uri())
    rows = 0
    for day, table in tables:
        rows += daily_zone.write_computed(lake, day, table, CELL_DAILY_SCHEMA.empty_table())
    return rows


def _cached(meta_path: Path, wanted: dict) -> dict | None:
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            return meta
    return None


def build_serving_lake(lake_dir: str) -> dict:
    """The serving lake: daily rows of a small fleet, and `signals6` and `full` champions trained on them."""
    from pipelines.storage.lake import Lake
    from pipelines.training.pipeline import TrainingRequest, train_and_register

    started = time.perf_counter()
    rows = write_daily(Path(lake_dir), synthetic_daily(_vins("LSVTRN", SERVING_VEHICLES), SERVING_FIRST_DAY,
                                                       SERVING_DAYS, SEED, onset=(10, 100)))
    lake = Lake(Path(lake_dir).as_uri())
    models = {}
    for feature_set in ("signals6", "full"):
        result = train_and_register(TrainingRequest(feature_set=feature_set, with_baseline=False), lake=lake,
                                    progress=lambda text: print(f"  training: {text}", flush=True))
        if result.champion != result.version:
            raise RuntimeError(f"{feature_set} {result.version} was not promoted: {result.decision['reason']}")
        models[feature_set] = result.version
    return {"daily_rows": rows, "models": models, "seconds": round(time.perf_counter() - started, 1)}


def ensure_serving_lake(data: Path) -> dict:
    """The cached serving lake under data/serving, or a new one."""
    meta_path = data / "serving.json"
    wanted = {"version": DATA_VERSION, "vehicles": SERVING_VEHICLES, "days": SERVING_DAYS, "seed": SEED}
    meta = _cached(meta_path, wanted)
    if meta is not None:
        print(f"serving lake: cached in {data / 'serving'} ({meta['daily_rows']:,} daily rows, champions "
              f"{', '.join(meta['models'].values())})")
        return meta
    shutil.rmtree(data / "serving", ignore_errors=True)
    meta_path.unlink(missing_ok=True)
    (data / "serving").mkdir(parents=True)
    print(f"serving lake: {SERVING_VEHICLES} vehicles × {SERVING_DAYS} days, then training signals6 and full champions "
          f"with train_and_register …", flush=True)
    built = in_fresh_process(build_serving_lake, str(data / "serving" / "lake"))
    meta = {**wanted, **built}
    meta_path.write_text(json.dumps(meta, indent=2))
    print(f"serving lake: {meta['daily_rows']:,} daily rows, champions {', '.join(meta['models'].values())} "
          f"({meta['seconds']:.0f} s)")
    return meta


def _write_batch_days(lake_dir: str, vehicles: int, days: int) -> dict:
    started = time.perf_counter()
    rows = 0
    # a fleet in service: 5 % of packs drifting, some of them for weeks already
    for day, table in synthetic_daily(_vins("LSVBAT", vehicles), BATCH_FIRST_DAY, days, SEED + 1, onset=(-30, 14),
                                      faulty_fraction=BATCH_FAULTY):
        rows += write_daily(Path(lake_dir), iter([(day, table)]))
        print(f"\r  batch lake: {day} written, {rows:,} daily rows", end="", flush=True)
    print()
    return {"daily_rows": rows, "seconds": round(time.perf_counter() - started, 1)}


def ensure_batch_lake(data: Path, windows: int, as_of_count: int, serving_lake: Path) -> dict:
    """The cached batch lake under data/batch (vehicles enough for `windows` windows over `as_of_count` dates), with
    the serving lake's champions copied in and no predictions left from an earlier run."""
    vehicles = math.ceil(windows / as_of_count)
    days = 14 + as_of_count - 1
    meta_path = data / "batch.json"
    wanted = {"version": DATA_VERSION, "vehicles": vehicles, "days": days, "seed": SEED + 1, "faulty": BATCH_FAULTY}
    lake_dir = data / "batch" / "lake"
    meta = _cached(meta_path, wanted)
    if meta is not None:
        print(f"batch lake: cached in {lake_dir} ({meta['daily_rows']:,} daily rows, {vehicles:,} vehicles × {days} days)")
    else:
        shutil.rmtree(data / "batch", ignore_errors=True)
        meta_path.unlink(missing_ok=True)
        lake_dir.mkdir(parents=True)
        print(f"batch lake: {vehicles:,} vehicles × {days} days of daily rows …", flush=True)
        meta = {**wanted, **in_fresh_process(_write_batch_days, str(lake_dir), vehicles, days)}
        meta_path.write_text(json.dumps(meta, indent=2))
        print(f"batch lake: {meta['daily_rows']:,} daily rows written in {meta['seconds']:.0f} s")
    shutil.rmtree(lake_dir / "models", ignore_errors=True)
    shutil.copytree(serving_lake / "models", lake_dir / "models")
    shutil.rmtree(lake_dir / "predictions", ignore_errors=True)
    first_as_of = BATCH_FIRST_DAY + timedelta(days=14)
    meta["as_of"] = [(first_as_of + timedelta(days=k)).isoformat() for k in range(as_of_count)]
    return meta


def model_size(lake_dir: str, version: str) -> str:
    """Trees and leaves of a registered model: what predict and pred_contribs cost scales with."""
    from pipelines.serving.model_loading import load_registered
    from pipelines.storage.lake import Lake

    booster = load_registered(Lake(Path(lake_dir).as_uri()), version).model.booster
    dump = booster.get_dump()
    return f"{len(dump)} trees, {sum(tree.count('leaf=') for tree in dump):,} leaves"


# ---------------------------------------------------------------- servers in subprocesses


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`cellguard serve-api` or `serve-model` in its own process group, over a CELLGUARD_HOME."""

    def __init__(self, command: str, home: Path, token: str, workers: int = 1):
        self.command, self.home, self.port = command, home, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CELLGUARD_HOME": str(home), "CELLGUARD_LAKE_URI": (home / "lake").as_uri(),
               "CELLGUARD_API_TOKEN": token, "CELLGUARD_API_WORKERS": str(workers)}
        env.pop("CELLGUARD_EVENT_STORE_URL", None)  # SQLite in the home
        self.log_path = home / f"{command}.log"
        cellguard = Path(sys.executable).parent / "cellguard"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([str(cellguard), command, "--port", str(self.port)], env=env,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def wait_ready(self, path: str, ready: Callable[[dict], bool] = lambda body: True, timeout_s: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command} exited ({self.process.returncode}): "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                answer = httpx.get(self.url + path, timeout=2)
                if answer.status_code == 200 and ready(answer.json()):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.command} not ready after {timeout_s} s: {self.log_path.read_text()[-2000:]}")

    def _session_pids(self) -> list[int]:
        """The server and every process it started (worker processes run in its session)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid:  # field 6 of stat: the session id
                pids.append(int(stat.parent.name))
        return pids or [self.process.pid]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's processes so far (all threads, every worker)."""
        total = 0
        for pid in self._session_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The largest peak RSS among the server's processes."""
        peaks = [float("nan")]
        for pid in self._session_pids():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            peaks += [int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")]
        return max(peaks[1:], default=float("nan"))

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown: the API flushes its buffer), SIGKILL after 60 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------- the load generator (its own process)


def reference_bodies(count: int, seed: int, as_of: str, by_vin: list[str] | None) -> list[bytes]:
    """Request bodies: the reference's {"vin", "date", "features": "<84 values>"} with varied values over a fleet of
    API_FLEET VINs, or {"vin", "date"} for the given VINs (form b)."""
    rng = np.random.default_rng(seed)
    if by_vin is not None:
        return [json.dumps({"vin": by_vin[i % len(by_vin)], "date": as_of}).encode() for i in range(count)]
    fleet = _vins("LSVREF", API_FLEET)
    day = np.array([352.1, -8.4, 3.72, 3.68, 31.0, 26.0])
    scale = np.array([4.0, 6.0, 0.02, 0.02, 2.0, 2.0])
    values = day + scale * rng.standard_normal((count, 14, 6))
    missing = rng.random((count, 14)) < MISSING_DAY
    bodies = []
    for i in range(count):
        fields = []
        for k in range(14):
            if missing[i, k]:
                fields.extend([""] * 6)
            else:
                v = values[i, k]
                fields.extend([f"{v[0]:.1f}", f"{v[1]:.1f}", f"{v[2]:.3f}", f"{v[3]:.3f}", f"{v[4]:.0f}", f"{v[5]:.0f}"])
        bodies.append(json.dumps({"vin": fleet[int(rng.integers(API_FLEET))], "date": as_of,
                                  "features": ",".join(fields)}).encode())
    return bodies


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: pre-built requests, the status and body back.
    Far lighter than httpx per request, so on two cores the load generator leaves more CPU to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, chunked = int(head[9:12]), 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        body = bytearray()
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await self.reader.readexactly(size + 2))[:-2]
        await self.reader.readexactly(2)
        return status, bytes(body)

    def close(self) -> None:
        self.writer.close()


def _raw_request(host: str, token: str, path: str, body: bytes | None, request_id: str | None) -> bytes:
    lines = [f"{'GET' if body is None else 'POST'} {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if request_id:
        lines.append(f"X-Request-ID: {request_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _drive(open_sender, count: int, concurrency: int, label: str, seconds: float | None) -> dict:
    """Requests 0 … count-1 with `concurrency` in flight (each worker its own sender, from `open_sender()`), until
    done or `seconds` have passed; latency and status per request sent."""
    latencies = np.full(count, np.nan)
    statuses = np.zeros(count, np.int32)
    failures: list[str] = []
    indexes = iter(range(count))
    deadline = time.perf_counter() + seconds if seconds else math.inf
    done = 0

    async def worker() -> None:
        nonlocal done
        send, close = await open_sender()
        try:
            for i in indexes:  # one shared iterator: each index is taken once
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                status, body = await send(i)
                latencies[i] = time.perf_counter() - started
                statuses[i] = status
                if status != 200 and len(failures) < 3:
                    failures.append(f"{status}: {body[:300]!r}")
                done += 1
        finally:
            close()

    async def ticker(started: float) -> None:
        while True:
            await asyncio.sleep(10)
            elapsed = time.perf_counter() - started
            print(f"  {label}: {done:,}/{count:,} requests, {done / elapsed:,.0f}/s", flush=True)

    started = time.perf_counter()
    tick = asyncio.create_task(ticker(started))
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tick.cancel()
    wall = time.perf_counter() - started
    sent = ~np.isnan(latencies)
    return {"wall": wall, "latencies": latencies[sent], "statuses": statuses[sent], "failures": failures}


def generate_load(url: str, token: str, path: str, bodies: list[bytes] | None, request_ids: list[str] | None,
                  warmup: int, requests: int, concurrency: int, seconds: float | None, label: str,
                  client: str) -> dict:
    """The load generator's process: warm-up (≤ 10 s), then the measured requests; its own CPU time.
    client "raw": RawConnection per worker on uvloop; "httpx": one httpx.AsyncClient with `concurrency` connections."""
    host = url.removeprefix("http://")
    hostname, port = host.rsplit(":", 1)

    def body(i: int) -> bytes | None:
        return bodies[i] if bodies is not None else None

    def request_id(i: int) -> str | None:
        return request_ids[i] if request_ids is not None else None

    async def run() -> tuple[dict, dict, float]:
        if client == "raw":
            prepared = [_raw_request(host, token, path, body(i), request_id(i)) for i in range(warmup + requests)]

            def opener(offset: int):
                async def open_sender():
                    connection = await RawConnection.open(hostname, int(port))
                    return (lambda i: connection.send(prepared[offset + i])), connection.close
                return open_sender

            warm = await _drive(opener(0), warmup, concurrency, f"{label} warm-up", 10.0)
            cpu = _cpu_seconds()
            measured = await _drive(opener(warmup), requests, concurrency, label, seconds)
            return warm, measured, _cpu_seconds() - cpu

        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers, timeout=120) as http:
            def opener(offset: int):
                async def send(i: int) -> tuple[int, bytes]:
                    n = offset + i
                    extra = {"X-Request-ID": request_id(n)} if request_ids is not None else None
                    answer = await (http.get(path) if bodies is None else
                                    http.post(path, content=body(n), headers=extra))
                    return answer.status_code, answer.content

                async def open_sender():
                    return send, lambda: None
                return open_sender

            warm = await _drive(opener(0), warmup, concurrency, f"{label} warm-up", 10.0)
            cpu = _cpu_seconds()
            measured = await _drive(opener(warmup), requests, concurrency, label, seconds)
            return warm, measured, _cpu_seconds() - cpu

    if client == "raw":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    warm, measured, client_cpu = asyncio.run(run())
    return {"warmup_sent": len(warm["latencies"]), "warmup_errors": int((warm["statuses"] != 200).sum()),
            "sent": len(measured["latencies"]), "errors": int((measured["statuses"] != 200).sum()),
            "failures": warm["failures"] + measured["failures"], "wall": measured["wall"],
            "latencies_ms": (measured["latencies"] * 1000).tolist(), "client_cpu": client_cpu,
            "peak_rss_mb": _peak_rss_mb()}


# ---------------------------------------------------------------- API under load


def _store_and_lake_rows(home: Path) -> tuple[int, int, int]:
    """Predictions in the event store, how many of them are stamped flushed, and rows in the lake's predictions/."""
    import pyarrow.dataset as ds

    with sqlite3.connect(home / "events.sqlite") as con:
        stored, flushed = con.execute("select count(*), count(flushed_at) from predictions").fetchone()
    folder = home / "lake" / "predictions"
    lake_rows = ds.dataset(str(folder), format="parquet").count_rows() if folder.exists() else 0
    return stored, flushed, lake_rows


def api_run(name: str, serving_lake: Path, form: str, requests: int, concurrency: int, seconds: float | None,
            client_ids: bool, as_of: str, lake_vins: list[str], client: str, workers: int = 1) -> dict:
    """One API measurement on a fresh server and event store. form: "a" (reference body), "b" (by VIN) or
    "healthz" (GET /healthz: the HTTP stack and load generator alone, nothing scored or stored)."""
    token = "bench-" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="cellguard-bench-api-") as tmp:
        home = Path(tmp)
        shutil.copytree(serving_lake, home / "lake")
        server = Server("serve-api", home, token, workers)
        try:
            server.wait_ready("/healthz", lambda body: all(body.get("models", {}).values()))
            warmup = max(100, min(1_000, requests // 10))
            if form == "healthz":
                path, bodies = "/healthz", None
            else:
                path = "/v1/predictions"
                bodies = reference_bodies(warmup + requests, SEED, as_of, lake_vins if form == "b" else None)
            run_id = secrets.token_hex(4)
            ids = [f"bench-{run_id}-{i}" for i in range(warmup + requests)] if client_ids else None
            limit = f" or {seconds:.0f} s" if seconds else ""
            print(f"{name}: server pid {server.process.pid} on {server.url}; warm-up ({warmup:,} requests or 10 s), then "
                  f"{requests:,} requests{limit}, {concurrency} connections from a separate process ({client} client)", flush=True)
            cpu = server.cpu_seconds()
            load = in_fresh_process(generate_load, server.url, token, path, bodies, ids, warmup, requests, concurrency,
                                    seconds, name, client)
            server_cpu = server.cpu_seconds() - cpu  # warm-up and measured requests together
            server_rss = server.peak_rss_mb()
        finally:
            server.stop()
        stored, flushed, lake_rows = _store_and_lake_rows(home)
        log_tail = server.log_path.read_text().splitlines()[-3:]
    latencies = np.array(load["latencies_ms"])
    total_sent = load["sent"] + load["warmup_sent"]
    result = {"name": name, "sent": load["sent"], "errors": load["errors"] + load["warmup_errors"],
              "rps": load["sent"] / load["wall"], "p50": float(np.percentile(latencies, 50)),
              "p90": float(np.percentile(latencies, 90)), "p99": float(np.percentile(latencies, 99)),
              "max": float(latencies.max()), "wall": load["wall"],
              "server_cpu_ms": 1000 * server_cpu / total_sent, "client_cpu_ms": 1000 * load["client_cpu"] / load["sent"],
              "server_rss_mb": server_rss, "client_rss_mb": load["peak_rss_mb"], "stored": stored, "flushed": flushed,
              "lake_rows": lake_rows, "total_sent": total_sent}
    print(f"{name}: {result['rps']:,.0f} requests/s, latency p50 {result['p50']:.1f} ms, p90 {result['p90']:.1f} ms, "
          f"p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms over {load['sent']:,} requests in {load['wall']:.1f} s; "
          f"{result['errors']} errors")
    print(f"  CPU per request: server {result['server_cpu_ms']:.2f} ms, load generator {result['client_cpu_ms']:.2f} ms; "
          f"peak RSS server {server_rss:,.0f} MB, load generator {load['peak_rss_mb']:,.0f} MB")
    if form != "healthz":
        print(f"  persisted: {stored:,} of {total_sent:,} requests in the event store ({flushed:,} stamped flushed), "
              f"{lake_rows:,} rows in the lake's predictions/ after shutdown")
    for failure in load["failures"]:
        print(f"  error: {failure}")
    if result["errors"]:
        print("  server log: " + " | ".join(log_tail))
    return result


def measure_api_parts(serving_lake: str, batch_lake: str | None, as_of: str, batch_as_of: str | None,
                      iterations: int) -> dict:
    """What a request costs in the API's own functions, called in-process one by one (ms per call or per request)."""
    from pipelines.serving.api import SERVED_FEATURE_SETS, _items
    from pipelines.serving.api_answers import Answerer
    from pipelines.serving.api_schemas import read_items
    from pipelines.serving.api_scoring import score_items
    from pipelines.serving.daily_context import DailyContext
    from pipelines.serving.inference import predict_fn
    from pipelines.serving.model_champions import ChampionModels
    from pipelines.serving.reasons import feature_contributions, top_reasons
    from pipelines.storage.event_store import EventStore
    from pipelines.storage.lake import Lake
    from pipelines.storage.predictions_zone import PredictionBuffer

    def per_call(function: Callable[[int], object], n: int = iterations) -> float:
        function(0)
        started = time.perf_counter()
        for i in range(n):
            function(i)
        return 1000 * (time.perf_counter() - started) / n

    def once(function: Callable[[], object]) -> float:
        started = time.perf_counter()
        function()
        return 1000 * (time.perf_counter() - started)

    batch = 16  # what a pass holds at concurrency 16
    with tempfile.TemporaryDirectory(prefix="cellguard-bench-parts-") as tmp:
        lake = Lake(Path(shutil.copytree(serving_lake, Path(tmp) / "lake")).as_uri())
        champions = ChampionModels(lake, SERVED_FEATURE_SETS)
        champions.refresh()
        model = champions.get("signals6").model
        day = date.fromisoformat(as_of)
        bodies = reference_bodies(iterations + 1, SEED + 5, as_of, None)
        parsed = [read_items(body, 500)[0] for body in bodies]
        items = [_items(p, False, f"parts-{i}", True) for i, p in enumerate(parsed)]
        matrix = np.array([items[0][0].features], dtype=np.float64)
        matrix16 = np.array([items[i][0].features for i in range(batch)], dtype=np.float64)
        store = EventStore(f"sqlite:///{tmp}/events.sqlite")
        buffer = PredictionBuffer(lake, store)  # the default 500 rows / 30 s
        context = DailyContext(lake)
        answerer = Answerer(context, champions, store, buffer)
        parts = {
            "parse and check the body (read_items, pydantic)": per_call(lambda i: read_items(bodies[i], 500)),
            "suspect cells of a date, first request (DailyContext reads the 14 days' daily rows)":
                once(lambda: context.suspects(day)),
            "suspect cell, later requests (DailyContext, in memory)": per_call(lambda i: context.suspects(day)),
            "predict_fn, one row": per_call(lambda i: predict_fn(matrix, model)),
            "reasons, one row (pred_contribs + top_reasons)": per_call(
                lambda i: top_reasons(feature_contributions(model.booster, matrix, model.missing_as), matrix,
                                      model.feature_names)),
            f"predict_fn + reasons, {batch} rows in one call, per row": per_call(
                lambda i: (predict_fn(matrix16, model), top_reasons(
                    feature_contributions(model.booster, matrix16, model.missing_as), matrix16,
                    model.feature_names))) / batch,
            "score_items, one item": per_call(lambda i: score_items(items[i], context, champions)),
        }
        rows = [score_items(items[i], context, champions) for i in range(iterations + 1)]
        parts["record in the event store + buffer, one row (PredictionBuffer.add)"] = per_call(
            lambda i: buffer.add(rows[i]))
        rows16 = [score_items([item for n in range(batch) for item in items[(i * batch + n) % len(items)]],
                              context, champions) for i in range(iterations // batch + 1)]
        fresh_rows = [[{**row, "request_id": f"{row['request_id']}-16-{i}"} for row in chunk]
                      for i, chunk in enumerate(rows16)]
        parts[f"record in the event store + buffer, {batch} rows in one call, per row"] = per_call(
            lambda i: buffer.add(fresh_rows[i]), n=len(fresh_rows) - 1) / batch
        parts["replay lookup of a client's request id (Answerer.stored_answers)"] = per_call(
            lambda i: answerer.stored_answers(items[i]))
        fresh = [_items(p, False, f"parts2-{i}", True) for i, p in enumerate(parsed)]
        parts["Answerer.answer, one request alone: lookup + score + record"] = per_call(
            lambda i: answerer.answer(fresh[i]))
        together = [_items(p, False, f"parts3-{i}", True) for i, p in enumerate(parsed)]
        parts[f"Answerer.answer_together, {batch} requests in one pass, per request"] = per_call(
            lambda i: answerer.answer_together(together[i * batch:(i + 1) * batch]),
            n=len(together) // batch - 1) / batch
        buffer.close()
        store.close()
        # form (b): a lake item, scored by the full champion from the vehicle's 14 daily rows
        vin_bodies = reference_bodies(iterations + 1, SEED, as_of, _vins("LSVTRN", SERVING_VEHICLES))
        vin_items = [_items(read_items(body, 500)[0], False, f"b-{i}", True) for i, body in enumerate(vin_bodies)]
        parts["form (b): windows of a date, first request (DailyContext runs inference_windows for the fleet)"] = \
            once(lambda: context.window(day, vin_items[0][0].vin))
        parts["form (b): window, later requests (DailyContext, in memory)"] = per_call(
            lambda i: context.window(day, vin_items[i][0].vin))
        parts["form (b): score_items, one lake item"] = per_call(lambda i: score_items(vin_items[i], context, champions))
        if batch_lake and batch_as_of:
            big = DailyContext(Lake(Path(batch_lake).as_uri()))
            big_day = date.fromisoformat(batch_as_of)
            parts[f"batch lake ({len(big.suspects(big_day)):,} vehicles): suspect cells of a date, first request"] = \
                once(lambda: DailyContext(big.lake).suspects(big_day))
            parts["batch lake: suspect cell, later requests"] = per_call(lambda i: big.suspects(big_day))
    return {"parts": parts, "peak_rss_mb": _peak_rss_mb()}


# ---------------------------------------------------------------- batch inference


def measure_batch(lake_dir: str, as_of: list[str], feature_set: str) -> dict:
    """score_dates as the DAG runs it (fresh SQLite event store), with the seconds of each stage of that same run;
    then the same dates again (an idempotent re-run: nothing new) and one predict_fn call alone on the windows."""
    from datetime import timedelta as td

    from pipelines.features.window_signals import CONTEXT_DAYS
    from pipelines.features.windows import daily_columns_for, inference_window_matrix
    from pipelines.serving.batch_inference import STAGES, score_dates
    from pipelines.serving.inference import predict_fn
    from pipelines.serving.model_loading import load_registered
    from pipelines.storage import daily_zone
    from pipelines.storage.event_store import EventStore
    from pipelines.storage.lake import Lake
    from pipelines.training import registry

    lake = Lake(Path(lake_dir).as_uri())
    dates = [date.fromisoformat(d) for d in as_of]
    with tempfile.TemporaryDirectory(prefix="cellguard-bench-batch-") as tmp:
        store = EventStore(f"sqlite:///{tmp}/events.sqlite")
        print(f"  batch {feature_set}: score_dates over {len(dates)} as_of date(s) …", flush=True)
        cpu, started = _cpu_seconds(), time.perf_counter()
        summary = score_dates(dates, lake, store, feature_set=feature_set)
        whole, whole_cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        stages = summary.stage_seconds
        slowest = max(STAGES, key=lambda name: stages[name])
        print(f"  batch {feature_set}: {summary.rows:,} windows in {whole:.2f} s = {summary.rows / whole:,.0f} windows/s "
              f"end to end ({whole_cpu:.1f} s CPU); {summary.alarms:,} alarms, {summary.explained:,} with reasons; "
              f"stages of this run:", flush=True)
        for name, seconds in stages.items():
            rate = f"{summary.rows / seconds:>12,.0f} windows/s" if seconds else " " * 22
            print(f"  {seconds:8.3f} s  {rate}  {name}{'  ← bounds it' if name == slowest else ''}", flush=True)
        started = time.perf_counter()
        again = score_dates(dates, lake, store, feature_set=feature_set)
        rerun = time.perf_counter() - started
        print(f"  batch {feature_set}: re-run of the same dates in {rerun:.2f} s, {again.new_in_store} new rows "
              f"(store {again.stage_seconds['store']:.2f} s)", flush=True)
        store.close()

    loaded = load_registered(lake, registry.champion(lake, feature_set).version)
    daily = daily_zone.read_daily(lake, dates[0] - td(days=CONTEXT_DAYS), dates[-1] - td(days=1),
                                  columns=daily_columns_for(loaded.model.feature_names))
    rows32 = inference_window_matrix(daily, dates, loaded.model.feature_names).matrix(np.float32)
    del daily
    started = time.perf_counter()
    predict_fn(rows32, loaded.model)
    predict_alone = time.perf_counter() - started
    parts = {"score_windows (all of the vectorised scoring)": stages["predict"] + stages["reasons"] + stages["rows"],
             "predict_fn (one call)": predict_alone, "re-run of the same dates (idempotent: nothing new)": rerun}
    return {"feature_set": feature_set, "version": loaded.version, "windows": summary.rows, "rows": summary.rows,
            "alarms": summary.alarms, "explained": summary.explained, "whole": whole, "whole_cpu": whole_cpu,
            "stages": stages, "slowest": slowest, "parts": parts, "peak_rss_mb": _peak_rss_mb()}


# ---------------------------------------------------------------- one call per row vs one call


def measure_per_row(url: str, lake_dir: str, as_of: list[str], sample: int) -> dict:
    """The reference's pattern (one POST /invocations per row, sequential, keep-alive) for a sample of the signals6
    windows, and one predict_fn call on all of them; checks that both give the same probabilities."""
    import httpx

    from pipelines.features.windows import feature_matrix, inference_windows, select_feature_set
    from pipelines.serving.inference import predict_fn
    from pipelines.serving.model_loading import load_registered
    from pipelines.storage import daily_zone
    from pipelines.storage.lake import Lake
    from pipelines.training import registry

    lake = Lake(Path(lake_dir).as_uri())
    dates = [date.fromisoformat(d) for d in as_of]
    daily = daily_zone.read_daily(lake, dates[0] - timedelta(days=14), dates[-1] - timedelta(days=1))
    windows = select_feature_set(inference_windows(daily, dates), "signals6")
    loaded = load_registered(lake, registry.champion(lake, "signals6").version)
    matrix = feature_matrix(windows, loaded.model.feature_names)

    predict_fn(matrix[:1000], loaded.model)  # warm
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        vectorised = predict_fn(matrix, loaded.model)
        runs.append(time.perf_counter() - started)
    one_call = float(np.median(runs))

    rng = np.random.default_rng(SEED)
    picked = np.sort(rng.choice(len(matrix), size=min(sample, len(matrix)), replace=False))
    lines = [",".join("" if math.isnan(v) else repr(float(v)) for v in matrix[i]).encode() for i in picked]
    answers = np.empty(len(picked))
    with httpx.Client(base_url=url, headers={"Content-Type": "text/csv"}, timeout=30) as client:
        for line in lines[:50]:  # warm-up
            client.post("/invocations", content=line)
        started = time.perf_counter()
        for n, line in enumerate(lines):
            answer = client.post("/invocations", content=line)
            answer.raise_for_status()
            answers[n] = float(answer.text)
            if (n + 1) % 1000 == 0:
                print(f"  per-row: {n + 1:,}/{len(lines):,} calls", flush=True)
        per_row_total = time.perf_counter() - started
    return {"windows": len(matrix), "sample": len(picked), "one_call": one_call, "one_call_runs": runs,
            "per_row_total": per_row_total, "max_diff": float(np.max(np.abs(answers - vectorised[picked]))),
            "version": loaded.version, "peak_rss_mb": _peak_rss_mb()}


# ---------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("api", "batch", "per-row"), default=None, help="run one part only")
    parser.add_argument("--requests", type=int, default=20_000, help="measured API requests per form (a) run "
                                                                     "(form b: a tenth); default 20,000")
    parser.add_argument("--seconds", type=float, default=60.0, help="also stop each API run after this many seconds "
                                                                    "(default 60; 0: no limit)")
    parser.add_argument("--concurrency", type=int, default=16, help="API requests in flight (default 16)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: raw HTTP/1.1 on asyncio streams (default; ~20× less client CPU per request than httpx here) "
                             "or httpx.AsyncClient")
    parser.add_argument("--windows", type=int, default=100_000, help="batch windows, at least (default 100,000)")
    parser.add_argument("--as-of-dates", type=int, default=1, help="as_of dates the batch scores (default 1: a "
                                                                   "daily run over the whole fleet)")
    parser.add_argument("--sample", type=int, default=2_000, help="rows sent one call each (default 2,000)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/cellguard-bench-serving"),
                        help="where generated lakes and trained champions are kept between runs")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}; data in {args.data}")
    for name in ("CELLGUARD_PREDICTION_FLUSH_ROWS", "CELLGUARD_PREDICTION_FLUSH_SECONDS"):
        if os.environ.get(name):
            print(f"note: {name}={os.environ[name]} applies to the API server")
    args.data.mkdir(parents=True, exist_ok=True)
    serving = ensure_serving_lake(args.data)
    serving_lake = args.data / "serving" / "lake"
    sizes = {fs: model_size(str(serving_lake), version) for fs, version in serving["models"].items()}
    for fs, version in serving["models"].items():
        print(f"champion {fs}: {version} ({sizes[fs]})")
    batch = ensure_batch_lake(args.data, args.windows, args.as_of_dates, serving_lake)
    batch_lake = args.data / "batch" / "lake"
    summary: list[tuple[str, str, str, str, str]] = []  # measurement, size, figure, target, met
    batch_results: dict[str, dict] = {}

    # The API's as_of: the day after the serving lake's last day, so its 14 context days are in the lake.
    api_as_of = (SERVING_FIRST_DAY + timedelta(days=SERVING_DAYS)).isoformat()
    if args.only in (None, "api"):
        print(f"\n== API: POST /v1/predictions, as_of {api_as_of}, {args.concurrency} connections ==")
        runs = [("form (a), unique X-Request-ID", "a", args.requests, True, 1),
                ("form (a), unique X-Request-ID, 2 worker processes", "a", args.requests, True, 2),
                ("form (a), server-made request id", "a", args.requests, False, 1),
                ("form (b) by VIN, unique X-Request-ID", "b", max(200, args.requests // 10), True, 1),
                ("GET /healthz (no scoring, no store: the HTTP stack and load generator alone)", "healthz",
                 args.requests, False, 1)]
        lake_vins = _vins("LSVTRN", SERVING_VEHICLES)
        for name, form, count, client_ids, workers in runs:
            r = api_run(name, serving_lake, form, count, args.concurrency, args.seconds or None, client_ids, api_as_of,
                        lake_vins, args.client, workers)
            target = (f"≥ {TARGETS['api_rps']:,}/s, p99 ≤ {TARGETS['api_p99_ms']:.0f} ms" if form == "a" else "—")
            met = (_met(r["rps"] >= TARGETS["api_rps"] and r["p99"] <= TARGETS["api_p99_ms"]) if form == "a" else "—")
            stored = (f"; {r['stored']:,}/{r['total_sent']:,} stored, {r['lake_rows']:,} in lake"
                      if form != "healthz" else "")
            summary.append((f"API {name}, {args.concurrency} connections" + (", persisted" if form != "healthz" else ""),
                            f"{r['sent']:,} requests",
                            f"{r['rps']:,.0f} requests/s; p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms; "
                            f"server CPU {r['server_cpu_ms']:.2f} ms/request; {r['errors']} errors{stored}",
                            target, met))
        print("\nwhere a request's server time goes (the API's own functions called in-process, one at a time, "
              "ms per call):")
        parts = in_fresh_process(measure_api_parts, str(serving_lake), str(batch_lake), api_as_of, batch["as_of"][0],
                                 300)
        for name, ms in parts["parts"].items():
            print(f"  {ms:8.3f} ms  {name}")

    if args.only in (None, "batch"):
        print(f"\n== batch inference: score_dates over {batch['vehicles']:,} vehicles, as_of {', '.join(batch['as_of'])} ==")
        for feature_set in ("full", "signals6"):
            b = in_fresh_process(measure_batch, str(batch_lake), batch["as_of"], feature_set)
            batch_results[feature_set] = b
            shutil.rmtree(batch_lake / "predictions", ignore_errors=True)
            whole_rate = b["rows"] / b["whole"]
            pure = b["parts"]["score_windows (all of the vectorised scoring)"]
            predict = b["parts"]["predict_fn (one call)"]
            print(f"batch {feature_set} ({sizes[feature_set]}): score_dates {b['rows']:,} windows in {b['whole']:.2f} s "
                  f"({whole_rate:,.0f} windows/s, {b['whole_cpu']:.1f} s CPU); "
                  f"peak RSS {b['peak_rss_mb']:,.0f} MB")
            print(f"  parts (seconds, run again one by one on the same {b['windows']:,} windows):")
            for name, seconds in b["parts"].items():
                print(f"  {seconds:8.3f} s  {b['windows'] / seconds:>12,.0f} windows/s  {name}")
            for label, seconds in ((f"batch {feature_set}: score_dates (read, windows, score, reasons, event store, "
                                    "lake)", b["whole"]),
                                   (f"batch {feature_set}: score_windows (matrix → one predict → reasons → rows)", pure),
                                   (f"batch {feature_set}: predict_fn alone (one call)", predict)):
                rate = b["rows"] / seconds
                summary.append((label, f"{b['rows']:,} windows", f"{rate:,.0f} windows/s ({seconds:.2f} s)",
                                f"≥ {TARGETS['batch_wps']:,}/s", _met(rate >= TARGETS["batch_wps"])))

    if args.only in (None, "per-row"):
        print(f"\n== one POST /invocations per row vs one predict_fn call (signals6, {batch['vehicles']:,} vehicles) ==")
        token = "bench-" + secrets.token_urlsafe(24)
        with tempfile.TemporaryDirectory(prefix="cellguard-bench-model-") as tmp:
            home = Path(tmp)
            shutil.copytree(serving_lake, home / "lake")
            server = Server("serve-model", home, token)
            try:
                server.wait_ready("/ping")
                p = in_fresh_process(measure_per_row, server.url, str(batch_lake), batch["as_of"], args.sample)
                model_rss = server.peak_rss_mb()
            finally:
                server.stop()
        per_row = p["per_row_total"] / p["sample"]
        vector_rate = p["windows"] / p["one_call"]
        ratio = vector_rate * per_row
        print(f"per row: {p['sample']:,} calls in {p['per_row_total']:.2f} s = {1000 * per_row:.2f} ms per row "
              f"({1 / per_row:,.0f} rows/s); {p['windows']:,} rows would take {p['windows'] * per_row:,.0f} s")
        print(f"one call: predict_fn on {p['windows']:,} windows in {p['one_call']:.3f} s (median of "
              f"{', '.join(f'{s:.3f}' for s in p['one_call_runs'])}) = {vector_rate:,.0f} windows/s")
        print(f"ratio: {ratio:,.0f}× (same probabilities: largest difference {p['max_diff']:.1e}); "
              f"model server peak RSS {model_rss:,.0f} MB")
        summary.append(("per row: one POST /invocations per window (serve-model, sequential, keep-alive)",
                        f"{p['sample']:,} of {p['windows']:,} windows",
                        f"{1000 * per_row:.2f} ms/row = {1 / per_row:,.0f} windows/s", "—", "—"))
        summary.append(("one predict_fn call (signals6)", f"{p['windows']:,} windows",
                        f"{vector_rate:,.0f} windows/s ({p['one_call']:.3f} s)", "—", "—"))
        summary.append(("one call ÷ one call per row", "", f"{ratio:,.0f}×", f"≥ {TARGETS['ratio']:,}×",
                        _met(ratio >= TARGETS["ratio"])))
        if "signals6" in batch_results:  # the batch's one call also computes reasons, which per-row calls do not get
            b = batch_results["signals6"]
            with_reasons = b["rows"] / b["parts"]["score_windows (all of the vectorised scoring)"] * per_row
            print(f"with reasons (score_windows, signals6) the one call is {with_reasons:,.0f}× the per-row calls "
                  f"(which return probabilities only)")
            summary.append(("score_windows (with reasons) ÷ one call per row (probabilities only)", "",
                            f"{with_reasons:,.0f}×", "—", "—"))

    print("\n| measurement | size | figure | target | met |")
    print("|---|---|---|---|---|")
    for row in summary:
        print("| " + " | ".join(row) + " |")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: this process {_peak_rss_mb():,.0f} MB; largest child process (measured parts, load generator, "
          f"servers) {children:,.0f} MB; cores {os.cpu_count()}; load average now {os.getloadavg()[0]:.2f}; "
          f"{time.perf_counter() - started:,.0f} s in all")


if __name__ == "__main__":
    main()
