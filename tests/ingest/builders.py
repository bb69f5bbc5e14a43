"""Builders for landing files in the simulator's native format and the wide_export format, and readers of the results."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import load_settings
from pipelines.ingest import IngestSummary, ingest_pending
from pipelines.ingest.manifest import ManifestEntry, load_manifest, source_id_for
from pipelines.schema import FRAME_SCHEMA
from pipelines.storage.lake import Lake

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
DAY = "2026-01-05"
NOW = datetime(2026, 2, 1, tzinfo=UTC)
CELLS_MV = (3650, 3651, 3652, 3653)
PROBE_CODES = (65, 66)  # 25 °C and 26 °C

NATIVE_SCALARS = ("vehicle_state", "charge_state", "speed_kmh", "odometer_km", "pack_voltage_v", "pack_current_a",
                  "soc_pct", "insulation_kohm")
WIDE_SCALARS = ("BMSChargeStatus", "vehSpeed", "vehOdo", "BMSBatteryVoltage", "BMSBatteryCurrent", "vehBMSPackSOC",
                "insulationResistance", "BMSWarningInformation")


def run_ingest(lake: Lake, **kwargs) -> IngestSummary:
    """One ingest run with the current settings and a fixed clock."""
    summary = ingest_pending(lake=lake, settings=load_settings(), now=kwargs.pop("now", NOW), **kwargs)
    assert summary.reconciles(), summary.counts()
    for entry in summary.entries:
        assert entry.reconciles(), entry
    for entry in load_manifest(lake).values():
        assert entry.reconciles(), entry
    return summary


# ---------------------------------------------------------------------------------------------- rows

def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def native_row(vin: str = VIN_A, ts: str | datetime = f"{DAY}T00:00:00Z", *, cells: Sequence = CELLS_MV,
               probes: Sequence = PROBE_CODES, **overrides) -> dict:
    """One simulator frame: scalars, `cell_mv` in mV and `probe_temp_code` as raw GB/T codes."""
    row = {
        "vin": vin, "ts": iso(ts) if isinstance(ts, datetime) else ts,
        "vehicle_state": 1, "charge_state": 3, "speed_kmh": 42.5, "odometer_km": 12345.6,
        "pack_voltage_v": 350.4, "pack_current_a": 20.5, "soc_pct": 55.0, "insulation_kohm": 5000.0,
        "cell_mv": list(cells), "probe_temp_code": list(probes), "alarm_level": 0, "alarm_flags": 0,
    }
    row.update(overrides)
    return row


def native_rows(n: int, vin: str = VIN_A, start: str = f"{DAY}T00:00:00Z", step_s: int = 10, **overrides) -> list[dict]:
    """n consecutive frames of one vehicle, `step_s` seconds apart."""
    first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return [native_row(vin, first + timedelta(seconds=i * step_s), **overrides) for i in range(n)]


def wide_row(local_time: str = f"{DAY} 08:00:00", *, volts: Sequence = (3.650, 3.651, 3.652, 3.653),
             temps: Sequence = (25, 26), **overrides) -> dict:
    """One wide_export row: Beijing local time, volts as V_n, temperatures (°C or codes) as T_n."""
    row = {
        "tboxTime": local_time, "BMSChargeStatus": 3, "vehSpeed": 42.5, "vehOdo": 12345.6,
        "BMSBatteryVoltage": 350.4, "BMSBatteryCurrent": 20.5, "vehBMSPackSOC": 55.0,
        "insulationResistance": 5000.0, "BMSWarningInformation": 0, "volts": list(volts), "temps": list(temps),
    }
    row.update(overrides)
    return row


def wide_rows(n: int, start: str = f"{DAY} 08:00:00", step_s: int = 10, **overrides) -> list[dict]:
    first = datetime.strptime(start, "%Y-%m-%d %H:%M:%S")
    return [wide_row((first + timedelta(seconds=i * step_s)).strftime("%Y-%m-%d %H:%M:%S"), **overrides)
            for i in range(n)]


# ---------------------------------------------------------------------------------------------- files

def landing_key(vin: str = VIN_A, day: str = DAY, ext: str = "csv", source: str = "simulator") -> str:
    return f"landing/{source}/{day}/{vin}_{day}.{ext}"


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def csv_bytes(header: Sequence[str], lines: Iterable[Sequence[object]], delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for line in lines:
        writer.writerow([_cell(v) for v in line])
    return buffer.getvalue().encode()


def native_csv_bytes(rows: Sequence[dict], cells: int | None = None, probes: int | None = None) -> bytes:
    """The simulator's CSV: scalars, then V_1..V_n (mV) and T_1..T_k (codes), then the alarm columns."""
    cells = cells if cells is not None else max((len(r["cell_mv"]) for r in rows), default=len(CELLS_MV))
    probes = probes if probes is not None else max((len(r["probe_temp_code"]) for r in rows), default=len(PROBE_CODES))
    header = ["vin", "ts", *NATIVE_SCALARS, *(f"V_{i}" for i in range(1, cells + 1)),
              *(f"T_{i}" for i in range(1, probes + 1)), "alarm_level", "alarm_flags"]
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in header and k not in ("cell_mv", "probe_temp_code")))
    header += extra

    def line(row: dict) -> list:
        cell_values = list(row["cell_mv"]) + [None] * (cells - len(row["cell_mv"]))
        probe_values = list(row["probe_temp_code"]) + [None] * (probes - len(row["probe_temp_code"]))
        return [row.get("vin"), row.get("ts"), *(row.get(c) for c in NATIVE_SCALARS), *cell_values, *probe_values,
                row.get("alarm_level"), row.get("alarm_flags"), *(row.get(c) for c in extra)]

    return csv_bytes(header, (line(r) for r in rows))


def native_jsonl_bytes(rows: Sequence[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def native_parquet_bytes(rows: Sequence[dict]) -> bytes:
    """The simulator's Parquet: ts as timestamp[ms, UTC], lists as list<uint16> / list<uint8>."""
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    columns["ts"] = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in columns["ts"]]
    types = {"ts": pa.timestamp("ms", tz="UTC"), "cell_mv": pa.list_(pa.uint16()), "probe_temp_code": pa.list_(pa.uint8()),
             "vehicle_state": pa.int8(), "charge_state": pa.int8(), "alarm_level": pa.int8(), "alarm_flags": pa.uint32()}
    table = pa.table({name: pa.array(values, types.get(name)) for name, values in columns.items()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def wide_csv_bytes(rows: Sequence[dict]) -> bytes:
    """The wide export: tboxTime, BMS*/veh* columns, V_1..V_n in volts, T_1..T_k."""
    cells = max(len(r["volts"]) for r in rows)
    probes = max(len(r["temps"]) for r in rows)
    header = ["tboxTime", *WIDE_SCALARS, *(f"V_{i}" for i in range(1, cells + 1)), *(f"T_{i}" for i in range(1, probes + 1))]
    return csv_bytes(header, ([r["tboxTime"], *(r[c] for c in WIDE_SCALARS),
                               *(list(r["volts"]) + [None] * (cells - len(r["volts"]))),
                               *(list(r["temps"]) + [None] * (probes - len(r["temps"])))] for r in rows))


def put(lake: Lake, key: str, data: bytes, gzipped: bool = False) -> str:
    """Write a landing object (gzip-compressed when asked) and return its key."""
    lake.write_bytes(key, gzip.compress(data, mtime=0) if gzipped else data)
    return key


def put_native_csv(lake: Lake, rows: Sequence[dict], key: str | None = None, **kwargs) -> str:
    return put(lake, key or landing_key(rows[0]["vin"] if rows else VIN_A), native_csv_bytes(rows, **kwargs))


def put_native_jsonl(lake: Lake, rows: Sequence[dict], key: str | None = None) -> str:
    return put(lake, key or landing_key(rows[0]["vin"], ext="jsonl"), native_jsonl_bytes(rows))


def put_native_parquet(lake: Lake, rows: Sequence[dict], key: str | None = None) -> str:
    return put(lake, key or landing_key(rows[0]["vin"], ext="parquet"), native_parquet_bytes(rows))


def put_wide_csv(lake: Lake, rows: Sequence[dict], vin: str = VIN_B, day: str = DAY, key: str | None = None) -> str:
    return put(lake, key or landing_key(vin, day, source="wide_export"), wide_csv_bytes(rows))


# ---------------------------------------------------------------------------------------------- reading back

def frames(lake: Lake, date: str | None = None) -> pa.Table:
    """Every frame in the lake (or one date partition), sorted by vin and ts."""
    prefix = f"frames/dt={date}" if date else "frames"
    tables = [lake.read_parquet(info.key) for info in lake.list(prefix)]
    if not tables:
        return FRAME_SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("vin", "ascending"), ("ts", "ascending")])


def frame_files(lake: Lake) -> dict[str, bytes]:
    """Every frames object's bytes, by key."""
    return {info.key: lake.read_bytes(info.key) for info in lake.list("frames")}


def quarantine_rows(lake: Lake, key: str) -> list[dict]:
    """The quarantine records of one landing object, in row order ([] when it has none)."""
    qkey = f"quarantine/rows/{source_id_for(key)}.parquet"
    return lake.read_parquet(qkey).to_pylist() if lake.exists(qkey) else []


def entry(lake: Lake, key: str) -> ManifestEntry:
    return load_manifest(lake)[key]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
