"""What the BMS measures: quantised, noisy cell voltages and probe codes, with sensor faults applied."""

from __future__ import annotations

import datetime

import numpy as np

from pipelines.simulate.faults import FaultSpec, onset_day

CELL_NOISE_MV = 0.8  # ADC noise before the 1 mV quantisation
CHANNEL_OFFSET_MV = 1.5  # fixed per-channel error of the measurement front end (std)
PROBE_NOISE_C = 0.25
INVALID_MV = 0xFFFF  # GB/T 32960 two-byte "invalid"
ABNORMAL_MV = 0xFFFE  # two-byte "abnormal"
MAX_VALID_MV = 0xFFFD
INVALID_CODE = 0xFF  # one-byte "invalid"
ABNORMAL_CODE = 0xFE
TEMP_OFFSET_C = 40  # probe code = °C + 40
MAX_VALID_CODE = 250

# Standard-normal quantiles at 1024 equally likely levels: random bytes through this table give
# Gaussian noise far faster than a normal generator, and indistinguishable after 1 mV rounding.
_LEVELS = 1024
_GRID = (np.arange(_LEVELS) + 0.5) / _LEVELS


def _normal_quantile(p: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    q = np.minimum(p, 1 - p)
    r = np.sqrt(-2 * np.log(q))
    tail = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
        (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1
    )
    m = p - 0.5
    s = m * m
    central = (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * m / (
        ((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1
    )
    return np.where(q < 0.02425, np.where(p < 0.5, tail, -tail), central)


NORMAL_TABLE = _normal_quantile(_GRID).astype(np.float32)


def fast_normal(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise (float32) with standard deviation `sigma`, from a 1024-level table."""
    n = int(np.prod(shape))
    idx = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16) & np.uint16(_LEVELS - 1)
    return (NORMAL_TABLE * np.float32(sigma))[idx].reshape(shape)


def _active(fault: FaultSpec, frame_day: np.ndarray, start_date: datetime.date) -> np.ndarray:
    """Frames at or after the fault's onset."""
    return frame_day >= onset_day(fault, start_date)


def measure_cells_mv(
    true_mv: np.ndarray,
    rng: np.random.Generator,
    frame_day: np.ndarray,
    faults: tuple[FaultSpec, ...],
    start_date: datetime.date,
    channel_offset_mv: np.ndarray | None = None,
) -> np.ndarray:
    """Cell readings (frames × cells, uint16 mV) as sent: offset, noise, 1 mV steps, stuck/noisy/sentinel cells."""
    reading = fast_normal(rng, true_mv.shape, CELL_NOISE_MV)
    reading += true_mv
    if channel_offset_mv is not None:
        reading += channel_offset_mv.astype(np.float32)[None, :]
    sensor_faults = [f for f in faults if f.cell and f.fault_type.startswith("sensor_")]
    for fault in sensor_faults:
        if fault.fault_type == "sensor_noise":
            active = _active(fault, frame_day, start_date)
            reading[:, fault.cell - 1] += active * rng.normal(0.0, fault.severity, len(frame_day)).astype(np.float32)
    np.rint(reading, out=reading)
    np.clip(reading, 0, MAX_VALID_MV, out=reading)
    out = reading.astype(np.uint16)
    for fault in sensor_faults:
        active = _active(fault, frame_day, start_date)
        col = fault.cell - 1
        if fault.fault_type == "sensor_stuck":
            out[active, col] = np.uint16(fault.severity)
        elif fault.fault_type == "sensor_sentinel":
            hit = active & (rng.random(len(frame_day)) < fault.severity)
            code = np.where(rng.random(len(frame_day)) < 0.7, INVALID_MV, ABNORMAL_MV).astype(np.uint16)
            out[hit, col] = code[hit]
    return out


def probe_codes(
    temps_c: np.ndarray,
    rng: np.random.Generator,
    frame_day: np.ndarray,
    faults: tuple[FaultSpec, ...],
    start_date: datetime.date,
) -> np.ndarray:
    """Probe readings (frames × probes) as raw GB/T codes (°C + 40); dropped-out probes read 254/255."""
    reading = fast_normal(rng, temps_c.shape, PROBE_NOISE_C)
    reading += temps_c + TEMP_OFFSET_C
    np.rint(reading, out=reading)
    out = np.clip(reading, 0, MAX_VALID_CODE).astype(np.uint8)
    for fault in faults:
        if fault.fault_type != "probe_dropout" or not fault.probes:
            continue
        hit = _active(fault, frame_day, start_date) & (rng.random(len(frame_day)) < fault.severity)
        code = np.where(rng.random(len(frame_day)) < 0.8, INVALID_CODE, ABNORMAL_CODE).astype(np.uint8)
        cols = np.array(fault.probes) - 1
        out[np.ix_(hit, cols)] = code[hit][:, None]
    return out


def valid_cell_mask(cell_mv: np.ndarray) -> np.ndarray:
    """True where a reading is a voltage, not a sentinel."""
    return cell_mv <= MAX_VALID_MV


def valid_probe_mask(codes: np.ndarray) -> np.ndarray:
    """True where a probe code is a temperature, not 254/255."""
    return codes <= MAX_VALID_CODE
