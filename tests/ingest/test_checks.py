"""Row rules of the frame contract: each rejected row keeps the first rule it broke, with column, value and reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipelines.ingest.checks import check_frames
from pipelines.ingest.rejections import Rejections
from pipelines.schema import FRAME_SCHEMA

from .builders import VIN_A, VIN_B, utc

EARLIEST = datetime(2016, 1, 1, tzinfo=UTC)
LATEST = datetime(2026, 2, 2, tzinfo=UTC)


def frame(**overrides) -> dict:
    row = {"vin": VIN_A, "ts": utc("2026-01-05T00:00:00Z"), "vehicle_state": 1, "charge_state": 3, "speed_kmh": 40.0,
           "odometer_km": 1000.0, "pack_voltage_v": 350.0, "pack_current_a": 10.0, "soc_pct": 50.0,
           "insulation_kohm": 5000.0, "cell_mv": [3650, 3651, 3652, 3653], "probe_temp_c": [25, 26], "alarm_level": 0,
           "alarm_flags": 0}
    row.update(overrides)
    return row


def check(rows: list[dict]) -> list[tuple[int, str, str, str, str]]:
    """(row index, rule, column, value, reason) of every rejected row."""
    table = pa.Table.from_pylist(rows, schema=FRAME_SCHEMA)
    rejections = Rejections(table.num_rows)
    check_frames(table, rejections, EARLIEST, LATEST)
    quarantine = rejections.to_table(table, "k", "sid", lambda rows: rows, LATEST)
    return [(r["row_number"], r["rule"], r["column"], r["value"], r["reason"]) for r in quarantine.to_pylist()]


def test_good_frames_pass() -> None:
    assert check([frame(), frame(vin=VIN_B), frame(ts=utc("2026-02-02T00:00:00Z"), probe_temp_c=None)]) == []


RULE_CASES = [
    ({"vin": "LSVAB1234"}, "vin_format", "vin", "LSVAB1234",
     "VIN 'LSVAB1234' is not 17 characters of A–Z (no I, O, Q) and 0–9"),
    ({"vin": "LSVAB1234CD56789O"}, "vin_format", "vin", "LSVAB1234CD56789O",
     "VIN 'LSVAB1234CD56789O' is not 17 characters of A–Z (no I, O, Q) and 0–9"),
    ({"ts": utc("2099-01-01T00:00:00Z")}, "ts_future", "ts", "2099-01-01T00:00:00.000Z",
     "timestamp 2099-01-01T00:00:00.000Z is in the future (later than 2026-02-02 00:00 UTC)"),
    ({"ts": utc("2015-12-31T23:59:59Z")}, "ts_too_old", "ts", "2015-12-31T23:59:59.000Z",
     "timestamp 2015-12-31T23:59:59.000Z is before 2016-01-01, older than any GB/T 32960-2016 report"),
    ({"pack_current_a": None}, "required", "pack_current_a", "", "pack_current_a is required but empty"),
    ({"cell_mv": None}, "required", "cell_mv", "", "cell_mv is required but empty"),
    ({"cell_mv": [None, None]}, "cells_missing", "cell_mv", "", "frame carries no valid cell voltage"),
    ({"soc_pct": 100.5}, "soc_range", "soc_pct", "100.5",
     "soc_pct = 100.5 is outside 0…100 (SOC is a percentage, 0–100)"),
    ({"pack_voltage_v": -1.0}, "pack_voltage_range", "pack_voltage_v", "-1",
     "pack_voltage_v = -1 is outside 0…1000 (pack voltage is 0–1000 V in GB/T 32960)"),
    ({"speed_kmh": 300.0}, "speed_range", "speed_kmh", "300", "speed_kmh = 300 is outside 0…250 (speed is 0–250 km/h)"),
    ({"alarm_level": 4}, "alarm_level_range", "alarm_level", "4", "alarm_level = 4 is outside 0…3 (alarm level is 0–3)"),
    ({"cell_mv": [3650, 900]}, "cell_mv_range", "cell_min_mv", "900",
     "cell_min_mv = 900 is outside 1000…5000 (every valid cell voltage is 1.000–5.000 V)"),
    ({"probe_temp_c": [25, 126]}, "probe_temp_range", "probe_max_c", "126",
     "probe_max_c = 126 is outside -40…125 (every valid probe temperature is −40…125 °C)"),
    ({"charge_state": 7}, "charge_state_code", "charge_state", "7",
     "charge_state = 7 is not one of (1, 2, 3, 4) (charge state is 1, 2, 3 or 4)"),
    ({"vehicle_state": 0}, "vehicle_state_code", "vehicle_state", "0",
     "vehicle_state = 0 is not one of (1, 2, 3) (vehicle state is 1 started, 2 off, 3 other)"),
]


@pytest.mark.parametrize(("overrides", "rule", "column", "value", "reason"), RULE_CASES,
                         ids=[f"{case[1]}-{i}" for i, case in enumerate(RULE_CASES)])
def test_rule_names_column_value_and_reason(overrides: dict, rule: str, column: str, value: str, reason: str) -> None:
    bad = frame(ts=utc("2026-01-05T00:00:10Z"), **{k: v for k, v in overrides.items() if k != "ts"})
    if "ts" in overrides:
        bad["ts"] = overrides["ts"]
    assert check([frame(), bad]) == [(1, rule, column, value, reason)]


def test_first_rule_wins() -> None:
    """A row breaking several rules is reported once, for the first (VIN before range)."""
    assert [r[1] for r in check([frame(vin="SHORT", soc_pct=500.0, charge_state=9)])] == ["vin_format"]


def test_cell_count_change_is_judged_per_vehicle() -> None:
    rows = [frame(ts=utc(f"2026-01-05T00:00:0{i}Z")) for i in range(3)]
    rows.append(frame(ts=utc("2026-01-05T00:00:05Z"), cell_mv=[3650, 3651, 3652]))
    rows += [frame(vin=VIN_B, ts=utc(f"2026-01-05T00:00:0{i}Z"), cell_mv=[3650] * 96) for i in range(2)]
    assert check(rows) == [(3, "cell_count_changed", "cell_mv", "3",
                            "frame has 3 cell voltages; this vehicle's other frames in the file have 4")]


def test_cell_count_ignores_rows_already_rejected() -> None:
    """A row rejected for another rule does not vote on the vehicle's usual cell count."""
    rows = [frame(soc_pct=200.0, cell_mv=[3650] * 3, ts=utc(f"2026-01-05T00:00:0{i}Z")) for i in range(3)]
    rows.append(frame(ts=utc("2026-01-05T00:00:09Z")))
    assert [r[1] for r in check(rows)] == ["soc_range"] * 3
