import datetime

import numpy as np
import pytest

from pipelines.schema import CELL_CONSISTENCY_ALARM_MASK
from pipelines.simulate import FaultSpec
from pipelines.simulate.bms import (
    SOC_LOW_MASK,
    TEMP_DIFF_MASK,
    AlarmThresholds,
    cell_range_mv,
    evaluate_alarms,
    hysteresis_state,
    probe_spread_c,
    runs_at_least,
)
from pipelines.simulate.faults import micro_short_pct_per_day
from pipelines.simulate.vehicle import simulate_vehicle

from .conftest import START, params, vehicle_spec


def test_runs_at_least_is_a_rolling_debounce():
    mask = np.array([1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    assert runs_at_least(mask, 3).tolist() == [False, False, False, False, False, True, True, False, False]
    assert runs_at_least(mask, 1).tolist() == mask.tolist()


def test_hysteresis_sets_after_debounce_holds_between_thresholds_and_clears_after_debounce():
    #           0    1    2    3    4    5    6    7    8    9   10   11   12   13   14
    r = np.array([100, 310, 320, 290, 310, 305, 330, 280, 260, 240, 280, 240, 230, 220, 400], dtype=float)
    state = hysteresis_state(r, set_at=300, release_below=250, debounce=3)
    expected = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    # 1–2 above then a dip: no set; 4–6 three in a row: set at 6; 7–12 between or briefly below: hold;
    # 11–13 three below 250: clear at 13; a single spike at 14 does not set again
    assert state.astype(int).tolist() == expected


def test_hysteresis_ignores_frames_without_a_measurement():
    r = np.array([310, np.nan, 320, 330, np.nan, 100, 100, 100])
    state = hysteresis_state(r, 300, 250, 2)
    assert state.astype(int).tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


def test_hysteresis_rejects_a_release_above_the_set_threshold():
    with pytest.raises(ValueError, match="release"):
        hysteresis_state(np.zeros(3), 100, 200, 2)


def test_range_and_spread_skip_sentinels():
    cells = np.array([[3700, 3710, 65535], [3700, 65534, 3650], [65535, 65535, 3600]], dtype=np.uint16)
    np.testing.assert_array_equal(cell_range_mv(cells), [10.0, 50.0, np.nan])
    probes = np.array([[60, 65, 255], [254, 255, 70]], dtype=np.uint8)
    np.testing.assert_array_equal(probe_spread_c(probes), [5.0, np.nan])


def test_flags_and_levels_from_range_soc_and_temperature():
    t = AlarmThresholds(debounce_frames=2)
    range_mv = np.array([20, 320, 330, 520, 530, 540, 200, 200, 20], dtype=float)
    soc = np.array([50, 50, 9, 9, 9, 20, 20, 20, 20], dtype=float)
    spread = np.array([2, 2, 2, 2, 12, 12, 12, 2, 2], dtype=float)
    alarms = evaluate_alarms(range_mv, soc, spread, t)
    consistency = (alarms.flags & CELL_CONSISTENCY_ALARM_MASK) > 0
    assert consistency.astype(int).tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]
    assert ((alarms.flags & SOC_LOW_MASK) > 0).astype(int).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert ((alarms.flags & TEMP_DIFF_MASK) > 0).astype(int).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert alarms.level.tolist() == [0, 0, 1, 1, 2, 2, 2, 1, 0]  # level 2 also releases after the debounce
    assert alarms.flags.dtype == np.uint32 and alarms.level.dtype == np.int8


def test_healthy_vehicles_never_raise_the_consistency_alarm(healthy_ride_hailing, healthy_private):
    for f in (healthy_ride_hailing, healthy_private):
        assert not np.any(f.alarm_flags & CELL_CONSISTENCY_ALARM_MASK)
        assert np.nanmax(f.measured_range_mv) < AlarmThresholds().range_set_mv


def test_alarm_follows_the_physics_crossing_the_threshold_with_a_debounce_delay():
    run = params(days=20)
    fault = FaultSpec("micro_short", 33, START - datetime.timedelta(days=15), micro_short_pct_per_day(3.0))
    f = simulate_vehicle(vehicle_spec(run, (fault,), usage="ride_hailing"), run)
    t = AlarmThresholds()
    alarm = (f.alarm_flags & CELL_CONSISTENCY_ALARM_MASK) > 0
    assert alarm.sum() > 10
    first_alarm = int(np.argmax(alarm))
    first_crossing = int(np.argmax(f.true_range_mv >= t.range_set_mv - 5))
    assert first_alarm >= first_crossing + t.debounce_frames - 1
    # the BMS saw `debounce_frames` readings at or above the threshold right before it set the flag
    window = f.measured_range_mv[first_alarm - t.debounce_frames + 1 : first_alarm + 1]
    assert np.all(window >= t.range_set_mv)
    # every alarm frame is at most a release threshold away from a real deviation, never a healthy range
    assert np.all(f.measured_range_mv[alarm] >= t.range_release_mv - 60)
    assert set(np.unique(f.alarm_level[alarm])) <= {1, 2}
