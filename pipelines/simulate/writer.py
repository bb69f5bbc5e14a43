"""Landing files: one per vehicle and period, in the simulator's native formats or a platform's wide CSV.

Delivery defects real uploads carry are injected here: retransmitted duplicates (same vin + ts, same
content; most right after the original, some in the next period's file) and late frames that arrive in
the next period's file, appended after that period's own frames (out of order).
"""

from __future__ import annotations

import csv
import datetime
import functools
import gzip
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.simulate.fleet import VehicleSpec
from pipelines.simulate.params import SimulationParams
from pipelines.simulate.sensors import INVALID_MV, TEMP_OFFSET_C, valid_cell_mask, valid_probe_mask
from pipelines.simulate.vehicle import VehicleFrames
from pipelines.storage.lake import Lake

LOCAL_UTC_OFFSET_S = 8 * 3600
NATIVE_SOURCE = "simulator"
WIDE_SOURCE = "wide_export"
GROUND_TRUTH_KEY = "simulation/ground_truth.csv"
FLEET_KEY = "simulation/fleet.csv"
SAME_FILE_DUPLICATE_SHARE = 0.7
WIDE_INVALID_PROBE_C = 0xFF - TEMP_OFFSET_C  # 215

NATIVE_SCALARS: tuple[tuple[str, pa.DataType], ...] = (
    ("vehicle_state", pa.int8()),
    ("charge_state", pa.int8()),
    ("speed_kmh", pa.float64()),
    ("odometer_km", pa.float64()),
    ("pack_voltage_v", pa.float64()),
    ("pack_current_a", pa.float64()),
    ("soc_pct", pa.float64()),
    ("insulation_kohm", pa.float64()),
)
NATIVE_PARQUET_SCHEMA = pa.schema(
    [
        pa.field("vin", pa.string()),
        pa.field("ts", pa.timestamp("ms", tz="UTC")),
        *(pa.field(name, dtype) for name, dtype in NATIVE_SCALARS),
        pa.field("cell_mv", pa.list_(pa.uint16())),
        pa.field("probe_temp_code", pa.list_(pa.uint8())),
        pa.field("alarm_level", pa.int8()),
        pa.field("alarm_flags", pa.uint32()),
    ]
)
WIDE_HEAD_COLUMNS = (
    "tboxTime", "BMSChargeStatus", "vehSpeed", "BMSBatteryVoltage", "BMSCellVoltageMax", "BMSCellVoltageMin",
    "BMSBatteryCurrent", "vehBMSPackSOC", "BMSProbeTempMax", "BMSProbeTempMin", "BMSWarningInformation",
    "vehOdo", "insulationResistance",
)


@dataclass(frozen=True)
class Delivery:
    """Which frame rows go into which period's file, in upload order."""

    files: dict[int, np.ndarray]  # period index → row indices into the vehicle's frames
    duplicates: int


def frame_periods(frames: VehicleFrames, params: SimulationParams) -> np.ndarray:
    """Period index of every frame (UTC date of the sample, grouped by period_days)."""
    start_s = (params.start_date - datetime.date(1970, 1, 1)).days * 86_400
    return ((frames.ts_ms // 1000 - start_s) // 86_400 // params.period_days).astype(np.int64)


def plan_delivery(periods: np.ndarray, n_periods: int, rng: np.random.Generator,
                  duplicate_rate: float, late_rate: float) -> Delivery:
    """Assign rows to files: in order, plus duplicates and late frames (a frame is late only if a next file exists)."""
    n = len(periods)
    rows = np.arange(n)
    has_next = periods + 1 < n_periods
    late = (rng.random(n) < late_rate) & has_next
    dup = rng.random(n) < duplicate_rate
    dup_next = dup & (rng.random(n) >= SAME_FILE_DUPLICATE_SHARE) & has_next
    own_period = np.where(late, periods + 1, periods)
    # (file, group, order): group 0 = the period's own frames in time order, 1 = stragglers appended after
    file_of = np.concatenate([own_period, np.where(dup_next, periods + 1, own_period)[dup]])
    group = np.concatenate([late.astype(np.int64), (late | dup_next)[dup].astype(np.int64)])
    order = np.concatenate([rows.astype(np.float64), rows[dup] + 0.5])
    row_of = np.concatenate([rows, rows[dup]])
    sort = np.lexsort((order, group, file_of))
    file_sorted = file_of[sort]
    bounds = np.flatnonzero(np.diff(file_sorted)) + 1
    files = {int(chunk_file[0]): chunk_rows for chunk_file, chunk_rows in
             zip(np.split(file_sorted, bounds), np.split(row_of[sort], bounds), strict=True) if len(chunk_rows)}
    return Delivery(files, int(dup.sum()))


def _list_column(matrix: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """list<value_type> from a rows × width matrix (no nulls: raw codes, sentinels included)."""
    rows, width = matrix.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix).reshape(-1), value_type))


def native_table(frames: VehicleFrames, rows: np.ndarray) -> pa.Table:
    """The native layout for the given rows: raw cell mV (65534/65535 kept) and raw probe codes."""
    columns = {
        "vin": pa.array([frames.spec.vin] * len(rows), pa.string()),
        "ts": pa.array(frames.ts_ms[rows], pa.timestamp("ms", tz="UTC")),
        **{name: pa.array(getattr(frames, name)[rows], dtype) for name, dtype in NATIVE_SCALARS},
        "cell_mv": _list_column(frames.cell_mv[rows], pa.uint16()),
        "probe_temp_code": _list_column(frames.probe_code[rows], pa.uint8()),
        "alarm_level": pa.array(frames.alarm_level[rows], pa.int8()),
        "alarm_flags": pa.array(frames.alarm_flags[rows], pa.uint32()),
    }
    return pa.Table.from_pydict(columns, schema=NATIVE_PARQUET_SCHEMA)


def iso_utc(ts: pa.Array) -> pa.Array:
    """ISO-8601 UTC strings with milliseconds and a Z, e.g. 2026-01-05T08:00:10.000Z."""
    return pc.binary_join_element_wise(pc.strftime(ts, format="%Y-%m-%dT%H:%M:%S"), "Z", "")


def parquet_bytes(table: pa.Table) -> bytes:
    """Parquet (zstd inside; never gzipped as a whole)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def jsonl_bytes(table: pa.Table) -> bytes:
    """JSON lines built column-wise in Arrow (no per-row Python): arrays for cell_mv and probe_temp_code."""
    parts: list[pa.Array | str] = ['{"vin":"', table["vin"].combine_chunks(), '","ts":"',
                                   iso_utc(table["ts"].combine_chunks()), '"']
    for name, _ in NATIVE_SCALARS:
        parts += [f',"{name}":', table[name].combine_chunks().cast(pa.string())]
    for name in ("cell_mv", "probe_temp_code"):
        joined = pc.binary_join(table[name].combine_chunks().cast(pa.list_(pa.string())), ",")
        parts += [f',"{name}":[', joined, "]"]
    for name in ("alarm_level", "alarm_flags"):
        parts += [f',"{name}":', table[name].combine_chunks().cast(pa.string())]
    parts.append("}\n")
    lines = pc.binary_join_element_wise(*parts, "")
    return "".join(lines.to_pylist()).encode()


def csv_bytes(header: list[str], columns: list[pa.Array]) -> bytes:
    """CSV with a plain header line and unquoted values (none of them contains a comma or quote)."""
    table = pa.Table.from_arrays(columns, names=header)
    buffer = io.BytesIO()
    buffer.write((",".join(header) + "\n").encode())
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return buffer.getvalue()


def native_csv_bytes(frames: VehicleFrames, rows: np.ndarray) -> bytes:
    """Native CSV: the scalar columns, cells as V_1..V_n (mV), probes as T_1..T_k (raw codes), then alarms."""
    n_cells, n_probes = frames.cell_mv.shape[1], frames.probe_code.shape[1]
    header = ["vin", "ts", *(name for name, _ in NATIVE_SCALARS)]
    columns: list[pa.Array] = [
        pa.array([frames.spec.vin] * len(rows), pa.string()),
        iso_utc(pa.array(frames.ts_ms[rows], pa.timestamp("ms", tz="UTC"))),
        *(pa.array(getattr(frames, name)[rows], dtype) for name, dtype in NATIVE_SCALARS),
    ]
    cells = frames.cell_mv[rows]
    probes = frames.probe_code[rows]
    header += [f"V_{i + 1}" for i in range(n_cells)] + [f"T_{j + 1}" for j in range(n_probes)]
    columns += [pa.array(cells[:, i]) for i in range(n_cells)] + [pa.array(probes[:, j]) for j in range(n_probes)]
    header += ["alarm_level", "alarm_flags"]
    columns += [pa.array(frames.alarm_level[rows]), pa.array(frames.alarm_flags[rows])]
    return csv_bytes(header, columns)


@functools.cache
def _volts_lookup() -> pa.Array:
    """'0.000' … '65.535' for every uint16 millivolt value (0 is written bare, as exports do)."""
    return pa.array(["0"] + [f"{mv // 1000}.{mv % 1000:03d}" for mv in range(1, 65536)], pa.string())


def volts_text(mv: np.ndarray) -> pa.Array:
    """Millivolts as volts with exactly three decimals ('3.712'; 0 → '0'), by table lookup."""
    return pc.take(_volts_lookup(), pa.array(np.asarray(mv, dtype=np.uint16)))


def wide_export_bytes(frames: VehicleFrames, rows: np.ndarray, rng: np.random.Generator) -> bytes:
    """A telematics platform's wide CSV: Beijing local time, volts, °C, no vin column (it is in the file name)."""
    cells = frames.cell_mv[rows]
    probes = frames.probe_code[rows]
    cell_ok = valid_cell_mask(cells)
    probe_ok = valid_probe_mask(probes)
    any_cell = cell_ok.any(axis=1)
    any_probe = probe_ok.any(axis=1)
    cell_max = np.where(cell_ok, cells, 0).max(axis=1)
    cell_min = np.where(cell_ok, cells, INVALID_MV).min(axis=1)
    probe_c = probes.astype(np.int64) - TEMP_OFFSET_C
    probe_max = np.where(probe_ok, probe_c, -999).max(axis=1)
    probe_min = np.where(probe_ok, probe_c, 999).min(axis=1)
    local = pa.array(frames.ts_ms[rows] // 1000 + LOCAL_UTC_OFFSET_S, pa.timestamp("s"))
    columns: list[pa.Array] = [
        pc.strftime(local, format="%Y-%m-%d %H:%M:%S"),
        pa.array(frames.charge_state[rows], pa.int8()),
        pa.array(frames.speed_kmh[rows]),
        pa.array(frames.pack_voltage_v[rows]),
        pc.if_else(pa.array(any_cell), volts_text(cell_max), pa.scalar(None, pa.string())),
        pc.if_else(pa.array(any_cell), volts_text(cell_min), pa.scalar(None, pa.string())),
        pa.array(frames.pack_current_a[rows]),
        pa.array(frames.soc_pct[rows]),
        pa.array(np.where(any_probe, probe_max, 0), mask=~any_probe),
        pa.array(np.where(any_probe, probe_min, 0), mask=~any_probe),
        pa.array(frames.alarm_flags[rows], pa.uint32()),
        pa.array(frames.odometer_km[rows]),
        pa.array(frames.insulation_kohm[rows]),
    ]
    # Exports rewrite the BMS's invalid cells: mostly 65.535, now and then 0 or 5.000.
    bad_style = rng.random(cells.shape)
    written_mv = np.where(cell_ok, cells, np.where(bad_style < 0.85, INVALID_MV, np.where(bad_style < 0.925, 0, 5000)))
    # One vectorised text conversion for the whole matrix (column-major), then zero-copy column slices.
    n_rows, n_cells = written_mv.shape
    flat = volts_text(written_mv.T.reshape(-1))
    header = [*WIDE_HEAD_COLUMNS, *(f"V_{i + 1}" for i in range(n_cells))]
    columns += [flat.slice(i * n_rows, n_rows) for i in range(n_cells)]
    probe_written = np.where(probe_ok, probe_c, WIDE_INVALID_PROBE_C)
    header += [f"T_{j + 1}" for j in range(probes.shape[1])]
    columns += [pa.array(probe_written[:, j]) for j in range(probes.shape[1])]
    return csv_bytes(header, columns)


def file_key(source: str, period_start: datetime.date, vin: str, ext: str) -> str:
    """landing/<source>/<YYYY-MM-DD>/<VIN>_<YYYY-MM-DD>.<ext>"""
    day = period_start.isoformat()
    return f"landing/{source}/{day}/{vin}_{day}.{ext}"


def encode(frames: VehicleFrames, rows: np.ndarray, params: SimulationParams, rng: np.random.Generator) -> bytes:
    """One file's bytes in the vehicle's format (gzip with a fixed mtime so reruns are byte-identical)."""
    ext = frames.spec.file_ext
    if params.shape == "wide_export":
        data = wide_export_bytes(frames, rows, rng)
    elif ext == "parquet":
        return parquet_bytes(native_table(frames, rows))
    elif ext.startswith("jsonl"):
        data = jsonl_bytes(native_table(frames, rows))
    else:
        data = native_csv_bytes(frames, rows)
    # Level 3 compresses ~3× faster than the default with files ~20 % larger.
    return gzip.compress(data, compresslevel=3, mtime=0) if ext.endswith(".gz") else data


def write_vehicle_files(lake: Lake, frames: VehicleFrames, params: SimulationParams,
                        rng: np.random.Generator) -> tuple[list[str], int]:
    """Write a vehicle's landing files; returns their keys and how many duplicate frames they carry."""
    n_periods = -(-params.days // params.period_days)
    delivery = plan_delivery(frame_periods(frames, params), n_periods, rng, params.duplicate_rate, params.late_rate)
    source = WIDE_SOURCE if params.shape == "wide_export" else NATIVE_SOURCE
    keys = []
    for period, rows in sorted(delivery.files.items()):
        start = params.start_date + datetime.timedelta(days=period * params.period_days)
        key = file_key(source, start, frames.spec.vin, frames.spec.file_ext)
        lake.write_bytes(key, encode(frames, rows, params, rng))
        keys.append(key)
    return keys, delivery.duplicates


def _csv_text(header: list[str], rows: list[list[object]]) -> bytes:
    """A small CSV (ground truth, fleet) with '\\n' line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def ground_truth_csv(fleet: list[VehicleSpec]) -> bytes:
    """vin, cell (1-based; empty for probe faults), fault_type, onset_date, severity — one row per fault."""
    rows = [
        [spec.vin, "" if f.cell is None else f.cell, f.fault_type, f.onset_date.isoformat(), f.severity]
        for spec in fleet
        for f in spec.faults
    ]
    return _csv_text(["vin", "cell", "fault_type", "onset_date", "severity"], sorted(rows, key=lambda r: (r[0], str(r[1]))))


def fleet_csv(fleet: list[VehicleSpec]) -> bytes:
    """vin, chemistry, cells, probes, capacity_ah, format — one row per vehicle."""
    rows = [[s.vin, s.chemistry, s.n_cells, s.n_probes, s.capacity_ah, s.file_ext] for s in fleet]
    return _csv_text(["vin", "chemistry", "cells", "probes", "capacity_ah", "format"], rows)


def merge_by_vin(existing: bytes | None, new: bytes) -> bytes:
    """A small CSV keyed by vin: rows of `new` replace the same vehicles' rows in `existing`, others stay."""
    if not existing:
        return new
    old_lines, new_lines = existing.decode().splitlines(), new.decode().splitlines()
    if old_lines[0] != new_lines[0]:
        return new  # the format changed: the new file wins whole
    vins = {line.split(",", 1)[0] for line in new_lines[1:]}
    kept = [line for line in old_lines[1:] if line.split(",", 1)[0] not in vins]
    return "\n".join([new_lines[0], *sorted(kept + new_lines[1:])]).encode() + b"\n"
