import numpy as np
import pyarrow.compute as pc

from pipelines.schema import CELL_CONSISTENCY_ALARM_MASK, FRAME_SCHEMA
from pipelines.simulate import (
    AlarmThresholds,
    SimulationParams,
    build_fleet,
    is_valid_vin,
    simulate_vehicle_frames,
)
from pipelines.simulate.vehicle import simulate_vehicle


def test_vehicle_frames_follow_the_frame_contract():
    run = SimulationParams(vehicles=3, days=2, seed=1)
    table = simulate_vehicle_frames(run, 1)
    assert table.schema.equals(FRAME_SCHEMA)
    assert table.num_rows > 100
    vins = set(table.column("vin").to_pylist())
    assert vins == {build_fleet(run)[1].vin} and is_valid_vin(vins.pop())
    ts = table.column("ts").cast("int64").to_numpy()
    assert np.all(np.diff(ts) > 0) and np.all(ts % 1000 == 0)
    assert np.all(np.diff(ts) >= run.interval_s * 1000)
    start_ms = int(np.datetime64(run.start_date, "ms").astype(np.int64))
    assert ts.min() >= start_ms and ts.max() < start_ms + 2 * 86_400_000
    probes = pc.list_flatten(table.column("probe_temp_c")).to_numpy(zero_copy_only=False)
    assert probes.min() >= -40 and probes.max() < 70  # °C, not raw codes
    assert set(pc.unique(table.column("vehicle_state")).to_pylist()) <= {1, 2, 3}
    assert set(pc.unique(table.column("charge_state")).to_pylist()) <= {1, 2, 3, 4}
    soc = table.column("soc_pct").to_numpy()
    assert soc.min() >= 0 and soc.max() <= 100


def test_frames_are_deterministic_and_thresholds_are_configurable():
    run = SimulationParams(vehicles=1, days=2, seed=2)
    assert simulate_vehicle_frames(run, 0).equals(simulate_vehicle_frames(run, 0))
    strict = simulate_vehicle(build_fleet(run)[0], run, AlarmThresholds(range_set_mv=5, range_release_mv=4))
    assert np.all(strict.alarm_flags[3:] & CELL_CONSISTENCY_ALARM_MASK)  # every pack trips a 5 mV threshold


def test_pack_voltage_is_the_sum_of_the_cells():
    run = SimulationParams(vehicles=1, days=2, seed=2)
    frames = simulate_vehicle(build_fleet(run)[0], run)
    cell_sum_v = frames.cell_mv.astype(np.float64).sum(axis=1) / 1000.0
    assert np.abs(frames.pack_voltage_v - cell_sum_v).max() < 1.0
    assert np.all(np.diff(frames.odometer_km) >= 0)
