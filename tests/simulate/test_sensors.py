import numpy as np
import pytest

from pipelines.simulate import FaultSpec, simulate_vehicle_frames
from pipelines.simulate.bms import probe_spread_c
from pipelines.simulate.sensors import (
    ABNORMAL_MV,
    INVALID_MV,
    NORMAL_TABLE,
    fast_normal,
    measure_cells_mv,
    probe_codes,
)
from pipelines.simulate.vehicle import simulate_vehicle

from .conftest import START, days_since_start, params, vehicle_spec


def test_fast_normal_is_gaussian_enough():
    noise = fast_normal(np.random.default_rng(0), (400, 1000), 2.0)
    assert noise.dtype == np.float32
    assert noise.mean() == pytest.approx(0.0, abs=0.02)
    assert noise.std() == pytest.approx(2.0, rel=0.01)
    assert np.mean(np.abs(noise) > 4.0) == pytest.approx(0.0455, abs=0.005)  # two-sigma tail
    assert NORMAL_TABLE.max() > 3.0


def test_readings_are_whole_millivolts_with_about_one_mv_noise():
    true_mv = np.full((5000, 10), 3700.4, dtype=np.float32)
    day = np.zeros(5000)
    readings = measure_cells_mv(true_mv, np.random.default_rng(1), day, (), START)
    assert readings.dtype == np.uint16
    assert 0.5 < readings.astype(float).std() < 1.3
    assert readings.astype(float).mean() == pytest.approx(3700.4, abs=0.1)


def test_stuck_noisy_and_sentinel_cells():
    n = 4000
    true_mv = np.full((n, 6), 3700.0, dtype=np.float32)
    true_mv += np.linspace(0, 300, n, dtype=np.float32)[:, None]  # the pack charges
    day = np.linspace(0, 10, n)
    faults = (
        FaultSpec("sensor_stuck", 1, START.replace(day=6), 3712.0),
        FaultSpec("sensor_noise", 2, START, 20.0),
        FaultSpec("sensor_sentinel", 3, START, 0.25),
    )
    readings = measure_cells_mv(true_mv, np.random.default_rng(2), day, faults, START)
    after = day >= 5
    assert np.all(readings[after, 0] == 3712) and not np.all(readings[~after, 0] == 3712)
    assert np.std(readings[:, 1].astype(float) - readings[:, 5]) == pytest.approx(20.0, rel=0.1)
    sentinel = readings[:, 2] >= ABNORMAL_MV
    assert 0.2 < sentinel.mean() < 0.3
    assert set(np.unique(readings[sentinel, 2])) == {ABNORMAL_MV, INVALID_MV}
    assert readings[:, 3:].max() < ABNORMAL_MV


def test_probe_codes_and_dropouts():
    temps = np.full((3000, 8), 21.2)
    day = np.linspace(0, 10, 3000)
    fault = FaultSpec("probe_dropout", None, START.replace(day=3), 0.5, probes=(3, 4, 5))
    codes = probe_codes(temps, np.random.default_rng(3), day, (fault,), START)
    assert codes.dtype == np.uint8
    ok = codes[:, [0, 1, 5, 6, 7]]
    assert set(np.unique(ok)) <= {60, 61, 62} and np.median(ok) == 61
    dropped = codes[:, 2] >= 254
    assert not dropped[day < 2].any() and 0.4 < dropped[day >= 2].mean() < 0.6
    assert np.all(codes[dropped][:, 2:5] >= 254)  # the whole module drops out together


def test_sensor_fault_vehicle_carries_sentinels_end_to_end():
    run = params(days=8)
    fault = FaultSpec("sensor_sentinel", 12, START.replace(day=3), 0.3)
    frames = simulate_vehicle(vehicle_spec(run, (fault,)), run)
    column = frames.cell_mv[:, 11]
    after = days_since_start(frames) >= 2
    assert np.all(column[~after] < ABNORMAL_MV)
    assert 0.2 < np.mean(column[after] >= ABNORMAL_MV) < 0.4
    # the BMS leaves sentinels out of its range, so they never raise the consistency alarm
    assert np.nanmax(frames.measured_range_mv) < 300
    table = simulate_vehicle_frames(run, vehicle_spec(run, (fault,)))
    cells = table.column("cell_mv").to_pylist()
    nulls = [row[11] is None for row in cells]
    assert sum(nulls) == int(np.sum(column >= ABNORMAL_MV))
    assert all(v is not None for row in cells for i, v in enumerate(row) if i != 11)


def test_probe_spread_is_a_degree_or_two(healthy_ride_hailing):
    spread = probe_spread_c(healthy_ride_hailing.probe_code)
    assert 1.0 <= np.nanmedian(spread) <= 2.0
    assert np.nanmax(spread) < 10.0  # never the temperature-difference alarm on a healthy pack
