import re

import pytest

from pipelines.simulate import SimulationParams, build_fleet, is_valid_vin
from pipelines.simulate.fleet import file_ext_for, vin_check_digit


def test_check_digit_matches_known_vins():
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    assert vin_check_digit("11111111111111111") == "1"
    assert is_valid_vin("1M8GDM9AXKP042788")
    assert not is_valid_vin("1M8GDM9A1KP042788")


def test_fleet_vins_are_valid_unique_and_free_of_i_o_q():
    fleet = build_fleet(SimulationParams(vehicles=200, seed=9))
    vins = [spec.vin for spec in fleet]
    assert len(set(vins)) == 200
    assert all(is_valid_vin(v) and re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", v) for v in vins)


def test_vins_do_not_depend_on_fleet_size():
    small = build_fleet(SimulationParams(vehicles=3))
    large = build_fleet(SimulationParams(vehicles=30))
    assert [s.vin for s in small] == [s.vin for s in large[:3]]


def test_pack_sizes_are_plausible():
    for spec in build_fleet(SimulationParams(vehicles=100, seed=5)):
        assert 84 <= spec.n_cells <= 108
        assert 19 <= spec.n_probes <= 45 and spec.n_probes <= spec.n_cells // 2
        assert spec.chemistry in ("NMC", "LFP")
        assert 0.2 < spec.r0_mohm < 0.6


@pytest.mark.parametrize(("vehicles", "fraction", "faulty"), [(20, 0.25, 5), (7, 0.5, 4), (10, 0.0, 0)])
def test_exactly_the_configured_share_is_faulty(vehicles, fraction, faulty):
    fleet = build_fleet(SimulationParams(vehicles=vehicles, fault_fraction=fraction))
    assert sum(1 for spec in fleet if spec.faults) == faulty


def test_faults_have_onsets_before_and_inside_the_window():
    run = SimulationParams(vehicles=200, fault_fraction=1.0, days=60)
    onsets = [(f.onset_date - run.start_date).days for spec in build_fleet(run) for f in spec.faults]
    assert min(onsets) < 0 <= max(onsets) < 60
    assert sum(d < 0 for d in onsets) > 20 and sum(d >= 0 for d in onsets) > 20


def test_mixed_format_rotates_and_gzips_some_text_files():
    run = SimulationParams(file_format="mixed")
    assert [file_ext_for(i, run) for i in range(6)] == ["parquet", "jsonl", "csv", "parquet", "jsonl.gz", "csv.gz"]
    assert file_ext_for(0, SimulationParams(file_format="parquet", gzip=True)) == "parquet"
    assert file_ext_for(0, SimulationParams(file_format="jsonl", gzip=True)) == "jsonl.gz"
    assert file_ext_for(4, SimulationParams(shape="wide_export")) == "csv.gz"


def test_params_reject_out_of_range_values():
    with pytest.raises(ValueError, match="interval_s"):
        SimulationParams(interval_s=5)
    with pytest.raises(ValueError, match="file_format"):
        SimulationParams(file_format="xml")
