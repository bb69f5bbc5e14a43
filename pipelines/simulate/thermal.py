"""Temperatures: ambient weather, pack temperature (I²R heating, thermal management) and probe readings."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from pipelines.simulate.chemistry import resistance_factor
from pipelines.simulate.duty import LOCAL_UTC_OFFSET_S

THERMAL_RESISTANCE_K_PER_W = 0.02  # pack to coolant/air: 500 W of heat → +10 K at equilibrium
TAU_ACTIVE_S = 1.5 * 3600.0  # coolant loop running
TAU_PARKED_S = 6.0 * 3600.0
COOLING_START_C = 32.0  # the thermal management system holds the pack near this when hot
DC_PREHEAT_C = 15.0  # a cold pack is heated before it takes fast-charge current


@dataclass(frozen=True)
class Climate:
    """Where a vehicle lives: a seasonal curve shifted by a local offset, plus daily weather anomalies."""

    offset_c: float
    first_day: int  # day number (since 1970-01-01) of anomaly_c[0]
    anomaly_c: np.ndarray
    daily_swing_c: float

    def ambient_c(self, t_s: np.ndarray | float) -> np.ndarray:
        """Air temperature at UTC epoch seconds `t_s`: season, location, weather and a daily cycle."""
        t_local = np.asarray(t_s, dtype=np.float64) + LOCAL_UTC_OFFSET_S
        day = t_local / 86_400.0
        doy = (day - 0.5) % 365.25  # close enough to the day of year for a climate curve
        seasonal = 13.0 - 15.0 * np.cos(2 * np.pi * (doy - 15.0) / 365.25)
        anomaly = np.interp(day - self.first_day, np.arange(len(self.anomaly_c)), self.anomaly_c)
        hour = (t_local % 86_400.0) / 3600.0
        daily = self.daily_swing_c * np.sin(2 * np.pi * (hour - 9.0) / 24.0)  # coolest ~03:00, warmest ~15:00
        return seasonal + self.offset_c + anomaly + daily

    def ambient_at(self, t_s: float) -> float:
        """Scalar convenience for planners."""
        return float(self.ambient_c(t_s))


def draw_climate(rng: np.random.Generator, offset_c: float, start: datetime.date, days: int) -> Climate:
    """Weather anomalies as a smoothed random walk, one value per day (with margin on both sides)."""
    first_day = (start - datetime.date(1970, 1, 1)).days - 3
    n = days + 8
    anomaly = np.convolve(rng.normal(0.0, 2.5, n + 2), np.ones(3) / np.sqrt(3), mode="valid")
    return Climate(offset_c, first_day, anomaly, float(rng.uniform(3.0, 6.0)))


def exp_smooth(target: np.ndarray, alpha: float, start: float) -> np.ndarray:
    """x[n] = alpha·x[n−1] + (1−alpha)·target[n], x[−1] = start, vectorised (closed form in blocks)."""
    n = len(target)
    out = np.empty(n)
    if n == 0:
        return out
    # a^-k grows quickly; keep blocks short enough that it stays far from overflow.
    block = n if alpha >= 1.0 else max(1, int(30.0 / -np.log(alpha)))
    x0 = start
    for lo in range(0, n, block):
        u = target[lo : lo + block]
        k = np.arange(1, len(u) + 1)
        decay = alpha**k
        out[lo : lo + len(u)] = decay * (x0 + (1.0 - alpha) * np.cumsum(u / decay))
        x0 = out[lo + len(u) - 1]
    return out


def pack_temperature_c(
    t_s: np.ndarray,
    current_a: np.ndarray,
    seg_starts: np.ndarray,
    seg_fast_charge: np.ndarray,
    ambient_c: np.ndarray,
    pack_r25_mohm: float,
    interval_s: int,
    start_temp_c: float,
) -> np.ndarray:
    """Pack temperature per frame: first-order toward ambient + I²R rise while active, ambient while parked."""
    heat_w = current_a**2 * pack_r25_mohm * resistance_factor(ambient_c) / 1000.0
    equilibrium = ambient_c + heat_w * THERMAL_RESISTANCE_K_PER_W
    equilibrium = np.where(equilibrium > COOLING_START_C,
                           COOLING_START_C + 0.25 * (equilibrium - COOLING_START_C), equilibrium)
    out = np.empty(len(t_s))
    alpha = float(np.exp(-interval_s / TAU_ACTIVE_S))
    temp = start_temp_c
    last_end = t_s[0] if len(t_s) else 0
    bounds = np.append(seg_starts, len(t_s))
    for k in range(len(seg_starts)):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        gap_s = max(0.0, float(t_s[lo] - last_end))
        temp = ambient_c[lo] + (temp - ambient_c[lo]) * np.exp(-gap_s / TAU_PARKED_S)
        target = equilibrium[lo:hi]
        if seg_fast_charge[k]:
            target = np.maximum(target, DC_PREHEAT_C + 5.0)
        out[lo:hi] = exp_smooth(target, alpha, temp)
        temp = out[hi - 1]
        last_end = t_s[hi - 1] + interval_s
    return out


def probe_temperatures_c(pack_c: np.ndarray, ambient_c: np.ndarray, offsets_c: np.ndarray,
                         gradient: np.ndarray) -> np.ndarray:
    """Each probe reads the pack temperature plus its fixed offset and a share of the pack's heating."""
    rise = np.maximum(pack_c - ambient_c, 0.0)
    return pack_c[:, None] + offsets_c[None, :] + rise[:, None] * gradient[None, :]
