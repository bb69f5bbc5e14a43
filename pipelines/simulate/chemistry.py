"""Cell chemistry: OCV–SOC curves (shared/reference/bms-domain.md) and resistance vs temperature."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHEMISTRIES = ("NMC", "LFP")

SOC_TABLE_PCT = np.arange(0.0, 101.0, 10.0)
# NMC811/graphite from the LG M50 set (Chen 2020); LFP/graphite from the Prada 2013 set.
OCV_TABLE_V = {
    "NMC": np.array([2.500, 3.296, 3.485, 3.581, 3.667, 3.751, 3.841, 3.948, 4.042, 4.097, 4.200]),
    "LFP": np.array([2.551, 3.212, 3.255, 3.260, 3.263, 3.270, 3.301, 3.309, 3.312, 3.314, 3.598]),
}

# GB/T 45688 cell voltage limits (V): (min, max)
CELL_LIMITS_V = {"NMC": (1.8, 4.4), "LFP": (1.5, 3.7)}

SOC_MIN = -0.05  # cells may sit slightly outside the nominal window (faded or shorted cells)
SOC_MAX = 1.05
GRID_STEPS = 2200  # 0.05 % SOC per step: linear interpolation on it is exact to well under 0.1 mV

GRID_SOC = np.linspace(SOC_MIN, SOC_MAX, GRID_STEPS + 1)

ARRHENIUS_K = 3000.0  # E_a / R for the cell's DC resistance, K (E_a ≈ 25 kJ/mol)
REFERENCE_TEMP_K = 298.15


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson slopes: a monotone cubic through the table, so the curve never overshoots."""
    h = np.diff(x)
    delta = np.diff(y) / h
    slopes = np.zeros_like(y)
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same_sign = delta[:-1] * delta[1:] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    slopes[1:-1] = np.where(same_sign, harmonic, 0.0)
    slopes[0] = delta[0]
    slopes[-1] = delta[-1]
    return slopes


def pchip_eval(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Evaluate the monotone cubic through (x, y) at `at`, extending the end segments linearly."""
    slopes = pchip_slopes(x, y)
    at = np.asarray(at, dtype=np.float64)
    i = np.clip(np.searchsorted(x, at, side="right") - 1, 0, len(x) - 2)
    h = x[i + 1] - x[i]
    t = (at - x[i]) / h
    h00 = 2 * t**3 - 3 * t**2 + 1
    h10 = t**3 - 2 * t**2 + t
    h01 = -2 * t**3 + 3 * t**2
    h11 = t**3 - t**2
    inside = h00 * y[i] + h10 * h * slopes[i] + h01 * y[i + 1] + h11 * h * slopes[i + 1]
    below = y[0] + (at - x[0]) * slopes[0]
    above = y[-1] + (at - x[-1]) * slopes[-1]
    return np.where(at < x[0], below, np.where(at > x[-1], above, inside))


@dataclass(frozen=True)
class OcvCurve:
    """One chemistry's OCV(SOC) on a dense uniform grid, for fast vectorised lookup."""

    chemistry: str
    grid_mv: np.ndarray  # float32, GRID_STEPS + 1 points from SOC_MIN to SOC_MAX
    step_mv: np.ndarray  # float32, grid_mv[i + 1] − grid_mv[i]

    def ocv_mv(self, soc: np.ndarray) -> np.ndarray:
        """Open-circuit voltage in mV for SOC fractions (any shape); clamped to the grid's range."""
        scale = np.float32(GRID_STEPS / (SOC_MAX - SOC_MIN))
        soc = np.asarray(soc, dtype=np.float32)
        pos = (soc.reshape(-1) - np.float32(SOC_MIN)) * scale
        np.clip(pos, 0, GRID_STEPS - 1e-3, out=pos)
        idx = pos.astype(np.int32)
        pos -= idx
        out = self.grid_mv[idx]
        out += pos * self.step_mv[idx]
        return out.reshape(soc.shape)

    def slope_mv_per_pct(self, soc: np.ndarray | float) -> np.ndarray:
        """dOCV/dSOC in mV per SOC percentage point (finite difference on the dense grid)."""
        soc = np.asarray(soc, dtype=np.float64)
        return (self.ocv_mv(soc + 0.0025).astype(np.float64) - self.ocv_mv(soc - 0.0025)) / 0.5

    def soc_at_mv(self, mv: np.ndarray | float) -> np.ndarray:
        """Inverse lookup: the SOC fraction whose OCV is `mv` (the curve is monotone)."""
        return np.interp(np.asarray(mv, dtype=np.float64), self.grid_mv.astype(np.float64), GRID_SOC)


def build_curve(chemistry: str) -> OcvCurve:
    """Densify the published table with a monotone cubic."""
    if chemistry not in OCV_TABLE_V:
        raise ValueError(f"chemistry must be one of {CHEMISTRIES}, not {chemistry!r}")
    grid_v = pchip_eval(SOC_TABLE_PCT / 100.0, OCV_TABLE_V[chemistry], GRID_SOC)
    grid_mv = (grid_v * 1000.0).astype(np.float32)
    step_mv = np.append(np.diff(grid_mv), np.float32(0.0)).astype(np.float32)
    return OcvCurve(chemistry, grid_mv, step_mv)


CURVES = {name: build_curve(name) for name in CHEMISTRIES}


def curve(chemistry: str) -> OcvCurve:
    """The cached OCV curve of a chemistry."""
    if chemistry not in CURVES:
        raise ValueError(f"chemistry must be one of {CHEMISTRIES}, not {chemistry!r}")
    return CURVES[chemistry]


def resistance_factor(temp_c: np.ndarray | float) -> np.ndarray:
    """Cell DC resistance relative to 25 °C (Arrhenius): about ×2.5 at 0 °C, ×0.6 at 45 °C."""
    temp_k = np.clip(np.asarray(temp_c, dtype=np.float64), -30.0, 70.0) + 273.15
    return np.exp(ARRHENIUS_K * (1.0 / temp_k - 1.0 / REFERENCE_TEMP_K))


def dc_resistance_mohm(capacity_ah: float) -> float:
    """Typical cell DC resistance at 25 °C: ~0.8 mΩ at 60 Ah, roughly ∝ 1/capacity (bms-domain.md)."""
    return 0.8 * 60.0 / capacity_ah
