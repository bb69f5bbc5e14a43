"""One vehicle end to end: duty plan → pack physics → sensors → BMS alarms, as numpy arrays."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines.schema import FRAME_SCHEMA
from pipelines.simulate import bms, duty, pack, sensors, thermal
from pipelines.simulate.chemistry import resistance_factor
from pipelines.simulate.fleet import VehicleSpec, vehicle_rng
from pipelines.simulate.params import SimulationParams

CHUNK_FRAMES = 8192  # frames per vectorised physics step: bounded memory, cache-friendly
EPOCH = datetime.date(1970, 1, 1)

# rng streams per vehicle (0 spec and 1 faults are drawn in fleet.py)
STREAM_DUTY, STREAM_PACK, STREAM_SENSORS, STREAM_CLIMATE, STREAM_DELIVERY = 2, 3, 4, 5, 6


@dataclass
class VehicleFrames:
    """A vehicle's frames in time order, as the BMS sends them (cells/probes carry raw sentinel codes)."""

    spec: VehicleSpec
    ts_ms: np.ndarray  # int64 UTC epoch ms
    vehicle_state: np.ndarray  # int8
    charge_state: np.ndarray  # int8
    speed_kmh: np.ndarray
    odometer_km: np.ndarray
    pack_voltage_v: np.ndarray
    pack_current_a: np.ndarray
    soc_pct: np.ndarray
    insulation_kohm: np.ndarray
    cell_mv: np.ndarray  # (frames, cells) uint16, 65534/65535 = abnormal/invalid
    probe_code: np.ndarray  # (frames, probes) uint8, °C + 40, 254/255 = abnormal/invalid
    alarm_level: np.ndarray  # int8
    alarm_flags: np.ndarray  # uint32
    true_range_mv: np.ndarray  # physics only: max − min of the true cell voltages (diagnostics, tests)
    measured_range_mv: np.ndarray  # what the BMS compared with its threshold
    pack_temp_c: np.ndarray  # true mean pack temperature (diagnostics)

    def __len__(self) -> int:
        """Number of frames."""
        return len(self.ts_ms)


@dataclass
class Timeline:
    """Concatenated active spells: per-frame arrays plus where each spell starts."""

    t_s: np.ndarray
    seg_idx: np.ndarray
    seg_starts: np.ndarray
    seg_kinds: list[str]
    current_a: np.ndarray
    speed_kmh: np.ndarray


def plan_and_run(spec: VehicleSpec, params: SimulationParams) -> tuple[Timeline, pack.PackSimulator, thermal.Climate]:
    """Plan every local day and step the pack through the spells (the only sequential part)."""
    duty_rng = vehicle_rng(params.seed, spec.index, STREAM_DUTY)
    pack_rng = vehicle_rng(params.seed, spec.index, STREAM_PACK)
    climate = thermal.draw_climate(vehicle_rng(params.seed, spec.index, STREAM_CLIMATE), spec.climate_offset_c,
                                   params.start_date, params.days)
    model = pack.draw_pack(pack_rng, spec, params.start_date)
    sim = pack.PackSimulator(model, pack.initial_soc(pack_rng, model, float(pack_rng.uniform(0.35, 0.9))))
    planner = duty.DayPlanner(spec, duty.draw_driver(duty_rng, spec), params.interval_s, climate.ambient_at)
    first_day = (params.start_date - EPOCH).days
    start_s = duty.local_midnight_s(first_day)
    dt = params.interval_s
    segments: list[duty.Segment] = []
    cursor = start_s
    last_end = start_s
    for day_number in range(first_day, first_day + params.days + 1):
        plan = planner.plan(duty_rng, day_number, sim.pack_soc, cursor)
        cursor = plan.cursor_s
        for seg in plan.segments:
            sim.park((seg.start_s - last_end) / 3600.0)
            sim.run_segment(
                day=(seg.start_s - first_day * 86_400) / 86_400.0,
                ah=float(seg.current_a.sum()) * dt / 3600.0,
                hours=seg.frames * dt / 3600.0,
                balance_h=seg.balance_h,
            )
            last_end = seg.end_s(dt)
            segments.append(seg)
    lengths = np.array([s.frames for s in segments], dtype=np.int64)
    seg_starts = (np.cumsum(lengths) - lengths).astype(np.int64)
    seg_idx = np.repeat(np.arange(len(segments)), lengths)
    offsets = np.arange(len(seg_idx)) - seg_starts[seg_idx]
    t_s = np.array([s.start_s for s in segments], dtype=np.int64)[seg_idx] + offsets * dt
    timeline = Timeline(
        t_s=t_s,
        seg_idx=seg_idx,
        seg_starts=seg_starts,
        seg_kinds=[s.kind for s in segments],
        current_a=np.concatenate([s.current_a for s in segments]) if segments else np.zeros(0),
        speed_kmh=np.concatenate([s.speed_kmh for s in segments]) if segments else np.zeros(0),
    )
    return timeline, sim, climate


def simulate_vehicle(
    spec: VehicleSpec, params: SimulationParams, thresholds: bms.AlarmThresholds = bms.DEFAULT_THRESHOLDS
) -> VehicleFrames:
    """Simulate one vehicle over the window; memory stays at one vehicle's frames."""
    dt = params.interval_s
    tl, sim, climate = plan_and_run(spec, params)
    table = pack.segment_table(sim)
    model = sim.model
    first_day = (params.start_date - EPOCH).days
    window_start_s = first_day * 86_400

    kinds = np.array(tl.seg_kinds)
    seg_start_t = tl.t_s[tl.seg_starts]
    states = np.array([duty.STATES[k] for k in tl.seg_kinds], dtype=np.int8).reshape(-1, 2)
    ambient = climate.ambient_c(tl.t_s)
    pack_temp = thermal.pack_temperature_c(
        tl.t_s, tl.current_a, tl.seg_starts, kinds == "charge_dc", ambient,
        spec.n_cells * (model.r0_mohm + model.r1_mohm), dt, float(climate.ambient_c(tl.t_s[0])) if len(tl.t_s) else 0.0,
    )
    polarisation = pack.polarisation_current_a(tl.current_a, tl.seg_idx, dt)
    step_ah = tl.current_a * dt / 3600.0
    drawn_before = np.cumsum(step_ah) - step_ah
    ah_in_seg = drawn_before - drawn_before[tl.seg_starts][tl.seg_idx]
    hours_in_seg = (tl.t_s - seg_start_t[tl.seg_idx]) / 3600.0
    odometer = spec.odometer_start_km + np.cumsum(tl.speed_kmh * dt / 3600.0) - tl.speed_kmh * dt / 3600.0

    keep = (tl.t_s >= window_start_s) & (tl.t_s < window_start_s + params.days * 86_400)
    idx = np.flatnonzero(keep)
    n_frames = len(idx)
    frame_day = (tl.t_s[idx] - window_start_s) / 86_400.0
    r_factor = resistance_factor(pack_temp[idx])

    sensor_rng = vehicle_rng(params.seed, spec.index, STREAM_SENSORS)
    channel_offset_mv = sensors.CHANNEL_OFFSET_MV * sensor_rng.standard_normal(spec.n_cells)
    cell_mv = np.empty((n_frames, spec.n_cells), dtype=np.uint16)
    pack_v = np.empty(n_frames)
    soc_mean = np.empty(n_frames)
    true_range = np.empty(n_frames, dtype=np.float32)
    for lo in range(0, n_frames, CHUNK_FRAMES):
        hi = min(n_frames, lo + CHUNK_FRAMES)
        rows = idx[lo:hi]
        volts, soc_mean[lo:hi] = pack.cell_voltages_mv(
            model, table, tl.seg_idx[rows], ah_in_seg[rows], hours_in_seg[rows],
            tl.current_a[rows], polarisation[rows], r_factor[lo:hi],
        )
        pack_v[lo:hi] = volts.sum(axis=1, dtype=np.float64) / 1000.0
        true_range[lo:hi] = volts.max(axis=1) - volts.min(axis=1)
        cell_mv[lo:hi] = sensors.measure_cells_mv(
            volts, sensor_rng, frame_day[lo:hi], spec.faults, params.start_date, channel_offset_mv
        )

    probe_rng = vehicle_rng(params.seed, spec.index, STREAM_SENSORS + 100)
    offsets_c = 0.3 * probe_rng.standard_normal(spec.n_probes)
    gradient = 0.06 * probe_rng.standard_normal(spec.n_probes)
    probe_c = thermal.probe_temperatures_c(pack_temp[idx], ambient[idx], offsets_c, gradient)
    probe_code = sensors.probe_codes(probe_c, probe_rng, frame_day, spec.faults, params.start_date)

    soc_pct = np.clip(np.rint(soc_mean * 100.0), 0.0, 100.0)
    measured_range = bms.cell_range_mv(cell_mv)
    alarms = bms.evaluate_alarms(measured_range, soc_pct, bms.probe_spread_c(probe_code), thresholds)

    seg_kind = kinds[tl.seg_idx[idx]]
    noise_rng = vehicle_rng(params.seed, spec.index, STREAM_SENSORS + 200)
    # Insulation drifts slowly with humidity and temperature; a DC charger's own monitor parallels it.
    segment_level = noise_rng.uniform(0.9, 1.1, len(tl.seg_kinds))[tl.seg_idx[idx]]
    insulation = spec.insulation_kohm * segment_level * np.where(seg_kind == "charge_dc", 0.6, 1.0)
    insulation = insulation * (1.0 + 0.004 * noise_rng.standard_normal(n_frames))
    pack_v_reported = np.round(pack_v + 0.15 * noise_rng.standard_normal(n_frames), 1)

    return VehicleFrames(
        spec=spec,
        ts_ms=tl.t_s[idx] * 1000,
        vehicle_state=states[tl.seg_idx[idx], 0],
        charge_state=states[tl.seg_idx[idx], 1],
        speed_kmh=tl.speed_kmh[idx],
        odometer_km=np.round(odometer[idx], 1),
        pack_voltage_v=pack_v_reported,
        pack_current_a=tl.current_a[idx],
        soc_pct=soc_pct,
        insulation_kohm=np.clip(np.rint(insulation), 0, 60_000),
        cell_mv=cell_mv,
        probe_code=probe_code,
        alarm_level=alarms.level,
        alarm_flags=alarms.flags,
        true_range_mv=true_range,
        measured_range_mv=measured_range,
        pack_temp_c=pack_temp[idx],
    )


def _list_array(values: np.ndarray, value_type: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A list<value_type> column from a (rows × width) matrix; items where `valid` is False become null."""
    rows, width = values.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    mask = None if valid is None else ~valid.reshape(-1)
    flat = pa.array(values.reshape(-1), type=value_type, mask=mask)
    return pa.ListArray.from_arrays(offsets, flat)


def to_frame_table(frames: VehicleFrames) -> pa.Table:
    """The frames in the canonical FRAME_SCHEMA: sentinel cells and invalid probes become null, probes in °C."""
    cells_valid = sensors.valid_cell_mask(frames.cell_mv)
    probes_valid = sensors.valid_probe_mask(frames.probe_code)
    probe_c = frames.probe_code.astype(np.int16) - sensors.TEMP_OFFSET_C
    columns = {
        "vin": pa.array([frames.spec.vin] * len(frames), pa.string()),
        "ts": pa.array(frames.ts_ms, pa.timestamp("ms", tz="UTC")),
        "vehicle_state": pa.array(frames.vehicle_state, pa.int8()),
        "charge_state": pa.array(frames.charge_state, pa.int8()),
        "speed_kmh": pa.array(frames.speed_kmh, pa.float64()),
        "odometer_km": pa.array(frames.odometer_km, pa.float64()),
        "pack_voltage_v": pa.array(frames.pack_voltage_v, pa.float64()),
        "pack_current_a": pa.array(frames.pack_current_a, pa.float64()),
        "soc_pct": pa.array(frames.soc_pct, pa.float64()),
        "insulation_kohm": pa.array(frames.insulation_kohm, pa.float64()),
        "cell_mv": _list_array(frames.cell_mv, pa.uint16(), cells_valid),
        "probe_temp_c": _list_array(probe_c, pa.int16(), probes_valid),
        "alarm_level": pa.array(frames.alarm_level, pa.int8()),
        "alarm_flags": pa.array(frames.alarm_flags, pa.uint32()),
    }
    return pa.Table.from_pydict(columns, schema=FRAME_SCHEMA)
