"""The contract's rules and the per-frame metrics both ingest and Great Expectations judge."""

from __future__ import annotations

import math
import re

import pyarrow as pa

from pipelines.quality.rules import METRIC_COLUMNS, RANGE_RULES, VIN_PATTERN, frame_metrics


def test_frame_metrics_of_lists_with_nulls_empties_and_missing_lists():
    frames = pa.table({
        "vin": ["A", "B", "C", "D"],
        "cell_mv": pa.array([[3700, None, 3650], [], None, [None]], pa.list_(pa.uint16())),
        "probe_temp_c": pa.array([[20, -3], [19], None, []], pa.list_(pa.int16())),
    })
    metrics = frame_metrics(frames).to_pydict()
    assert metrics["vin"] == ["A", "B", "C", "D"]
    assert metrics["cell_count"] == [3, 0, 0, 1]
    assert metrics["cell_valid_count"] == [2, 0, 0, 0]
    assert metrics["cell_min_mv"] == [3650.0, None, None, None]
    assert metrics["cell_max_mv"] == [3700.0, None, None, None]
    assert metrics["probe_min_c"] == [-3.0, 19.0, None, None]
    assert metrics["probe_max_c"] == [20.0, 19.0, None, None]


def test_known_metrics_are_used_as_given():
    frames = pa.table({"vin": ["A"], "cell_mv": pa.array([[3700]], pa.list_(pa.uint16())),
                       "probe_temp_c": pa.array([[20]], pa.list_(pa.int16()))})
    known = {name: [7] if "count" in name else [math.nan] for name in METRIC_COLUMNS}
    metrics = frame_metrics(frames, known).to_pydict()
    assert metrics["cell_count"] == [7] and metrics["cell_min_mv"] == [None]


def test_vin_pattern_follows_iso_3779():
    assert re.match(VIN_PATTERN, "LSJW1234567890123")
    for bad in ("LSJW123456789012", "LSJW12345678901234", "LSJWI234567890123", "lsjw1234567890123"):
        assert not re.match(VIN_PATTERN, bad)


def test_every_range_rule_names_a_column_ingest_can_judge():
    frame_columns = {"soc_pct", "pack_voltage_v", "pack_current_a", "speed_kmh", "odometer_km", "insulation_kohm",
                     "alarm_level", "alarm_flags"}
    assert {rule.column for rule in RANGE_RULES} <= frame_columns | set(METRIC_COLUMNS)
    assert all(rule.low < rule.high for rule in RANGE_RULES)
