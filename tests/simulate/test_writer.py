import csv
import gzip
import io
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.simulate import FaultSpec, SimulationParams, build_fleet, is_valid_vin, simulate_fleet
from pipelines.simulate.vehicle import simulate_vehicle
from pipelines.simulate.writer import (
    NATIVE_PARQUET_SCHEMA,
    WIDE_HEAD_COLUMNS,
    native_csv_bytes,
    plan_delivery,
    volts_text,
    wide_export_bytes,
)
from pipelines.storage.lake import Lake

from .conftest import START, params, vehicle_spec

NATIVE_HEAD = ["vin", "ts", "vehicle_state", "charge_state", "speed_kmh", "odometer_km", "pack_voltage_v",
               "pack_current_a", "soc_pct", "insulation_kohm"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RUN = SimulationParams(vehicles=6, days=3, seed=5, fault_fraction=0.5, file_format="mixed",
                       duplicate_rate=0.02, late_rate=0.02)


@pytest.fixture(scope="module")
def mixed_lake(tmp_path_factory):
    """A small mixed-format fleet written once for the read-back tests."""
    lake = Lake(tmp_path_factory.mktemp("lake").as_uri())
    return lake, simulate_fleet(RUN, lake)


def _read(lake: Lake, key: str) -> bytes:
    """An object's bytes, gunzipped when its key says so."""
    data = lake.read_bytes(key)
    return gzip.decompress(data) if key.endswith(".gz") else data


def test_delivery_keeps_every_frame_and_adds_duplicates_and_late_frames():
    periods = np.repeat(np.arange(3), 1000)
    clean = plan_delivery(periods, 3, np.random.default_rng(0), 0.0, 0.0)
    assert clean.duplicates == 0
    for period, rows in clean.files.items():
        np.testing.assert_array_equal(rows, np.flatnonzero(periods == period))
    messy = plan_delivery(periods, 3, np.random.default_rng(0), 0.05, 0.05)
    delivered = np.concatenate(list(messy.files.values()))
    assert len(delivered) == 3000 + messy.duplicates and 100 < messy.duplicates < 200
    assert set(delivered.tolist()) == set(range(3000))
    late_in_1 = messy.files[1][periods[messy.files[1]] == 0]
    assert len(late_in_1) > 20
    tail = messy.files[1][-len(late_in_1):]
    assert np.all(periods[tail] == 0)  # stragglers come after the period's own frames: out of order
    assert np.all(periods[messy.files[0]] == 0)  # nothing is delivered early
    assert np.all(periods[messy.files[2]] >= 1)


def test_every_format_reads_back_with_the_documented_columns(mixed_lake):
    lake, summary = mixed_lake
    fleet = {spec.vin: spec for spec in build_fleet(RUN)}
    exts = set()
    for key in summary.landing_keys:
        match = re.fullmatch(r"landing/simulator/(\d{4}-\d\d-\d\d)/([A-Z0-9]{17})_(\1)\.(.+)", key)
        assert match, key
        vin, ext = match.group(2), match.group(4)
        spec = fleet[vin]
        assert ext == spec.file_ext
        exts.add(ext)
        if ext == "parquet":
            table = pq.read_table(io.BytesIO(lake.read_bytes(key)))
            assert table.schema.equals(NATIVE_PARQUET_SCHEMA)
            lengths = {len(v) for v in table.column("cell_mv").to_pylist()}
            assert lengths == {spec.n_cells}
        elif ext.startswith("jsonl"):
            lines = _read(lake, key).decode().splitlines()
            first = json.loads(lines[0])
            assert list(first) == [*NATIVE_HEAD, "cell_mv", "probe_temp_code", "alarm_level", "alarm_flags"]
            assert ISO_UTC.match(first["ts"]) and first["vin"] == vin
            assert len(first["cell_mv"]) == spec.n_cells and len(first["probe_temp_code"]) == spec.n_probes
            assert all(isinstance(v, int) for v in first["cell_mv"])
            frame = pd.read_json(io.BytesIO(_read(lake, key)), lines=True)
            assert len(frame) == len(lines)
        else:
            frame = pd.read_csv(io.BytesIO(_read(lake, key)))
            cells = [f"V_{i}" for i in range(1, spec.n_cells + 1)]
            probes = [f"T_{j}" for j in range(1, spec.n_probes + 1)]
            assert list(frame.columns) == [*NATIVE_HEAD, *cells, *probes, "alarm_level", "alarm_flags"]
            assert frame["ts"].str.match(ISO_UTC).all() and (frame["vin"] == vin).all()
            assert frame[cells].dtypes.map(lambda d: d.kind).eq("i").all()
            assert frame[cells].to_numpy().min() > 2000 and frame[probes].to_numpy().max() <= 255
    assert exts == {"parquet", "jsonl", "csv", "jsonl.gz", "csv.gz"}


def test_files_hold_exactly_the_simulated_frames_plus_duplicates(mixed_lake):
    lake, summary = mixed_lake
    spec = build_fleet(RUN)[0]  # parquet
    keys = [k for k in summary.landing_keys if spec.vin in k]
    table = pa.concat_tables([pq.read_table(io.BytesIO(lake.read_bytes(k))) for k in keys])
    frames = simulate_vehicle(spec, RUN)
    delivered = pd.DataFrame({"ts": table.column("ts").cast(pa.int64()).to_numpy(),
                              "soc": table.column("soc_pct").to_numpy()})
    assert len(delivered) >= len(frames)
    unique = delivered.drop_duplicates()
    assert len(unique) == len(frames) and unique["ts"].is_unique  # duplicates are exact copies
    np.testing.assert_array_equal(np.sort(unique["ts"].to_numpy()), frames.ts_ms)


def test_summary_ground_truth_and_fleet_list(mixed_lake):
    lake, summary = mixed_lake
    fleet = build_fleet(RUN)
    assert summary.vehicles == 6 and summary.days == 3 and summary.files == len(summary.landing_keys)
    assert summary.faulty_vehicles == 3 and summary.duplicates_written > 0
    assert summary.frames == sum(len(simulate_vehicle(spec, RUN)) for spec in fleet)
    truth = list(csv.DictReader(io.StringIO(lake.read_bytes(summary.ground_truth_key).decode())))
    assert list(truth[0]) == ["vin", "cell", "fault_type", "onset_date", "severity"]
    assert {row["vin"] for row in truth} == {spec.vin for spec in fleet if spec.faults}
    for row in truth:
        assert row["cell"] == "" if row["fault_type"] == "probe_dropout" else 1 <= int(row["cell"]) <= 108
        float(row["severity"])
    listed = pd.read_csv(io.BytesIO(lake.read_bytes("simulation/fleet.csv")))
    assert list(listed.columns) == ["vin", "chemistry", "cells", "probes", "capacity_ah", "format"]
    assert listed["vin"].tolist() == [spec.vin for spec in fleet]
    assert not any(k.startswith("landing/") for k in ("simulation/fleet.csv", summary.ground_truth_key))


def test_same_params_give_byte_identical_files(tmp_path):
    run = SimulationParams(vehicles=3, days=2, seed=8, fault_fraction=0.34, gzip=True)
    first, second = Lake((tmp_path / "a").as_uri()), Lake((tmp_path / "b").as_uri())
    keys_a = simulate_fleet(run, first).landing_keys
    keys_b = simulate_fleet(run, second).landing_keys
    assert keys_a == keys_b
    for key in [*keys_a, "simulation/ground_truth.csv", "simulation/fleet.csv"]:
        assert first.read_bytes(key) == second.read_bytes(key), key
    other = Lake((tmp_path / "c").as_uri())
    keys_c = simulate_fleet(SimulationParams(vehicles=3, days=2, seed=9, fault_fraction=0.34, gzip=True),
                            other).landing_keys
    assert {first.read_bytes(k) for k in keys_a}.isdisjoint(other.read_bytes(k) for k in keys_c)


def test_progress_reports_each_vehicle(tmp_path):
    done: list[int] = []
    simulate_fleet(SimulationParams(vehicles=2, days=1), Lake(tmp_path.as_uri()), progress=done.append)
    assert done == [1, 1]


def test_volts_text_has_three_decimals():
    assert volts_text(np.array([3712, 4005, 65535, 0, 5000])).to_pylist() == [
        "3.712", "4.005", "65.535", "0", "5.000"]


def test_wide_export_shape_local_time_and_bad_values():
    run = params(days=3)
    fault = FaultSpec("sensor_sentinel", 5, START, 0.5)
    dropout = FaultSpec("probe_dropout", None, START, 0.5, probes=(1, 2))
    frames = simulate_vehicle(vehicle_spec(run, (fault, dropout)), run)
    rows = np.arange(len(frames))
    text = wide_export_bytes(frames, rows, np.random.default_rng(0)).decode()
    header = text.split("\n", 1)[0].split(",")
    assert header == [*WIDE_HEAD_COLUMNS, *(f"V_{i}" for i in range(1, 97)), *(f"T_{j}" for j in range(1, 25))]
    assert "vin" not in header
    table = pd.read_csv(io.StringIO(text), dtype={f"V_{i}": str for i in range(1, 97)})
    local = pd.to_datetime(table["tboxTime"], format="%Y-%m-%d %H:%M:%S")
    utc = pd.to_datetime(frames.ts_ms, unit="ms")
    assert ((local - utc) == pd.Timedelta(hours=8)).all()  # Beijing time, no offset written
    good = table["V_1"]
    assert good.str.fullmatch(r"\d\.\d{3}").all()
    bad = table["V_5"][frames.cell_mv[:, 4] >= 65534]
    assert len(bad) > 50 and set(bad) <= {"65.535", "0", "5.000"} and "65.535" in set(bad)
    assert (bad == "65.535").mean() > 0.7
    assert set(table["T_1"][frames.probe_code[:, 0] >= 254]) == {215}
    assert table["BMSCellVoltageMax"].max() < 5.0  # extremes come from valid cells only
    np.testing.assert_allclose(table["BMSCellVoltageMax"] - table["BMSCellVoltageMin"],
                               frames.measured_range_mv / 1000.0, atol=1e-9)
    assert (table["BMSWarningInformation"] == frames.alarm_flags).all()


def test_wide_export_fleet_uses_its_own_prefix(tmp_path):
    lake = Lake(tmp_path.as_uri())
    summary = simulate_fleet(SimulationParams(vehicles=2, days=1, shape="wide_export", gzip=True), lake)
    for key in summary.landing_keys:
        assert re.fullmatch(r"landing/wide_export/2026-01-01/[A-Z0-9]{17}_2026-01-01\.csv\.gz", key)
        assert is_valid_vin(key.rsplit("/", 1)[1][:17])
        frame = pd.read_csv(io.BytesIO(gzip.decompress(lake.read_bytes(key))))
        assert list(frame.columns[:13]) == list(WIDE_HEAD_COLUMNS)


def test_native_csv_keeps_sentinels_as_written_by_the_bms():
    run = params(days=2)
    frames = simulate_vehicle(vehicle_spec(run, (FaultSpec("sensor_sentinel", 3, START, 0.5),)), run)
    table = pd.read_csv(io.BytesIO(native_csv_bytes(frames, np.arange(len(frames)))))
    assert set(table["V_3"][table["V_3"] > 5000]) == {65534, 65535}
    assert table["V_3"].dtype.kind == "i"


def test_merge_by_vin_keeps_other_vehicles_and_replaces_the_same_ones():
    from pipelines.simulate.writer import merge_by_vin

    old = b"vin,cell\nAAA,1\nBBB,2\n"
    new = b"vin,cell\nBBB,5\nCCC,3\n"
    assert merge_by_vin(old, new) == b"vin,cell\nAAA,1\nBBB,5\nCCC,3\n"
    assert merge_by_vin(None, new) == new
