"""Duty cycles: per vehicle and day, trips (speed → current), charging sessions and key-on idle.

Only active time produces frames: driving, a few minutes of key-on idle before a trip, charging, and
10–30 minutes at rest after a charge completes (charge_state 4). Parked-off time produces none.
Current is positive for discharge, negative while charging (GB/T 32960 exports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.simulate.chemistry import curve
from pipelines.simulate.fleet import VehicleSpec

LOCAL_UTC_OFFSET_S = 8 * 3600  # Beijing time, no daylight saving since 1991
AIR_DENSITY = 1.2  # kg/m³
ROLLING_COEFF = 0.011
G = 9.81
DRIVE_EFFICIENCY = 0.88  # battery → wheel
REGEN_EFFICIENCY = 0.6  # wheel → battery while braking
MAX_DISCHARGE_W = 160_000.0
MAX_REGEN_W = 50_000.0
MIN_GAP_S = 120  # a vehicle is parked at least this long between two active spells

# (vehicle_state, charge_state) per segment kind, GB/T 32960 codes
STATES = {
    "idle": (1, 3),
    "drive": (1, 3),
    "charge_ac": (2, 1),
    "charge_dc": (3, 1),
    "charge_rest": (2, 4),
}
CRUISE_KMH = {"urban": 36.0, "mixed": 58.0, "highway": 98.0}
STOPS_PER_HOUR = {"urban": 22.0, "mixed": 9.0, "highway": 0.5}


@dataclass
class Segment:
    """One active spell with frames every interval_s from start_s."""

    kind: str
    start_s: int
    current_a: np.ndarray
    speed_kmh: np.ndarray
    balance_h: float = 0.0  # passive balancing time that follows this spell (charge-complete rest)

    @property
    def frames(self) -> int:
        """Number of frames."""
        return len(self.current_a)

    def end_s(self, interval_s: int) -> int:
        """Moment the spell ends: one interval after its last frame."""
        return self.start_s + self.frames * interval_s


@dataclass(frozen=True)
class Driver:
    """A vehicle's habits, drawn once: when it drives, how far, how and when it charges."""

    depart_h: float
    return_h: float
    commute_min: float
    target_soc_ac: float
    target_soc_dc: float
    ac_current_a: float
    dc_current_a: float
    home_threshold: float


def draw_driver(rng: np.random.Generator, spec: VehicleSpec) -> Driver:
    """Draw a vehicle's habits."""
    return Driver(
        depart_h=float(rng.uniform(6.6, 9.0)),
        return_h=float(rng.uniform(16.8, 19.5)),
        commute_min=float(rng.uniform(15.0, 50.0)),
        target_soc_ac=float(rng.choice([0.85, 0.9, 0.95, 1.0], p=[0.25, 0.35, 0.2, 0.2])),
        target_soc_dc=float(rng.uniform(0.78, 0.92)),
        ac_current_a=float(rng.uniform(10.0, 30.0)),
        dc_current_a=float(min(rng.uniform(100.0, 150.0), 1.1 * spec.capacity_ah)),
        home_threshold=float(rng.uniform(0.35, 0.7)),
    )


def local_midnight_s(day_number: int) -> int:
    """UTC epoch seconds of local (Beijing) midnight of the day `day_number` days after 1970-01-01."""
    return day_number * 86_400 - LOCAL_UTC_OFFSET_S


def pack_voltage_v(spec: VehicleSpec, soc: np.ndarray | float) -> np.ndarray:
    """Rough pack voltage used to turn power into current (the sum of mean-cell OCVs)."""
    return spec.n_cells * curve(spec.chemistry).ocv_mv(np.clip(soc, 0.0, 1.0)).astype(np.float64) / 1000.0


def aux_power_w(ambient_c: float) -> float:
    """Accessory load: electronics plus cabin heating below 16 °C or cooling above 26 °C."""
    return 350.0 + 110.0 * max(0.0, 16.0 - ambient_c) + 120.0 * max(0.0, ambient_c - 26.0)


def speed_profile_kmh(rng: np.random.Generator, n: int, interval_s: int, style: str) -> np.ndarray:
    """Speed at each frame of a trip: smoothed random cruise speed with traffic stops, 0 at both ends."""
    cruise = CRUISE_KMH[style] * rng.uniform(0.85, 1.15)
    width = max(2, int(round(120 / interval_s)))
    noise = np.convolve(rng.standard_normal(n + width - 1), np.ones(width) / np.sqrt(width), mode="valid")
    speed = np.clip(cruise * (1.0 + 0.22 * noise), 0.0, min(130.0, 1.35 * cruise))
    stop_prob = min(0.5, STOPS_PER_HOUR[style] * interval_s / 3600.0)
    stop_len = max(1, int(round(40 / interval_s)))
    stops = np.convolve((rng.random(n) < stop_prob).astype(np.float64), np.ones(stop_len))[:n] > 0
    near_stop = np.convolve(stops.astype(np.float64), np.ones(3), mode="same") > 0
    speed = np.where(stops, 0.0, np.where(near_stop, 0.5 * speed, speed))
    speed[0] = 0.0
    speed[-1] = 0.0
    if n > 3:
        speed[1] *= 0.5
        speed[-2] *= 0.5
    return np.round(speed, 1)


def traction_current_a(
    rng: np.random.Generator, spec: VehicleSpec, speed_kmh: np.ndarray, interval_s: int, soc: float, ambient_c: float
) -> np.ndarray:
    """Battery current of a trip from the speed trace: road load, acceleration, regen braking, accessories."""
    v = speed_kmh / 3.6
    accel = np.gradient(v, interval_s) if len(v) > 1 else np.zeros_like(v)
    # Frames are instants of a continuous drive: add the within-interval acceleration we cannot see.
    accel = np.clip(accel + rng.normal(0.0, 0.35, len(v)) * (v > 0), -3.0, 2.5)
    wheel_w = (
        spec.mass_kg * accel * v
        + 0.5 * AIR_DENSITY * spec.drag_area_m2 * v**3
        + ROLLING_COEFF * spec.mass_kg * G * v
    )
    battery_w = np.where(wheel_w > 0, wheel_w / DRIVE_EFFICIENCY, wheel_w * REGEN_EFFICIENCY)
    battery_w = np.clip(battery_w, -MAX_REGEN_W, MAX_DISCHARGE_W) + aux_power_w(ambient_c)
    return battery_w / pack_voltage_v(spec, soc)


def drive_segment(
    rng: np.random.Generator,
    spec: VehicleSpec,
    start_s: int,
    duration_s: float,
    style: str,
    soc: float,
    reserve_soc: float,
    interval_s: int,
    ambient_c: float,
) -> tuple[Segment, float, bool]:
    """A trip; it ends early (ran_low=True) when the SOC reaches the driver's reserve."""
    n = max(3, int(duration_s // interval_s))
    speed = speed_profile_kmh(rng, n, interval_s, style)
    current = traction_current_a(rng, spec, speed, interval_s, soc, ambient_c)
    soc_path = soc - np.cumsum(current) * interval_s / 3600.0 / spec.capacity_ah
    low = np.flatnonzero(soc_path < reserve_soc)
    ran_low = bool(len(low))
    if ran_low:
        n = max(3, int(low[0]) + 1)
        speed = speed[:n].copy()
        current = current[:n]
        speed[-1] = 0.0
    current = np.round(current, 1)
    soc_end = soc - float(current.sum()) * interval_s / 3600.0 / spec.capacity_ah
    return Segment("drive", start_s, current, speed), soc_end, ran_low


def idle_segment(rng: np.random.Generator, spec: VehicleSpec, start_s: int, duration_s: float,
                 interval_s: int, soc: float, ambient_c: float) -> Segment:
    """Key-on, standing still: only the accessory load draws current."""
    n = max(1, int(duration_s // interval_s))
    base_a = aux_power_w(ambient_c) / float(pack_voltage_v(spec, soc))
    current = np.round(base_a * (1.0 + 0.1 * rng.standard_normal(n)), 1)
    return Segment("idle", start_s, current, np.zeros(n))


def charge_current_a(
    soc0: float, target: float, cc_a: float, taper_soc: float, min_a: float, capacity_ah: float, interval_s: int
) -> np.ndarray:
    """Charging current magnitude per frame: constant current, then an exponential taper near the top."""
    if target <= soc0:
        return np.zeros(0)
    cc_end = min(target, taper_soc)
    t_cc_s = max(0.0, (cc_end - soc0) * capacity_ah / cc_a * 3600.0)
    rate_per_h = cc_a / (capacity_ah * (1.0 - taper_soc))  # dSOC/dt = k (1 − SOC) in the taper
    t_taper_s = 0.0
    if target > taper_soc:
        stop_a = max(min_a, cc_a * (1.0 - target) / (1.0 - taper_soc))
        t_taper_s = np.log(cc_a / stop_a) / rate_per_h * 3600.0
    n = max(1, int(np.ceil((t_cc_s + t_taper_s) / interval_s)))
    t = np.arange(n) * interval_s
    current = np.where(t < t_cc_s, cc_a, cc_a * np.exp(-rate_per_h * np.maximum(t - t_cc_s, 0.0) / 3600.0))
    return current


def charge_segments(
    rng: np.random.Generator,
    spec: VehicleSpec,
    start_s: int,
    soc: float,
    target: float,
    fast: bool,
    driver: Driver,
    interval_s: int,
    ambient_c: float,
) -> tuple[list[Segment], float]:
    """A charging session (AC slow or DC fast) to a target SOC, then 10–30 min at rest, charge complete."""
    if fast:
        cc_a = driver.dc_current_a * (0.6 if ambient_c < -5.0 else 1.0)  # cold packs take less current
        taper_soc, min_a, kind = rng.uniform(0.74, 0.82), 8.0, "charge_dc"
    else:
        cc_a = driver.ac_current_a
        taper_soc, min_a, kind = rng.uniform(0.9, 0.95), 2.0, "charge_ac"
    magnitude = charge_current_a(soc, target, cc_a, taper_soc, min_a, spec.capacity_ah, interval_s)
    if len(magnitude) == 0:
        return [], soc
    magnitude = magnitude * (1.0 + 0.008 * rng.standard_normal(len(magnitude)))
    magnitude[0] *= 0.5  # the charger ramps up
    current = -np.round(magnitude, 1)
    soc_end = soc - float(current.sum()) * interval_s / 3600.0 / spec.capacity_ah
    charge = Segment(kind, start_s, current, np.zeros(len(current)))
    rest_s = rng.uniform(600.0, 1800.0)
    rest_n = max(1, int(rest_s // interval_s))
    rest = Segment("charge_rest", charge.end_s(interval_s), np.zeros(rest_n), np.zeros(rest_n),
                   balance_h=rest_s / 3600.0 + float(rng.uniform(0.2, 0.6)))
    return [charge, rest], soc_end


@dataclass
class DayPlan:
    """The active spells of one local day, in time order, and the duty's own SOC estimate after them."""

    segments: list[Segment]
    soc_end: float
    cursor_s: int  # the vehicle is busy until this moment


class DayPlanner:
    """Plans one local day at a time for one vehicle, carrying the SOC and busy-until time across days."""

    def __init__(self, spec: VehicleSpec, driver: Driver, interval_s: int,
                 ambient_at: Callable[[float], float]) -> None:
        self.spec = spec
        self.driver = driver
        self.interval_s = interval_s
        self.ambient_at = ambient_at
        self._segments: list[Segment] = []
        self._soc = 0.0
        self._cursor = 0

    def plan(self, rng: np.random.Generator, day_number: int, soc: float, cursor_s: int) -> DayPlan:
        """Trips and charges of the local day `day_number` (days since 1970-01-01, Beijing time)."""
        self._segments = []
        self._soc = soc
        self._cursor = cursor_s
        midnight = local_midnight_s(day_number)
        weekday = (day_number + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        if self.spec.usage == "ride_hailing":
            self._ride_hailing_day(rng, midnight)
        else:
            self._private_day(rng, midnight, weekend=weekday >= 5)
        return DayPlan(self._segments, self._soc, self._cursor)

    def _start_at(self, planned_s: float) -> int:
        """The planned moment, or the earliest moment after the previous spell plus a parked gap."""
        return int(max(planned_s, self._cursor + MIN_GAP_S))

    def _add(self, segments: list[Segment]) -> None:
        """Append spells and move the busy-until cursor."""
        for seg in segments:
            self._segments.append(seg)
            self._cursor = seg.end_s(self.interval_s)

    def _trip(self, rng: np.random.Generator, planned_s: float, duration_s: float, style: str,
              reserve_soc: float) -> bool:
        """Key-on idle, then a drive; a fast charge follows when the SOC hit the reserve. Returns ran_low."""
        if self._soc < reserve_soc + 0.03:  # not enough left for the trip: fast-charge first
            self._charge(rng, planned_s - rng.uniform(900.0, 2700.0), fast=True)
        start = self._start_at(planned_s)
        ambient = self.ambient_at(start)
        idle = idle_segment(rng, self.spec, start, rng.uniform(60.0, 300.0), self.interval_s, self._soc, ambient)
        self._add([idle])
        self._soc -= float(idle.current_a.sum()) * self.interval_s / 3600.0 / self.spec.capacity_ah
        drive, self._soc, ran_low = drive_segment(
            rng, self.spec, self._cursor, duration_s, style, self._soc, reserve_soc, self.interval_s, ambient
        )
        self._add([drive])
        if ran_low:
            self._charge(rng, self._cursor + rng.uniform(180.0, 900.0), fast=True)
        return ran_low

    def _charge(self, rng: np.random.Generator, planned_s: float, fast: bool) -> None:
        """A charging session to the driver's habitual target."""
        start = self._start_at(planned_s)
        target = self.driver.target_soc_dc if fast else self.driver.target_soc_ac
        segments, self._soc = charge_segments(
            rng, self.spec, start, self._soc, target, fast, self.driver, self.interval_s, self.ambient_at(start)
        )
        self._add(segments)

    def _private_day(self, rng: np.random.Generator, midnight: int, weekend: bool) -> None:
        """Commutes on weekdays, errands and the odd long trip at weekends; charge at home or at a DC station."""
        d = self.driver
        # Without a home charger a driver runs the pack down, then fast-charges.
        reserve = 0.1 if self.spec.usage == "private_home" else float(rng.uniform(0.08, 0.3))
        trips: list[tuple[float, float, str]] = []
        if not weekend:
            trips.append((d.depart_h + rng.normal(0, 0.25), d.commute_min * rng.uniform(0.8, 1.25), "mixed"))
            trips.append((d.return_h + rng.normal(0, 0.4), d.commute_min * rng.uniform(0.8, 1.4), "mixed"))
            if rng.random() < 0.35:
                trips.append((rng.uniform(19.5, 21.0), rng.uniform(10.0, 40.0), "urban"))
        else:
            for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.2, 0.3, 0.35, 0.15]))):
                trips.append((rng.uniform(9.0, 20.0), rng.uniform(10.0, 60.0), "urban"))
            if rng.random() < 0.25:
                trips.append((rng.uniform(8.0, 11.0), rng.uniform(90.0, 210.0), "highway"))
        for hour, minutes, style in sorted(trips):
            self._trip(rng, midnight + hour * 3600.0, minutes * 60.0, style, reserve)
        if self.spec.usage == "private_home" and self._soc < d.home_threshold * rng.uniform(0.9, 1.1):
            late = rng.random() < 0.4  # off-peak tariff: plug in at 22:00
            planned = midnight + 22 * 3600.0 if late else self._cursor + rng.uniform(600.0, 3600.0)
            self._charge(rng, planned, fast=False)

    def _ride_hailing_day(self, rng: np.random.Generator, midnight: int) -> None:
        """One long shift of short trips with waits; fast charges whenever the SOC hits the day's reserve."""
        if rng.random() < 0.1:
            return  # day off
        reserve = float(rng.uniform(0.08, 0.3))
        shift_start = midnight + rng.uniform(6.0, 9.5) * 3600.0
        shift_end = shift_start + rng.uniform(7.0, 11.0) * 3600.0
        planned = shift_start
        while planned < shift_end:
            style = "urban" if rng.random() < 0.7 else "mixed"
            self._trip(rng, planned, rng.uniform(8.0, 35.0) * 60.0, style, reserve)
            planned = self._cursor + rng.uniform(120.0, 2400.0)
        if self._soc < 0.45:
            self._charge(rng, self._cursor + rng.uniform(300.0, 1800.0), fast=True)
