"""The fleet: vehicle specifications, ISO 3779 VINs and which vehicles carry faults."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.simulate.chemistry import dc_resistance_mohm
from pipelines.simulate.faults import FaultSpec, draw_fault
from pipelines.simulate.params import SimulationParams

VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # ISO 3779 never uses I, O or Q
VIN_TRANSLITERATION = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
MODEL_YEAR_CODES = {2019: "K", 2020: "L", 2021: "M", 2022: "N", 2023: "P", 2024: "R", 2025: "S"}
WMIS = ("LGX", "LNB", "LSJ", "LFV", "LVG", "LB3", "LMG", "LC0")  # Chinese manufacturer prefixes

SERIAL_STRIDE = 7919  # prime, so coprime with 1,000,000
USAGES = ("private_home", "private_public", "ride_hailing")  # home AC charger, public DC only, taxi


@dataclass(frozen=True)
class VehicleSpec:
    """One simulated vehicle: pack, body, usage, upload format and injected faults."""

    index: int
    vin: str
    chemistry: str
    n_cells: int
    n_probes: int
    capacity_ah: float
    usage: str
    mass_kg: float
    drag_area_m2: float
    climate_offset_c: float
    odometer_start_km: float
    insulation_kohm: float
    file_ext: str  # parquet | jsonl | jsonl.gz | csv | csv.gz
    faults: tuple[FaultSpec, ...] = ()

    @property
    def r0_mohm(self) -> float:
        """Mean cell DC resistance at 25 °C."""
        return dc_resistance_mohm(self.capacity_ah)


def vin_check_digit(vin: str) -> str:
    """ISO 3779 / FMVSS 565 check digit (position 9) of a 17-character VIN."""
    total = sum(VIN_TRANSLITERATION[ch] * weight for ch, weight in zip(vin, VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def is_valid_vin(vin: str) -> bool:
    """17 allowed characters and a matching check digit."""
    return len(vin) == 17 and all(ch in VIN_ALPHABET for ch in vin) and vin[8] == vin_check_digit(vin)


def make_vin(rng: np.random.Generator, serial: int) -> str:
    """A plausible VIN: Chinese WMI, random VDS, check digit, model year, plant, 6-digit serial."""
    wmi = WMIS[int(rng.integers(len(WMIS)))]
    vds = "".join(VIN_ALPHABET[i] for i in rng.integers(0, len(VIN_ALPHABET), 5))
    year = MODEL_YEAR_CODES[int(rng.integers(2019, 2026))]
    plant = VIN_ALPHABET[int(rng.integers(len(VIN_ALPHABET)))]
    draft = f"{wmi}{vds}0{year}{plant}{serial:06d}"
    return draft[:8] + vin_check_digit(draft) + draft[9:]


def file_ext_for(index: int, params: SimulationParams) -> str:
    """Upload format of a vehicle: `mixed` rotates parquet/jsonl/csv and gzips every other text one."""
    if params.shape == "wide_export":
        fmt = "csv"
    elif params.file_format == "mixed":
        fmt = ("parquet", "jsonl", "csv")[index % 3]
    else:
        fmt = params.file_format
    if fmt == "parquet":
        return fmt
    zipped = params.gzip or (params.file_format == "mixed" and (index // 3) % 2 == 1)
    return f"{fmt}.gz" if zipped else fmt


def vehicle_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """An independent generator per vehicle and purpose, so one vehicle never shifts another's draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, 1, index, stream]))


def draw_vehicle(params: SimulationParams, index: int, serial: int, faulty: bool) -> VehicleSpec:
    """Draw one vehicle's specification (and its faults when `faulty`)."""
    rng = vehicle_rng(params.seed, index, 0)
    chemistry = "NMC" if rng.random() < 0.55 else "LFP"
    if chemistry == "NMC":
        n_cells = int(rng.choice([84, 88, 90, 92, 95, 96, 100]))
        capacity_ah = float(rng.choice([100.0, 120.0, 135.0, 150.0, 160.0]))
    else:
        n_cells = int(rng.choice([96, 100, 102, 104, 106, 108]))
        capacity_ah = float(rng.choice([105.0, 120.0, 135.0, 150.0, 173.0, 202.0]))
    # One probe per 2–5 cells, as modules carry 1–3 sensors; never more probes than half the cells.
    n_probes = int(min(n_cells // 2, rng.integers(19, 46)))
    usage = str(rng.choice(USAGES, p=[0.45, 0.2, 0.35]))
    spec = VehicleSpec(
        index=index,
        vin=make_vin(rng, serial),
        chemistry=chemistry,
        n_cells=n_cells,
        n_probes=n_probes,
        capacity_ah=capacity_ah,
        usage=usage,
        mass_kg=float(rng.uniform(1500.0, 2300.0)),
        drag_area_m2=float(rng.uniform(0.55, 0.80)),
        climate_offset_c=float(rng.uniform(-6.0, 14.0)),
        odometer_start_km=float(np.round(rng.uniform(2_000.0, 90_000.0), 1)),
        insulation_kohm=float(np.round(np.exp(rng.uniform(np.log(1_500.0), np.log(20_000.0))))),
        file_ext=file_ext_for(index, params),
    )
    if not faulty:
        return spec
    fault_rng = vehicle_rng(params.seed, index, 1)
    faults = [draw_fault(fault_rng, n_cells, n_probes, params.start_date, params.days, chemistry)]
    if fault_rng.random() < 0.1:  # now and then a second, independent problem on another cell
        second = draw_fault(fault_rng, n_cells, n_probes, params.start_date, params.days, chemistry)
        if second.cell != faults[0].cell:
            faults.append(second)
    return VehicleSpec(**{**spec.__dict__, "faults": tuple(faults)})


def build_fleet(params: SimulationParams) -> list[VehicleSpec]:
    """Every vehicle of a run; exactly round(fault_fraction × vehicles) of them carry faults."""
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0]))
    n_faulty = int(round(params.fault_fraction * params.vehicles))
    faulty = set(rng.permutation(params.vehicles)[:n_faulty].tolist())
    # A stride coprime with 10^6 gives distinct serials that do not depend on the fleet size.
    base = int(np.random.default_rng(np.random.SeedSequence([params.seed, 2])).integers(1_000_000))
    serials = [(base + i * SERIAL_STRIDE) % 1_000_000 for i in range(params.vehicles)]
    return [draw_vehicle(params, i, serials[i], i in faulty) for i in range(params.vehicles)]
