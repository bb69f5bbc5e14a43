import numpy as np
import pytest

from pipelines.simulate.chemistry import (
    OCV_TABLE_V,
    SOC_TABLE_PCT,
    curve,
    dc_resistance_mohm,
    resistance_factor,
)


@pytest.mark.parametrize("chemistry", ["NMC", "LFP"])
def test_curve_passes_through_the_published_table(chemistry):
    ocv = curve(chemistry)
    got = ocv.ocv_mv(SOC_TABLE_PCT / 100.0)
    np.testing.assert_allclose(got, OCV_TABLE_V[chemistry] * 1000.0, atol=0.05)


@pytest.mark.parametrize("chemistry", ["NMC", "LFP"])
def test_curve_is_monotone_and_keeps_its_shape(chemistry):
    ocv = curve(chemistry)
    soc = np.linspace(0.0, 1.0, 2001)
    assert np.all(np.diff(ocv.ocv_mv(soc)) >= 0)
    # inverse lookup round-trips
    np.testing.assert_allclose(ocv.soc_at_mv(ocv.ocv_mv(np.array([0.1, 0.5, 0.9]))), [0.1, 0.5, 0.9], atol=1e-3)


def test_slopes_make_low_soc_the_revealing_region():
    nmc, lfp = curve("NMC"), curve("LFP")
    assert nmc.slope_mv_per_pct(0.5) == pytest.approx(8.7, abs=0.5)  # (3.841 − 3.667 V) / 20 %
    assert nmc.slope_mv_per_pct(0.08) > 5 * nmc.slope_mv_per_pct(0.5)
    assert lfp.slope_mv_per_pct(0.5) < 2.0  # the LFP plateau hides mid-SOC drift
    assert lfp.slope_mv_per_pct(0.05) > 30 * lfp.slope_mv_per_pct(0.5)


def test_ocv_accepts_scalars_and_matrices():
    ocv = curve("NMC")
    assert ocv.ocv_mv(0.5).shape == ()
    assert ocv.ocv_mv(np.full((3, 4), 0.5)).shape == (3, 4)
    assert float(ocv.ocv_mv(0.5)) == pytest.approx(3751.0, abs=0.1)


def test_resistance_rises_in_the_cold_and_scales_with_capacity():
    assert resistance_factor(25.0) == pytest.approx(1.0)
    assert 2.0 < resistance_factor(0.0) < 3.0
    assert resistance_factor(-10.0) > resistance_factor(0.0)
    assert dc_resistance_mohm(60.0) == pytest.approx(0.8)
    assert dc_resistance_mohm(150.0) == pytest.approx(0.32)
