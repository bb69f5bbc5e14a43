"""BMS alarm logic per frame: thresholds with release hysteresis and an N-frame debounce, vectorised.

General alarm flag bits (GB/T 32960.3): 0 temperature difference, 4 SOC low, 10 cell consistency poor.
The standard names the flags; the thresholds are a manufacturer's calibration, chosen here so healthy
packs (range ≤ ~150 mV even at the lowest SOC) never trip and drifting cells do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.schema import CELL_CONSISTENCY_ALARM_MASK
from pipelines.simulate.sensors import valid_cell_mask, valid_probe_mask

TEMP_DIFF_MASK = 1 << 0
SOC_LOW_MASK = 1 << 4


@dataclass(frozen=True)
class AlarmThresholds:
    """One manufacturer's calibration."""

    range_set_mv: float = 300.0
    range_release_mv: float = 250.0
    range_level2_mv: float = 500.0
    debounce_frames: int = 3
    soc_low_set_pct: float = 10.0
    soc_low_release_pct: float = 13.0
    temp_diff_set_c: float = 10.0
    temp_diff_release_c: float = 7.0


DEFAULT_THRESHOLDS = AlarmThresholds()


def runs_at_least(mask: np.ndarray, n: int) -> np.ndarray:
    """True where this frame and the n − 1 before it are all True (rolling-sum debounce)."""
    if n <= 1:
        return mask.astype(bool)
    counts = np.cumsum(mask, dtype=np.int64)
    window = counts.copy()
    window[n:] -= counts[:-n]
    out = window >= n
    out[: n - 1] = False
    return out


def hysteresis_state(value: np.ndarray, set_at: float, release_below: float, debounce: int) -> np.ndarray:
    """Alarm state per frame: sets after `debounce` frames ≥ set_at, clears after `debounce` frames < release_below.

    NaN (nothing measurable) neither sets nor clears. Set/clear events are forward-filled, so the
    state holds between them — no per-frame loop.
    """
    if release_below > set_at:
        raise ValueError(f"release threshold {release_below} must not exceed set threshold {set_at}")
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        set_event = runs_at_least(value >= set_at, debounce)
        clear_event = runs_at_least(value < release_below, debounce)
    event_index = np.where(set_event | clear_event, np.arange(len(value)), -1)
    last_event = np.maximum.accumulate(event_index) if len(value) else event_index
    return np.where(last_event >= 0, set_event[np.maximum(last_event, 0)], False)


def _valid_spread(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Max − min per row over the valid items; NaN with fewer than two valid.

    Sentinels are the largest codes of their type, so the min never picks one while a valid item exists.
    """
    counts = valid.sum(axis=1)
    high = values.max(axis=1) if valid.all() else np.where(valid, values, 0).max(axis=1)
    spread = high.astype(np.float64) - values.min(axis=1).astype(np.float64)
    spread[counts < 2] = np.nan
    return spread


def cell_range_mv(cell_mv: np.ndarray) -> np.ndarray:
    """Max − min of the valid readings per frame (sentinels excluded); NaN with fewer than two valid."""
    return _valid_spread(cell_mv, valid_cell_mask(cell_mv))


def probe_spread_c(codes: np.ndarray) -> np.ndarray:
    """Max − min of the valid probe temperatures per frame; NaN with fewer than two valid."""
    return _valid_spread(codes, valid_probe_mask(codes))


@dataclass(frozen=True)
class Alarms:
    """Per-frame alarm outputs."""

    flags: np.ndarray  # uint32 general alarm flags
    level: np.ndarray  # int8 highest alarm level


def evaluate_alarms(
    range_mv: np.ndarray,
    soc_pct: np.ndarray,
    probe_spread: np.ndarray,
    thresholds: AlarmThresholds = DEFAULT_THRESHOLDS,
) -> Alarms:
    """General alarm flags and level for a vehicle's frames in time order."""
    t = thresholds
    consistency = hysteresis_state(range_mv, t.range_set_mv, t.range_release_mv, t.debounce_frames)
    severe = hysteresis_state(range_mv, t.range_level2_mv, t.range_level2_mv - (t.range_set_mv - t.range_release_mv),
                              t.debounce_frames) & consistency
    soc_low = hysteresis_state(-np.asarray(soc_pct, dtype=np.float64), -t.soc_low_set_pct,
                               -t.soc_low_release_pct, t.debounce_frames)
    temp_diff = hysteresis_state(probe_spread, t.temp_diff_set_c, t.temp_diff_release_c, t.debounce_frames)
    flags = (
        consistency * np.uint32(CELL_CONSISTENCY_ALARM_MASK)
        | soc_low * np.uint32(SOC_LOW_MASK)
        | temp_diff * np.uint32(TEMP_DIFF_MASK)
    ).astype(np.uint32)
    level = np.where(severe, 2, np.where(flags > 0, 1, 0)).astype(np.int8)
    return Alarms(flags, level)
