"""Cell-level pack physics: per-cell SOC bookkeeping, passive balancing, and V = OCV(SOC_i) − I·R_i.

Every series cell carries the same current, so a cell's SOC within an active spell is its SOC at the
spell's start minus (Ah drawn + own leakage) / own capacity. The sequential part (one step per spell:
leakage while parked, balancing after a charge) is tiny; the per-frame part is vectorised over
frames × cells.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

import numpy as np

from pipelines.simulate.chemistry import OcvCurve, curve
from pipelines.simulate.faults import FaultSpec, progress
from pipelines.simulate.fleet import VehicleSpec

HOURS_PER_MONTH = 30.0 * 24.0
POLARISATION_TAU_S = 40.0  # diffusion/charge-transfer time constant of the RC branch
POLARISATION_SHARE = 0.6  # R1 / R0
BALANCE_CURRENT_A = 0.02  # passive bleed resistor current
BALANCE_DEADBAND_MV = 10.0  # cells within this of the lowest are left alone
TOP_ALIGNMENT_SOC = 0.9  # where the last balancing left the cells equal (start of the simulation)
# A cell that lost capacity while cycling around mid-SOC stays level with the others there: below it
# it runs lowest, above it highest (balancing at the top bleeds it back only slowly).
FADE_ALIGNMENT_SOC = 0.6
INITIAL_SOC_SCATTER = 0.005  # SOC std the balancing deadband leaves between cells
FADE_RESISTANCE_GAIN = 4.0  # a cell that lost 10 % capacity has ~40 % more resistance


@dataclass(frozen=True)
class PackModel:
    """A pack's fixed cell-to-cell spread: capacity, resistance, self-discharge."""

    chemistry: str
    capacity_ah: np.ndarray  # per cell, when new
    r_rel: np.ndarray  # per cell resistance relative to r0_mohm
    leak_a: np.ndarray  # normal self-discharge current per cell
    r0_mohm: float  # ohmic DC resistance of an average cell at 25 °C
    faults: tuple[FaultSpec, ...] = ()
    start_date: datetime.date = datetime.date(2026, 1, 1)

    @property
    def n_cells(self) -> int:
        """Number of series cells."""
        return len(self.capacity_ah)

    @property
    def curve(self) -> OcvCurve:
        """OCV curve of the pack's chemistry."""
        return curve(self.chemistry)

    @property
    def r1_mohm(self) -> float:
        """Polarisation resistance of an average cell at 25 °C."""
        return POLARISATION_SHARE * self.r0_mohm


def draw_pack(rng: np.random.Generator, spec: VehicleSpec, start_date: datetime.date) -> PackModel:
    """Cell spreads of a new pack: capacity ~0.25 % std, resistance 1–4 %, self-discharge 1–5 %/month."""
    n = spec.n_cells
    capacity = spec.capacity_ah * (1.0 + rng.uniform(0.002, 0.003) * rng.standard_normal(n))
    r_rel = 1.0 + rng.uniform(0.01, 0.04) * rng.standard_normal(n)
    monthly_pct = rng.uniform(1.0, 5.0) + rng.uniform(0.05, 0.2) * rng.standard_normal(n)
    leak_a = np.clip(monthly_pct, 0.5, None) / 100.0 * capacity / HOURS_PER_MONTH
    return PackModel(spec.chemistry, capacity, r_rel, leak_a, spec.r0_mohm, spec.faults, start_date)


@dataclass(frozen=True)
class CellEffects:
    """The physical faults' effect at one moment, for the affected cells only (index arrays, 0-based)."""

    cells: np.ndarray
    capacity_ah: np.ndarray
    leak_a: np.ndarray
    r_rel: np.ndarray
    extra_mohm: np.ndarray  # series resistance outside the cell (bad weld), not temperature-dependent


def affected_cells(model: PackModel) -> np.ndarray:
    """0-based cells whose physics a fault changes (sensor faults only change readings)."""
    cells = {f.cell - 1 for f in model.faults if f.fault_type in ("micro_short", "connection_resistance",
                                                                  "capacity_fade") and f.cell}
    return np.array(sorted(cells), dtype=np.int64)


def cell_effects(model: PackModel, day: float) -> CellEffects:
    """Capacity, leakage and resistance of the affected cells `day` days after the simulation start."""
    cells = affected_cells(model)
    capacity = model.capacity_ah[cells].copy()
    leak = model.leak_a[cells].copy()
    r_rel = model.r_rel[cells].copy()
    extra = np.zeros(len(cells))
    for fault in model.faults:
        if fault.cell is None or fault.cell - 1 not in cells:
            continue
        j = int(np.searchsorted(cells, fault.cell - 1))
        developed = float(progress(fault, day, model.start_date))
        if fault.fault_type == "micro_short":
            leak[j] += developed * fault.severity / 100.0 * capacity[j] / 24.0
        elif fault.fault_type == "capacity_fade":
            capacity[j] *= 1.0 - developed * fault.severity
            r_rel[j] *= 1.0 + FADE_RESISTANCE_GAIN * developed * fault.severity
        elif fault.fault_type == "connection_resistance":
            extra[j] += developed * fault.severity
    return CellEffects(cells, capacity, leak, r_rel, extra)


def initial_soc(rng: np.random.Generator, model: PackModel, pack_soc: float) -> np.ndarray:
    """Cell SOCs at the start: top-aligned by the last balancing, scattered within its deadband.

    Faded cells are level with the rest at FADE_ALIGNMENT_SOC instead.

    Micro-shorts that began before the start have already pulled their cell down (net of balancing).
    """
    effects = cell_effects(model, 0.0)
    capacity = model.capacity_ah.copy()
    capacity[effects.cells] = effects.capacity_ah
    mean_capacity = float(np.mean(model.capacity_ah))
    aligned_at = np.full(model.n_cells, TOP_ALIGNMENT_SOC)
    for fault in model.faults:
        if fault.fault_type == "capacity_fade" and fault.cell:
            aligned_at[fault.cell - 1] = FADE_ALIGNMENT_SOC
    soc = aligned_at - (aligned_at - pack_soc) * mean_capacity / capacity
    soc += INITIAL_SOC_SCATTER * rng.standard_normal(model.n_cells)
    for fault in model.faults:
        if fault.fault_type == "micro_short" and fault.cell:
            days_before = -min(0.0, (fault.onset_date - model.start_date).days)
            hidden = BALANCE_CURRENT_A * 0.7 / (fault.severity / 100.0 * capacity[fault.cell - 1])
            soc[fault.cell - 1] -= fault.severity / 100.0 * days_before * max(0.0, 1.0 - hidden)
    return soc


def balance(soc: np.ndarray, capacity_ah: np.ndarray, ocv: OcvCurve, hours: float) -> np.ndarray:
    """Passive balancing for `hours`: bleed every cell above (lowest + deadband), limited by the bleed current."""
    if hours <= 0:
        return soc
    rest_mv = ocv.ocv_mv(soc).astype(np.float64)
    floor_soc = float(ocv.soc_at_mv(rest_mv.min() + BALANCE_DEADBAND_MV))
    needed = np.clip(soc - floor_soc, 0.0, None)
    return soc - np.minimum(needed, BALANCE_CURRENT_A * hours / capacity_ah)


class PackSimulator:
    """Steps a pack from one active spell to the next and records each spell's starting cell SOCs."""

    def __init__(self, model: PackModel, soc: np.ndarray) -> None:
        self.model = model
        self.soc = soc.astype(np.float64)
        self.start_rows: list[np.ndarray] = []
        self.effects: list[CellEffects] = []
        self._capacity, self._leak = self._dense(cell_effects(model, 0.0))

    @property
    def pack_soc(self) -> float:
        """The SOC the BMS reports: the mean of the cells."""
        return float(np.mean(self.soc))

    def _dense(self, effects: CellEffects) -> tuple[np.ndarray, np.ndarray]:
        """Capacity and leakage of every cell with the faults applied."""
        capacity = self.model.capacity_ah.copy()
        leak = self.model.leak_a.copy()
        capacity[effects.cells] = effects.capacity_ah
        leak[effects.cells] = effects.leak_a
        return capacity, leak

    def run_segment(self, day: float, ah: float, hours: float, balance_h: float) -> None:
        """Record the spell's start, draw `ah` over `hours`, then balance for `balance_h` if it was a charge."""
        effects = cell_effects(self.model, day)
        self.start_rows.append(self.soc.astype(np.float32))
        self.effects.append(effects)
        self._capacity, self._leak = self._dense(effects)
        self.soc = self.soc - (ah + self._leak * hours) / self._capacity
        self.soc = balance(self.soc, self._capacity, self.model.curve, balance_h)

    def park(self, hours: float) -> None:
        """Parked, key off: only self-discharge (and any short) drains the cells."""
        if hours <= 0:
            return
        self.soc = self.soc - self._leak * hours / self._capacity


@dataclass
class SegmentTable:
    """Per-spell arrays the vectorised voltage step gathers from (K spells)."""

    soc0: np.ndarray  # (K, n) float32
    fault_cells: np.ndarray  # (m,) 0-based
    inv_capacity: np.ndarray  # (K, m) 1/Ah for the affected cells
    leak_a: np.ndarray  # (K, m)
    r_rel: np.ndarray  # (K, m)
    extra_mohm: np.ndarray  # (K, m)
    base_inv_capacity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    base_leak_per_ah: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def segment_table(sim: PackSimulator) -> SegmentTable:
    """Stack what `PackSimulator` recorded into arrays."""
    model = sim.model
    cells = affected_cells(model)
    k = len(sim.start_rows)
    return SegmentTable(
        soc0=np.stack(sim.start_rows) if k else np.zeros((0, model.n_cells), np.float32),
        fault_cells=cells,
        inv_capacity=np.array([1.0 / e.capacity_ah for e in sim.effects]).reshape(k, len(cells)),
        leak_a=np.array([e.leak_a for e in sim.effects]).reshape(k, len(cells)),
        r_rel=np.array([e.r_rel for e in sim.effects]).reshape(k, len(cells)),
        extra_mohm=np.array([e.extra_mohm for e in sim.effects]).reshape(k, len(cells)),
        base_inv_capacity=(1.0 / model.capacity_ah).astype(np.float32),
        base_leak_per_ah=(model.leak_a / model.capacity_ah).astype(np.float32),
    )


def polarisation_current_a(current_a: np.ndarray, seg_idx: np.ndarray, interval_s: int) -> np.ndarray:
    """Current through the RC branch: an exponentially weighted past of the current within the spell."""
    alpha = np.exp(-interval_s / POLARISATION_TAU_S)
    taps = max(1, int(np.ceil(np.log(0.01) / np.log(alpha))))
    out = (1.0 - alpha) * current_a
    for k in range(1, min(taps, len(current_a))):
        same = seg_idx[k:] == seg_idx[:-k]
        out[k:] += (1.0 - alpha) * alpha**k * np.where(same, current_a[:-k], 0.0)
    return out


def cell_voltages_mv(
    model: PackModel,
    table: SegmentTable,
    seg_idx: np.ndarray,
    ah_in_seg: np.ndarray,
    hours_in_seg: np.ndarray,
    current_a: np.ndarray,
    polarisation_a: np.ndarray,
    r_factor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """True cell voltages (frames × cells, float32 mV) = OCV(SOC_i) − I·R_i(T) − I_pol·R1_i(T), and mean SOC."""
    ah = ah_in_seg.astype(np.float32)
    hours = hours_in_seg.astype(np.float32)
    soc = table.soc0[seg_idx]
    soc -= ah[:, None] * table.base_inv_capacity[None, :]
    soc -= hours[:, None] * table.base_leak_per_ah[None, :]
    for j, cell in enumerate(table.fault_cells):
        inv_c = table.inv_capacity[seg_idx, j]
        soc[:, cell] = table.soc0[seg_idx, cell] - ah * inv_c - hours * table.leak_a[seg_idx, j] * inv_c
    volts = model.curve.ocv_mv(soc)
    soc_mean = soc.mean(axis=1, dtype=np.float64)
    drop_mv = ((current_a * model.r0_mohm + polarisation_a * model.r1_mohm) * r_factor).astype(np.float32)
    volts -= drop_mv[:, None] * model.r_rel.astype(np.float32)[None, :]
    for j, cell in enumerate(table.fault_cells):
        extra = drop_mv * (table.r_rel[seg_idx, j] - model.r_rel[cell]) + current_a * table.extra_mohm[seg_idx, j]
        volts[:, cell] -= extra.astype(np.float32)
    return volts, soc_mean
