import numpy as np
import pytest

from pipelines.simulate import duty
from pipelines.simulate.vehicle import plan_and_run

from .conftest import params, vehicle_spec


def test_charge_is_constant_current_then_tapers_and_stops_at_the_target():
    capacity_ah, interval_s = 150.0, 10
    current = duty.charge_current_a(0.3, 0.95, 20.0, 0.9, 2.0, capacity_ah, interval_s)
    soc = 0.3 + np.cumsum(current) * interval_s / 3600.0 / capacity_ah
    cc = soc < 0.9
    assert np.all(current[cc] == 20.0)
    assert np.all(np.diff(current[~cc]) < 0)  # taper
    assert soc[-1] == pytest.approx(0.95, abs=0.003)
    assert current[-1] < 20.0 * 0.6


def test_charge_below_the_taper_is_pure_constant_current():
    current = duty.charge_current_a(0.2, 0.7, 120.0, 0.8, 8.0, 150.0, 30)
    assert np.all(current == 120.0)
    assert len(current) * 30 / 3600.0 * 120.0 == pytest.approx(0.5 * 150.0, abs=1.0)
    assert len(duty.charge_current_a(0.9, 0.8, 120.0, 0.8, 8.0, 150.0, 30)) == 0


def test_drive_current_follows_speed_with_regen_when_braking():
    run = params()
    spec = vehicle_spec(run)
    rng = np.random.default_rng(0)
    seg, soc_end, ran_low = duty.drive_segment(rng, spec, 0, 3600.0, "urban", 0.8, 0.1, 10, 10.0)
    assert not ran_low and seg.speed_kmh[0] == 0.0 and seg.speed_kmh[-1] == 0.0
    assert 20.0 < seg.speed_kmh[seg.speed_kmh > 0].mean() < 60.0
    assert (seg.current_a < 0).any()  # regenerative braking charges the pack
    moving = seg.speed_kmh > 20
    assert seg.current_a[moving].mean() > 5.0
    assert soc_end == pytest.approx(0.8 - seg.current_a.sum() * 10 / 3600 / spec.capacity_ah)


def test_drive_stops_at_the_reserve():
    run = params()
    spec = vehicle_spec(run)
    seg, soc_end, ran_low = duty.drive_segment(np.random.default_rng(1), spec, 0, 5 * 3600.0, "highway",
                                               0.3, 0.2, 30, 10.0)
    assert ran_low and 0.15 < soc_end < 0.2


@pytest.mark.parametrize("usage", ["private_home", "private_public", "ride_hailing"])
def test_timeline_has_only_active_frames_in_order(usage):
    run = params(days=10)
    timeline, sim, _ = plan_and_run(vehicle_spec(run, usage=usage), run)
    assert np.all(np.diff(timeline.t_s) >= run.interval_s)  # never overlapping, never faster than the interval
    gaps = np.diff(timeline.t_s)
    assert (gaps > 600).sum() >= 10  # parked-off time produces no frames
    kinds = set(timeline.seg_kinds)
    assert {"idle", "drive"} <= kinds and kinds & {"charge_ac", "charge_dc"}
    # every charge ends with a 10–30 min charge-complete rest right after it
    for k, kind in enumerate(timeline.seg_kinds[:-1]):
        if kind.startswith("charge_") and kind != "charge_rest":
            assert timeline.seg_kinds[k + 1] == "charge_rest"
            rest_frames = np.sum(timeline.seg_idx == k + 1)
            assert 600 <= rest_frames * run.interval_s <= 1800
    assert min(row.mean() for row in sim.start_rows) > 0.03 and max(row.mean() for row in sim.start_rows) <= 1.0


def test_charging_current_is_negative_and_in_its_range():
    run = params(days=10)
    mild = vehicle_spec(run, usage="ride_hailing", climate_offset_c=12.0)  # cold packs take less DC current
    timeline, _, _ = plan_and_run(mild, run)
    kinds = np.array(timeline.seg_kinds)[timeline.seg_idx]
    dc = timeline.current_a[kinds == "charge_dc"]
    assert len(dc) and dc.max() < 0 and 95.0 <= -np.median(dc) <= 155.0
    rest = timeline.current_a[kinds == "charge_rest"]
    assert np.all(rest == 0.0)
