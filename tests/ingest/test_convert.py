"""Mapping raw columns to the frame contract: units, GB/T codes, sentinels, time zones, and their manifest counts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipelines.ingest.convert import apply_mapping, to_float
from pipelines.ingest.mapping import load_mappings
from pipelines.ingest.readers import read_object
from pipelines.ingest.rejections import Rejections
from pipelines.schema import FRAME_SCHEMA

from .builders import (
    VIN_A,
    VIN_B,
    entry,
    frames,
    landing_key,
    native_csv_bytes,
    native_jsonl_bytes,
    native_parquet_bytes,
    native_row,
    put,
    put_native_csv,
    put_native_parquet,
    put_wide_csv,
    quarantine_rows,
    run_ingest,
    utc,
    wide_csv_bytes,
    wide_row,
    wide_rows,
)

MAPPINGS = load_mappings()
WIDE_KEY = landing_key(VIN_B, source="wide_export")


def mapped(key: str, data: bytes, mapping: str):
    raw = read_object(key, data).table
    rejections = Rejections(raw.num_rows)
    return apply_mapping(raw, MAPPINGS[mapping], key, rejections), rejections


def test_native_csv_maps_every_column() -> None:
    batch, rejections = mapped("a.csv", native_csv_bytes([native_row(alarm_flags=0x400, alarm_level=2)]), "simulator")
    assert rejections.count == 0
    assert batch.frames.schema == FRAME_SCHEMA
    assert batch.frames.to_pylist() == [{
        "vin": VIN_A, "ts": utc("2026-01-05T00:00:00Z"), "vehicle_state": 1, "charge_state": 3, "speed_kmh": 42.5,
        "odometer_km": 12345.6, "pack_voltage_v": 350.4, "pack_current_a": 20.5, "soc_pct": 55.0,
        "insulation_kohm": 5000.0, "cell_mv": [3650, 3651, 3652, 3653], "probe_temp_c": [25, 26], "alarm_level": 2,
        "alarm_flags": 0x400,
    }]
    assert batch.sentinels == {} and batch.warnings == []


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_native_list_columns_map_like_csv(fmt: str) -> None:
    rows = [native_row(cells=[3650, 65535, 3652], probes=[65, 255, 30])]
    data = native_jsonl_bytes(rows) if fmt == "jsonl" else native_parquet_bytes(rows)
    batch, _ = mapped(f"a.{fmt}", data, "simulator")
    frame = batch.frames.to_pylist()[0]
    assert frame["cell_mv"] == [3650, None, 3652]
    assert frame["probe_temp_c"] == [25, None, -10]
    assert frame["ts"] == utc("2026-01-05T00:00:00Z")
    assert batch.sentinels == {"cell_mv": 1, "probe_temp_c": 1}


def test_wide_export_volts_to_millivolts_in_cell_order() -> None:
    volts = [3.601 + i / 1000 for i in range(12)]  # V_1 = 3.601 … V_12 = 3.612: V_10 must follow V_9
    batch, rejections = mapped(WIDE_KEY, wide_csv_bytes([wide_row(volts=volts)]), "wide_export")
    assert rejections.count == 0
    assert batch.frames["cell_mv"].to_pylist() == [[3601, 3602, 3603, 3604, 3605, 3606, 3607, 3608, 3609, 3610, 3611, 3612]]
    assert batch.frames["vin"].to_pylist() == [VIN_B]  # from the file name


def test_wide_columns_in_shuffled_header_order() -> None:
    header = "tboxTime,V_10,V_2,V_1,V_9,V_3,V_4,V_5,V_6,V_7,V_8,BMSBatteryVoltage,BMSBatteryCurrent,vehBMSPackSOC\n"
    line = "2026-01-05 08:00:00,3.610,3.602,3.601,3.609,3.603,3.604,3.605,3.606,3.607,3.608,350,10,50\n"
    batch, _ = mapped(WIDE_KEY, (header + line).encode(), "wide_export")
    assert batch.frames["cell_mv"].to_pylist() == [[3601, 3602, 3603, 3604, 3605, 3606, 3607, 3608, 3609, 3610]]


@pytest.mark.parametrize(
    ("local", "utc_text"),
    [
        ("2026-01-05 08:00:00", "2026-01-05T00:00:00Z"),
        ("2026-01-05 07:59:59", "2026-01-04T23:59:59Z"),
        ("2026-01-01 00:30:00", "2025-12-31T16:30:00Z"),
    ],
)
def test_wide_export_local_time_to_utc(local: str, utc_text: str) -> None:
    batch, _ = mapped(WIDE_KEY, wide_csv_bytes([wide_row(local)]), "wide_export")
    assert batch.frames["ts"].to_pylist() == [utc(utc_text)]


def test_iso_timestamps_with_offset_and_without_zone() -> None:
    rows = [native_row(ts="2026-01-05T08:00:00+08:00"), native_row(ts="2026-01-05T00:00:05"),
            native_row(ts="2026-01-05 00:00:07.250Z")]
    batch, rejections = mapped("a.csv", native_csv_bytes(rows), "simulator")
    assert rejections.count == 0
    assert batch.frames["ts"].to_pylist() == [utc("2026-01-05T00:00:00Z"), utc("2026-01-05T00:00:05Z"),
                                             utc("2026-01-05T00:00:07.250Z")]


def test_simulator_probe_codes_have_a_40_degree_offset() -> None:
    batch, _ = mapped("a.csv", native_csv_bytes([native_row(probes=[0, 40, 65, 165])]), "simulator")
    assert batch.frames["probe_temp_c"].to_pylist() == [[-40, 0, 25, 125]]


@pytest.mark.parametrize(
    ("temps", "expected", "read_as"),
    [
        ([[65, 66], [64, 67]], [[25, 26], [24, 27]], "GB/T codes (°C + 40)"),
        ([[25, 26], [24, 27]], [[25, 26], [24, 27]], "°C"),
        ([[30, 254], [31, 32]], [[-10, None], [-9, -8]], "GB/T codes (°C + 40)"),  # a code marker decides: codes
        ([[25, 215], [24, 26], [23, 27]], [[25, None], [24, 26], [23, 27]], "°C"),  # 255 as °C reads 215
    ],
    ids=["codes", "celsius", "codes_by_marker", "celsius_marker"],
)
def test_wide_export_probe_encoding_auto(temps, expected, read_as: str) -> None:
    rows = [wide_row(f"2026-01-05 08:00:0{i}", temps=t) for i, t in enumerate(temps)]
    batch, _ = mapped(WIDE_KEY, wide_csv_bytes(rows), "wide_export")
    assert batch.frames["probe_temp_c"].to_pylist() == expected
    assert f"T_n: probe temperatures read as {read_as}" in batch.warnings


def test_wide_export_cell_sentinels_become_null() -> None:
    rows = [wide_row(volts=[3.650, 0, 5.000, 65.535, 65.534, 3.660])]
    batch, rejections = mapped(WIDE_KEY, wide_csv_bytes(rows), "wide_export")
    assert rejections.count == 0
    assert batch.frames["cell_mv"].to_pylist() == [[3650, None, None, None, None, 3660]]
    assert batch.sentinels == {"cell_mv": 4}


def test_alarm_flags_sentinel_and_scalar_sentinels() -> None:
    rows = [native_row(alarm_flags=0xFFFFFFFF, charge_state=254), native_row(ts="2026-01-05T00:00:10Z", alarm_flags=0xFFFFFFFE)]
    batch, _ = mapped("a.csv", native_csv_bytes(rows), "simulator")
    assert batch.frames["alarm_flags"].to_pylist() == [None, None]
    assert batch.frames["charge_state"].to_pylist() == [None, 3]
    assert batch.sentinels == {"alarm_flags": 2, "charge_state": 1}
    assert batch.frames.schema.field("alarm_flags").type == pa.uint32()


def test_short_rows_end_at_their_last_value() -> None:
    """In a wide file a row with fewer cells leaves trailing columns empty; its list is shorter, not padded."""
    data = native_csv_bytes([native_row(), native_row(ts="2026-01-05T00:00:10Z", cells=[3650, None, 3652])])
    batch, _ = mapped("a.csv", data, "simulator")
    assert batch.frames["cell_mv"].to_pylist() == [[3650, 3651, 3652, 3653], [3650, None, 3652]]


def test_conversion_rejections_name_column_and_value() -> None:
    rows = [
        native_row(ts="2026-01-05T00:00:00Z", soc_pct="lots"),
        native_row(ts="2026-01-05T00:00:01Z", vehicle_state=1.5),
        native_row(ts="2026-01-05T00:00:02Z", alarm_level=300),
        native_row(ts="2026-01-05T00:00:03Z", cells=[3650, 9000, 3652, 3653]),
        native_row(ts="2026-01-05T00:00:04Z", probes=[65, 200]),
        native_row(ts="not a time"),
        native_row(ts=None),
    ]
    batch, rejections = mapped("a.csv", native_csv_bytes(rows), "simulator")
    table = rejections.to_table(read_object("a.csv", native_csv_bytes(rows)).table, "k", "sid", lambda rows: rows + 2, utc("2026-02-01T00:00:00Z"))
    got = [(r["row_number"], r["rule"], r["column"], r["value"], r["reason"]) for r in table.to_pylist()]
    assert got == [
        (2, "number_format", "soc_pct", "lots", "soc_pct = 'lots' is not a number"),
        (3, "whole_number", "vehicle_state", "1.5", "vehicle_state = 1.5 is not a whole number"),
        (4, "integer_range", "alarm_level", "300", "alarm_level = 300 does not fit int8 (-128…127)"),
        (5, "cell_mv_range", "cell_mv", "V_n[2] = 9000 mV", "V_n[2] = 9000 mV is outside 1000…5000 mV"),
        (6, "probe_temp_range", "probe_temp_c", "T_n[2] = 160 °C", "T_n[2] = 160 °C is outside -40…125 °C"),
        (7, "ts_format", "ts", "not a time", "'not a time' is not a valid iso8601 timestamp"),
        (8, "ts_missing", "ts", "(empty)", "timestamp is missing"),
    ]
    assert rejections.by_rule()["number_format"] == 1
    assert batch.frames["soc_pct"].to_pylist()[0] is None


def test_to_float_reports_missing_and_unparseable() -> None:
    values, missing, bad = to_float(pa.chunked_array([pa.array([" 1.5", "", None, "abc", "nan", "-inf"])]))
    assert missing.tolist() == [False, True, True, False, False, False]
    assert bad.tolist() == [False, False, False, True, False, False]
    assert values[0] == 1.5 and np.isnan(values[4]) and values[5] == -np.inf
    values, _, _ = to_float(pa.array([1, 2], pa.int64()))
    values[0] = 7.0  # callers may write into the result
    assert values.tolist() == [7.0, 2.0]


# ---------------------------------------------------------------- sentinels through ingest: frames and manifest counts

def test_native_sentinels_counted_in_manifest(lake) -> None:
    rows = [
        native_row(ts="2026-01-05T00:00:00Z", cells=[3650, 65534, 3652, 65535], probes=[65, 254]),
        native_row(ts="2026-01-05T00:00:10Z", probes=[255, 66], alarm_flags=4294967295),
        native_row(ts="2026-01-05T00:00:20Z"),
    ]
    csv_key = put_native_csv(lake, rows)
    parquet_key = put_native_parquet(lake, [{**r, "vin": VIN_B} for r in rows])
    summary = run_ingest(lake)

    expected = {"cell_mv": 2, "probe_temp_c": 2, "alarm_flags": 1}
    assert entry(lake, csv_key).sentinels == expected
    assert entry(lake, parquet_key).sentinels == expected
    assert summary.sentinels == {"cell_mv": 4, "probe_temp_c": 4, "alarm_flags": 2}
    assert summary.accepted == 6 and summary.quarantined == 0
    for vin in (VIN_A, VIN_B):
        kept = [r for r in frames(lake).to_pylist() if r["vin"] == vin]
        assert [r["cell_mv"] for r in kept] == [[3650, None, 3652, None], [3650, 3651, 3652, 3653], [3650, 3651, 3652, 3653]]
        assert [r["probe_temp_c"] for r in kept] == [[25, None], [None, 26], [25, 26]]
        assert [r["alarm_flags"] for r in kept] == [0, None, 0]


def test_wide_export_sentinels_counted_in_manifest(lake) -> None:
    rows = wide_rows(3, volts=[3.650, 3.651, 3.652, 3.653], temps=[65, 66])
    rows[0]["volts"] = [3.650, 0, 3.652, 3.653]
    rows[1]["volts"] = [5.000, 3.651, 65.535, 3.653]
    rows[1]["temps"] = [254, 66]
    rows[2]["BMSWarningInformation"] = 4294967295
    key = put_wide_csv(lake, rows)
    run_ingest(lake)

    record = entry(lake, key)
    assert record.sentinels == {"cell_mv": 3, "probe_temp_c": 1, "alarm_flags": 1}
    assert record.accepted == 3 and quarantine_rows(lake, key) == []
    assert record.warnings == ["T_n: probe temperatures read as GB/T codes (°C + 40)"]
    kept = frames(lake).to_pylist()
    assert [r["cell_mv"] for r in kept] == [[3650, None, 3652, 3653], [None, 3651, None, 3653], [3650, 3651, 3652, 3653]]
    assert [r["probe_temp_c"] for r in kept] == [[25, 26], [None, 26], [25, 26]]
    assert [r["alarm_flags"] for r in kept] == [0, 0, None]
    assert [r["ts"] for r in kept] == [utc("2026-01-05T00:00:00Z"), utc("2026-01-05T00:00:10Z"), utc("2026-01-05T00:00:20Z")]
    assert {r["vehicle_state"] for r in kept} == {None}  # wide_export has no vehicle state


def test_frame_with_only_sentinel_cells_is_quarantined(lake) -> None:
    key = put(lake, landing_key(), native_csv_bytes([native_row(), native_row(ts="2026-01-05T00:00:10Z", cells=[65535] * 4)]))
    run_ingest(lake)
    (record,) = quarantine_rows(lake, key)
    assert (record["row_number"], record["rule"], record["reason"]) == (3, "cells_missing", "frame carries no valid cell voltage")
    assert entry(lake, key).sentinels == {"cell_mv": 4}


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet", "wide"])
def test_list_metrics_from_conversion_equal_frame_metrics_of_the_frames(file_format: str) -> None:
    from pipelines.quality.rules import METRIC_COLUMNS, frame_metrics

    rows = [native_row(ts=f"2026-01-05T00:00:{i:02d}Z", cells=cells, probes=probes) for i, (cells, probes) in enumerate([
        ([3650, 3651, 3652, 3653], [62, 63]),
        ([3650, 65535, 3652, 65534], [254, 63]),  # sentinels inside
        ([65535, 65535, 65535, 65535], [255, 255]),  # no valid item at all
        ([3650, 9000, 3652, 3653], [62, 63]),  # out of range: nulled and rejected
        ([3650, 3651, 3652], [62]),  # shorter row
    ])]
    encoders = {"csv": native_csv_bytes, "jsonl": native_jsonl_bytes, "parquet": native_parquet_bytes}
    if file_format == "wide":
        data, key, mapping = wide_csv_bytes(wide_rows(4) + [wide_row(volts=(3.650, 65.535, 0, 5.0))]), "x/LSJW1234567890123_a.csv", "wide_export"
    else:
        data, key, mapping = encoders[file_format](rows), f"a.{file_format}", "simulator"
    raw = read_object(key, data).table
    mapped = apply_mapping(raw, load_mappings()[mapping], key, Rejections(raw.num_rows))
    fast = frame_metrics(mapped.frames, mapped.list_metrics)
    reference = frame_metrics(mapped.frames)
    for column in METRIC_COLUMNS:
        assert fast[column].to_pylist() == reference[column].to_pylist(), column
