"""Which daily columns a window carries for each of the 14 context days, and the model's two feature sets."""

from __future__ import annotations

CONTEXT_DAYS = 14  # features from as_of - 14 ... as_of - 1
HORIZON_DAYS = 14  # label: an alarm on any day as_of ... as_of + 13

# The reference solution's six daily means, in its order and units (V, A, V, V, °C, °C).
SIGNALS6 = ("total_voltage", "total_current", "cell_max_voltage", "cell_min_voltage", "max_temperature",
            "min_temperature")

# Everything numeric in daily that describes the pack's state (the suspect's index is categorical: the window
# carries the latest one as `suspect_cell`, outside the features).
FULL_SIGNALS = SIGNALS6 + (
    "cell_range_mean_mv", "cell_range_p95_mv", "cell_range_max_mv",
    "cell_range_rest_mean_mv", "cell_range_rest_p95_mv", "cell_range_rest_max_mv",
    "cell_range_load_mean_mv", "cell_range_load_p95_mv", "cell_range_load_max_mv",
    "probe_spread_mean_c", "probe_spread_max_c",
    "suspect_cell_dev_mv", "suspect_cell_dev_rest_mv", "suspect_cell_dev_load_mv", "suspect_cell_z",
    "suspect_cell_dev_7d_mv", "suspect_cell_z_7d",
    "frame_count", "hours_covered", "alarm",
)

# Daily columns that need an expression to become a number in the window.
SIGNAL_EXPRESSIONS = {"alarm": "cast(d.alarm as integer)"}

FEATURE_SETS = {"signals6": SIGNALS6, "full": FULL_SIGNALS}


def lag_column(signal: str, days_before: int) -> str:
    """`total_voltage_lag14` is total_voltage on as_of - 14 days."""
    return f"{signal}_lag{days_before}"


def feature_columns(feature_set: str) -> list[str]:
    """Window columns of a feature set, oldest day first and the signals in order within a day (signals6: 84)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set {feature_set!r}: expected one of {', '.join(FEATURE_SETS)}")
    signals = FEATURE_SETS[feature_set]
    return [lag_column(s, k) for k in range(CONTEXT_DAYS, 0, -1) for s in signals]
