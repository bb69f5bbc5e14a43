import datetime

import numpy as np
import pytest

from pipelines.simulate import FAULT_TYPES, FaultSpec
from pipelines.simulate.faults import draw_fault, micro_short_pct_per_day, progress

START = datetime.date(2026, 1, 1)


def test_physical_faults_ramp_and_micro_shorts_step():
    fade = FaultSpec("capacity_fade", 3, START + datetime.timedelta(days=10), 0.1)
    assert progress(fade, np.array([5.0, 10.0, 25.0, 40.0, 90.0]), START).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    short = FaultSpec("micro_short", 3, START - datetime.timedelta(days=4), 0.1)
    assert progress(short, np.array([-5.0, -4.0, 0.0]), START).tolist() == [0.0, 1.0, 1.0]


def test_micro_short_severity_is_percent_of_capacity_per_day():
    assert micro_short_pct_per_day(0.87) == pytest.approx(0.1, rel=0.03)  # NMC slope ≈ 8.7 mV per % mid-SOC
    assert micro_short_pct_per_day(3.0) == pytest.approx(0.345, rel=0.03)


def test_drawn_faults_stay_in_their_documented_ranges():
    rng = np.random.default_rng(0)
    drawn = [draw_fault(rng, 96, 24, START, 60, "NMC") for _ in range(600)]
    assert {f.fault_type for f in drawn} == set(FAULT_TYPES)
    for f in drawn:
        if f.fault_type == "probe_dropout":
            assert f.cell is None and 2 <= len(f.probes) <= 5 and 1 <= min(f.probes) <= max(f.probes) <= 24
            continue
        assert 1 <= f.cell <= 96
        low, high = {
            # stuck readings sit on the NMC curve between 30 and 70 % SOC
            "micro_short": (0.05, 0.35), "connection_resistance": (0.8, 3.0), "capacity_fade": (0.06, 0.2),
            "sensor_stuck": (3581, 3948), "sensor_noise": (8, 40), "sensor_sentinel": (0.02, 0.3),
        }[f.fault_type]
        assert low <= f.severity <= high, f
        assert -30 <= (f.onset_date - START).days < 36


def test_unknown_fault_types_are_rejected():
    with pytest.raises(ValueError, match="fault_type"):
        FaultSpec("melted", 1, START, 1.0)
