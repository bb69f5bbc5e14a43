"""Fault catalogue: which cell fails how, from when, and how each fault's strength grows with time.

Severity units by fault type (the `severity` column of simulation/ground_truth.csv):

| fault_type | cell | severity |
|---|---|---|
| micro_short | shorted cell | extra self-discharge, % of capacity per day (0.057–0.34 ≈ 0.5–3 mV/day mid-SOC on NMC) |
| connection_resistance | cell behind the bad weld | extra resistance when fully developed, mΩ |
| capacity_fade | faded cell | capacity lost when fully developed, fraction (0.06–0.2) |
| sensor_stuck | cell whose voltage reading freezes | the frozen reading, mV |
| sensor_noise | cell whose reading is noisy | noise standard deviation, mV |
| sensor_sentinel | cell that reports 0xFFFE/0xFFFF | fraction of frames with a sentinel |
| probe_dropout | empty (a whole module's probes) | fraction of frames with invalid codes 254/255 |
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from pipelines.simulate.chemistry import curve

# Physical faults develop over RAMP_DAYS after onset (a weld loosens, a cell fades); a micro-short
# leaks at full strength from its onset, so its deviation grows linearly.
RAMP_DAYS = {"connection_resistance": 20.0, "capacity_fade": 30.0}

# Share of faulty vehicles per primary fault type.
FAULT_MIX = {
    "micro_short": 0.40,
    "connection_resistance": 0.18,
    "capacity_fade": 0.18,
    "sensor_stuck": 0.06,
    "sensor_noise": 0.06,
    "sensor_sentinel": 0.07,
    "probe_dropout": 0.05,
}
FAULT_TYPES = tuple(FAULT_MIX)
PHYSICAL_FAULTS = ("micro_short", "connection_resistance", "capacity_fade")
SENSOR_FAULTS = ("sensor_stuck", "sensor_noise", "sensor_sentinel", "probe_dropout")

# Reference mid-SOC slope (NMC at 50 % SOC) that turns mV/day into %/day for micro-shorts.
NMC_MID_SLOPE_MV_PER_PCT = float(curve("NMC").slope_mv_per_pct(0.5))


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault: 1-based cell (None for probe faults), type, onset date and severity."""

    fault_type: str
    cell: int | None
    onset_date: datetime.date
    severity: float
    probes: tuple[int, ...] = ()  # 1-based probes a probe_dropout takes out

    def __post_init__(self) -> None:
        """Reject unknown fault types early, naming the allowed ones."""
        if self.fault_type not in FAULT_MIX:
            raise ValueError(f"fault_type must be one of {FAULT_TYPES}, not {self.fault_type!r}")


def onset_day(fault: FaultSpec, start_date: datetime.date) -> float:
    """Onset as days after the simulation start (negative = before it)."""
    return float((fault.onset_date - start_date).days)


def progress(fault: FaultSpec, day: np.ndarray | float, start_date: datetime.date) -> np.ndarray:
    """How developed a fault is at `day` (days after start): 0 before onset, 1 when fully developed."""
    elapsed = np.asarray(day, dtype=np.float64) - onset_day(fault, start_date)
    ramp = RAMP_DAYS.get(fault.fault_type, 0.0)
    if ramp <= 0:
        return (elapsed >= 0).astype(np.float64)
    return np.clip(elapsed / ramp, 0.0, 1.0)


def micro_short_pct_per_day(mv_per_day_mid_soc: float) -> float:
    """Convert an NMC mid-SOC drift (mV/day) into the leak as % of capacity per day."""
    return mv_per_day_mid_soc / NMC_MID_SLOPE_MV_PER_PCT


def draw_fault(
    rng: np.random.Generator,
    n_cells: int,
    n_probes: int,
    start_date: datetime.date,
    days: int,
    chemistry: str,
    fault_type: str | None = None,
) -> FaultSpec:
    """Draw one fault: type from FAULT_MIX, a cell, an onset (some before the start) and a severity."""
    if fault_type is None:
        fault_type = str(rng.choice(FAULT_TYPES, p=np.array(list(FAULT_MIX.values()))))
    cell = int(rng.integers(1, n_cells + 1))
    if fault_type in PHYSICAL_FAULTS and rng.random() < 0.45:
        onset = -int(rng.integers(1, 31))  # already drifting when the data starts
    else:
        onset = int(rng.integers(0, max(1, int(days * 0.6))))
    onset_date = start_date + datetime.timedelta(days=onset)
    probes: tuple[int, ...] = ()
    if fault_type == "micro_short":
        severity = micro_short_pct_per_day(float(np.exp(rng.uniform(np.log(0.5), np.log(3.0)))))
    elif fault_type == "connection_resistance":
        severity = float(rng.uniform(0.8, 3.0))
    elif fault_type == "capacity_fade":
        severity = float(rng.uniform(0.06, 0.2))
    elif fault_type == "sensor_stuck":
        severity = float(np.rint(curve(chemistry).ocv_mv(rng.uniform(0.3, 0.7))))
    elif fault_type == "sensor_noise":
        severity = float(rng.uniform(8.0, 40.0))
    elif fault_type == "sensor_sentinel":
        severity = float(rng.uniform(0.02, 0.3))
    else:
        cell = None
        block = int(min(n_probes, rng.integers(2, 6)))
        first = int(rng.integers(1, n_probes - block + 2))
        probes = tuple(range(first, first + block))
        severity = float(rng.uniform(0.05, 1.0))
    return FaultSpec(fault_type, cell, onset_date, round(severity, 4), probes)
