import datetime

import numpy as np
import pytest

from pipelines.simulate import FaultSpec
from pipelines.simulate.chemistry import curve, resistance_factor
from pipelines.simulate.faults import micro_short_pct_per_day
from pipelines.simulate.pack import (
    PackSimulator,
    balance,
    cell_voltages_mv,
    draw_pack,
    initial_soc,
    segment_table,
)
from pipelines.simulate.vehicle import simulate_vehicle

from .conftest import START, days_since_start, deviation_mv, params, vehicle_spec


def test_healthy_range_is_tens_of_mv_mid_soc_and_larger_at_low_soc(healthy_ride_hailing):
    f = healthy_ride_hailing
    mid = (f.soc_pct >= 40) & (f.soc_pct <= 60)
    low = f.soc_pct <= 12
    assert mid.sum() > 500 and low.sum() >= 30
    mid_range = np.median(f.measured_range_mv[mid])
    low_range = np.percentile(f.measured_range_mv[low], 90)
    assert 10.0 <= mid_range <= 50.0
    assert 70.0 <= low_range <= 250.0
    assert low_range > 3 * mid_range


def test_healthy_pack_stays_tight_over_time(healthy_private):
    f = healthy_private
    day = days_since_start(f)
    mid = (f.soc_pct >= 40) & (f.soc_pct <= 70)
    first, last = mid & (day < 7), mid & (day >= 13)
    assert first.sum() > 100 and last.sum() > 100
    assert np.median(f.measured_range_mv[last]) < np.median(f.measured_range_mv[first]) + 8.0
    assert np.nanmax(f.measured_range_mv) < 300


def test_cell_spreads_match_the_reference_figures():
    run = params()
    model = draw_pack(np.random.default_rng(4), vehicle_spec(run, n_cells=2000), START)
    capacity_spread = np.std(model.capacity_ah) / np.mean(model.capacity_ah)
    assert 0.0015 < capacity_spread < 0.0035
    assert 0.005 < np.std(model.r_rel) < 0.045
    monthly_pct = model.leak_a * 720.0 / model.capacity_ah * 100.0
    assert 0.9 < np.median(monthly_pct) < 5.1


def test_balancing_bleeds_only_cells_above_the_deadband():
    ocv = curve("NMC")
    soc = np.array([0.90, 0.90, 0.91, 0.93])
    capacity = np.full(4, 150.0)
    after = balance(soc, capacity, ocv, hours=1.0)
    assert after[0] == soc[0] and after[1] == soc[1]
    assert after[3] < soc[3] and soc[3] - after[3] == pytest.approx(0.02 / 150.0)  # bleed-current limited
    assert np.all(after >= soc - 0.02 / 150.0 - 1e-12)


def test_micro_short_cell_drifts_below_the_median_at_the_configured_rate():
    run = params(days=20)
    rate_mv_day = 2.0
    fault = FaultSpec("micro_short", 10, START, micro_short_pct_per_day(rate_mv_day))
    f = simulate_vehicle(vehicle_spec(run, (fault,), usage="ride_hailing"), run)
    dev = deviation_mv(f, 10)
    mid = (f.soc_pct >= 40) & (f.soc_pct <= 60) & (np.abs(f.pack_current_a) < 15)
    slope_mv_day = np.polyfit(days_since_start(f)[mid], dev[mid], 1)[0]
    assert -1.2 * rate_mv_day < slope_mv_day < -0.75 * rate_mv_day


def test_the_same_soc_deficit_shows_more_at_low_soc():
    run = params()
    model = draw_pack(np.random.default_rng(0), vehicle_spec(run), START)
    deviation = {}
    for pack_soc in (0.5, 0.15):
        soc = np.full(model.n_cells, pack_soc)
        soc[4] -= 0.02  # what ~17 days of a 1 mV/day micro-short leave behind
        sim = PackSimulator(model, soc)
        sim.run_segment(day=0.0, ah=0.0, hours=0.0, balance_h=0.0)
        zeros = np.zeros(1)
        volts, _ = cell_voltages_mv(model, segment_table(sim), np.zeros(1, np.int64), zeros, zeros, zeros, zeros,
                                    np.ones(1))
        deviation[pack_soc] = float(volts[0, 4] - np.median(volts[0]))
    assert deviation[0.5] == pytest.approx(-2 * 8.7, abs=2.0)
    assert deviation[0.15] < 2 * deviation[0.5]


def test_micro_short_before_the_start_has_already_pulled_its_cell_down():
    run = params()
    onset = START - datetime.timedelta(days=20)
    fault = FaultSpec("micro_short", 7, onset, micro_short_pct_per_day(1.0))
    spec = vehicle_spec(run, (fault,))
    model = draw_pack(np.random.default_rng(1), spec, START)
    soc = initial_soc(np.random.default_rng(2), model, 0.6)
    others = np.delete(soc, 6)
    assert np.median(others) - soc[6] > 0.01  # ≈ 20 days × 0.115 %/day, less a little balancing


def test_connection_resistance_deviation_is_zero_at_rest_and_proportional_to_current():
    run = params(days=10)
    fault = FaultSpec("connection_resistance", 20, START - datetime.timedelta(days=40), 2.0)
    f = simulate_vehicle(vehicle_spec(run, (fault,), usage="ride_hailing"), run)
    dev = deviation_mv(f, 20)
    current = f.pack_current_a
    rest = np.abs(current) < 1.0
    assert rest.sum() > 100
    assert abs(np.mean(dev[rest])) < 5.0
    slope, _ = np.polyfit(current, dev, 1)
    assert slope == pytest.approx(-2.0, abs=0.25)  # −ΔR: lower on discharge, higher on charge (mV/A = mΩ)
    assert np.mean(dev[current > 80]) < -150 and np.mean(dev[current < -80]) > 150


def test_faded_cell_is_lowest_at_low_soc_and_highest_at_high_soc():
    run = params(days=20, seed=4)
    fault = FaultSpec("capacity_fade", 30, START - datetime.timedelta(days=40), 0.12)
    f = simulate_vehicle(vehicle_spec(run, (fault,), usage="private_home"), run)
    readings = f.cell_mv.astype(np.float64)
    low, high = f.soc_pct <= 25, f.soc_pct >= 88
    assert low.sum() > 50 and high.sum() > 50
    assert np.mean(readings[low].argmin(axis=1) == 29) > 0.9
    assert np.mean(readings[high].argmax(axis=1) == 29) > 0.8


def test_terminal_voltage_is_ocv_minus_i_r_with_resistance_rising_in_the_cold():
    run = params()
    model = draw_pack(np.random.default_rng(0), vehicle_spec(run), START)
    sim = PackSimulator(model, np.full(model.n_cells, 0.5))
    sim.run_segment(day=0.0, ah=0.0, hours=0.0, balance_h=0.0)
    table = segment_table(sim)
    zeros = np.zeros(2)
    current = np.array([0.0, 100.0])  # at rest, then 100 A held long enough to charge the RC branch

    def volts(temp_c: float) -> np.ndarray:
        """Cell voltages of the two frames at a pack temperature."""
        out, soc_mean = cell_voltages_mv(model, table, np.zeros(2, np.int64), zeros, zeros, current, current,
                                         resistance_factor(np.full(2, temp_c)))
        assert soc_mean == pytest.approx([0.5, 0.5])
        return out

    warm, cold = volts(25.0), volts(0.0)
    np.testing.assert_allclose(warm[0], curve("NMC").ocv_mv(0.5), atol=0.01)
    expected_drop = 100.0 * (model.r0_mohm + model.r1_mohm) * model.r_rel
    np.testing.assert_allclose(warm[0] - warm[1], expected_drop, rtol=1e-4)
    np.testing.assert_allclose(cold[0] - cold[1], expected_drop * resistance_factor(0.0), rtol=1e-4)
