"""Daily summaries in the reference format into the daily zone: mapping, rules, quarantine, duplicates, re-import."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.ingest.daily_summaries import SUMMARY_COLUMNS, DailyImportSummary, import_daily_file
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.storage.daily_zone import read_daily, write_computed, write_imported
from pipelines.storage.lake import Lake

VIN_A = "LSVAB1234CD567890"
VIN_B = "LFV2A2156K3000001"
NOW = datetime(2026, 2, 1, tzinfo=UTC)  # with the default 24 h clock skew, 2026-02-02 is the last valid date
HEADER = ",".join(SUMMARY_COLUMNS)
SIGNALS = ("total_voltage", "total_current", "cell_max_voltage", "cell_min_voltage", "max_temperature", "min_temperature")


def row(vin: str = VIN_A, day: str = "2026-01-05", voltage: str = "350.4", current: str = "12.5",
        cell_max: str = "3.712", cell_min: str = "3.701", t_max: str = "31", t_min: str = "25", label: str = "0") -> list[str]:
    """One summary row as text, in header order."""
    return [vin, day, voltage, current, cell_max, cell_min, t_max, t_min, label]


def write_summary(path: Path, rows: list[list[str]], header: str = HEADER, compress: bool = False) -> Path:
    text = "\n".join([header, *(",".join(r) for r in rows)]) + "\n"
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if compress else text.encode())
    return path


def run(path: Path, lake: Lake, now: datetime = NOW) -> DailyImportSummary:
    summary = import_daily_file(path, lake, now=now)
    assert summary.reconciles(), summary
    return summary


def daily_rows(lake: Lake) -> list[dict]:
    return read_daily(lake).to_pylist()


def quarantine(lake: Lake, summary: DailyImportSummary) -> list[dict]:
    return lake.read_parquet(summary.quarantine_key).to_pylist()


def files_on_disk(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_good_file_lands_in_daily_with_values_mapped(tmp_path, lake):
    path = write_summary(tmp_path / "summaries.csv", [
        row(),
        row(day="2026-01-06", voltage="351.0", current="-40.5", cell_max="3.725", cell_min="3.690", t_max="33.5",
            t_min="24", label="1"),
        row(vin=VIN_B.lower(), day=" 2026-01-05 ", voltage=" 398.2 ", label="1.0"),
    ])
    summary = run(path, lake)

    import_id = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert summary == DailyImportSummary(
        "summaries.csv", import_id, rows_in=3, accepted=3, quarantined=0, duplicates=0, empty_days=0,
        dates=["2026-01-05", "2026-01-06"],
        keys=[f"daily/dt=2026-01-05/import-{import_id}.parquet", f"daily/dt=2026-01-06/import-{import_id}.parquet"],
        first_date="2026-01-05", last_date="2026-01-06")
    assert all(lake.exists(key) for key in summary.keys)
    assert lake.read_parquet(summary.keys[0]).schema == DAILY_SCHEMA
    assert not lake.list("quarantine")

    got = daily_rows(lake)
    assert [(r["vin"], r["dt"]) for r in got] == [(VIN_B, date(2026, 1, 5)), (VIN_A, date(2026, 1, 5)), (VIN_A, date(2026, 1, 6))]
    second = got[2]
    assert [second[c] for c in SIGNALS] == [351.0, -40.5, 3.725, 3.690, 33.5, 24.0]  # V stays V, A stays A, °C
    assert (got[0]["total_voltage"], got[0]["alarm"], got[1]["alarm"], second["alarm"]) == (398.2, True, False, True)
    others = set(DAILY_SCHEMA.names) - {"vin", "dt", "alarm", *SIGNALS}
    assert "alarm_frames" in others and all(r[c] is None for r in got for c in others)


def test_empty_days_are_kept_with_null_signals_and_counted(tmp_path, lake):
    path = write_summary(tmp_path / "gaps.csv", [
        row(),
        row(day="2026-01-06", voltage="", current="", cell_max="", cell_min="", t_max="", t_min="", label=""),
        row(day="2026-01-07", voltage="", current="", cell_max="", cell_min="", t_max="", t_min="", label="0"),
        row(day="2026-01-08", t_max="", t_min=""),  # some signals missing: accepted, not an empty day
    ])
    summary = run(path, lake)

    assert (summary.rows_in, summary.accepted, summary.quarantined, summary.empty_days) == (4, 4, 0, 2)
    got = {r["dt"].isoformat(): r for r in daily_rows(lake)}
    assert [got["2026-01-06"][c] for c in (*SIGNALS, "alarm")] == [None] * 7
    assert (got["2026-01-07"]["total_voltage"], got["2026-01-07"]["alarm"]) == (None, False)
    assert (got["2026-01-08"]["total_voltage"], got["2026-01-08"]["max_temperature"]) == (350.4, None)


# (row, rule, column, value, text the reason must contain)
RULE_CASES = {
    "vin_too_short": (row(vin="LSVAB1234CD5678"), "vin_format", "vin", "LSVAB1234CD5678",
                      "VIN 'LSVAB1234CD5678' is not 17 characters"),
    "vin_with_letter_o": (row(vin="LSVAB1234CD56789O"), "vin_format", "vin", "LSVAB1234CD56789O", "(no I, O, Q)"),
    "vin_empty": (row(vin=""), "vin_format", "vin", "", "VIN '' is not 17 characters"),
    "date_empty": (row(day=""), "date_missing", "dt", "", "Date is empty"),
    "date_not_iso": (row(day="05/01/2026"), "date_format", "dt", "05/01/2026",
                     "Date '05/01/2026' is not a real date written YYYY-MM-DD"),
    "date_with_time": (row(day="2026-01-05T00:00:00"), "date_format", "dt", "2026-01-05T00:00:00", "YYYY-MM-DD"),
    "date_not_real": (row(day="2026-02-30"), "date_format", "dt", "2026-02-30", "not a real date"),
    "date_future": (row(day="2026-02-03"), "date_future", "dt", "2026-02-03",
                    "Date 2026-02-03 is in the future (later than 2026-02-02)"),
    "date_too_old": (row(day="2015-12-31"), "date_too_old", "dt", "2015-12-31",
                     "Date 2015-12-31 is before 2016-01-01 (CELLGUARD_EARLIEST_TS)"),
    "voltage_text": (row(voltage="350,4V"), None, None, None, None),  # the comma splits the row: see below
    "voltage_not_a_number": (row(voltage="n/a"), "number_format", "total_voltage", "n/a",
                             "TotalVoltage = 'n/a' is not a number"),
    "current_infinite": (row(current="inf"), "finite", "total_current", "inf", "TotalCurrent = inf is not a finite number"),
    "temperature_nan": (row(t_min="nan"), "finite", "min_temperature", "nan", "MinTemperature = nan is not a finite number"),
    "voltage_too_high": (row(voltage="1200"), "total_voltage_range", "total_voltage", "1200",
                         "TotalVoltage = 1200 V is outside 0…1000 V"),
    "voltage_negative": (row(voltage="-1"), "total_voltage_range", "total_voltage", "-1", "is outside 0…1000 V"),
    "current_too_low": (row(current="-1500"), "total_current_range", "total_current", "-1500",
                        "TotalCurrent = -1500 A is outside -1000…1000 A"),
    "cell_in_millivolts": (row(cell_max="3712"), "cell_voltage_range", "cell_max_voltage", "3712",
                           "CellMaxVoltage = 3712 V is outside 0.5…5 V (cell voltages are in volts, not mV)"),
    "cell_min_too_low": (row(cell_min="0.2"), "cell_voltage_range", "cell_min_voltage", "0.2", "outside 0.5…5 V"),
    "cell_min_above_max": (row(cell_max="3.60", cell_min="3.65"), "cell_voltage_order", "cell_min_voltage", "3.65",
                           "CellMinVoltage 3.65 V is above CellMaxVoltage 3.6 V"),
    "temperature_too_high": (row(t_max="250"), "temperature_range", "max_temperature", "250",
                             "MaxTemperature = 250 °C is outside -40…210 °C"),
    "temperature_too_low": (row(t_min="-41"), "temperature_range", "min_temperature", "-41", "outside -40…210 °C"),
    "temperature_min_above_max": (row(t_max="20", t_min="25"), "temperature_order", "min_temperature", "25",
                                  "MinTemperature 25 °C is above MaxTemperature 20 °C"),
    "label_two": (row(label="2"), "label_value", "alarm", "2", "Label = '2' is not empty, 0 or 1"),
    "label_word": (row(label="yes"), "label_value", "alarm", "yes", "Label = 'yes' is not empty, 0 or 1"),
}
RULE_CASES.pop("voltage_text")


@pytest.mark.parametrize("case", RULE_CASES, ids=list(RULE_CASES))
def test_each_rule_quarantines_the_row_with_rule_column_value_and_raw(tmp_path, lake, case):
    bad_row, rule, column, value, reason = RULE_CASES[case]
    good = [row(day="2026-01-10"), row(day="2026-01-11")]
    path = write_summary(tmp_path / "bad.csv", [good[0], bad_row, good[1]])
    summary = run(path, lake)

    assert (summary.rows_in, summary.accepted, summary.quarantined, summary.duplicates) == (3, 2, 1, 0)
    assert summary.rejected_by_rule == {rule: 1}
    assert summary.quarantine_key == f"quarantine/rows/{summary.import_id}.parquet"
    (record,) = quarantine(lake, summary)
    assert (record["row_number"], record["rule"], record["column"], record["value"]) == (2, rule, column, value)
    assert reason in record["reason"]
    assert (record["source_key"], record["source_id"]) == ("bad.csv", summary.import_id)
    assert json.loads(record["raw"]) == dict(zip(SUMMARY_COLUMNS, bad_row, strict=True))
    assert [r["dt"].isoformat() for r in daily_rows(lake)] == ["2026-01-10", "2026-01-11"]


def test_a_row_keeps_the_first_rule_it_broke(tmp_path, lake):
    path = write_summary(tmp_path / "bad.csv", [row(vin="SHORT", day="2026-02-30", voltage="1200", label="7")])
    summary = run(path, lake)
    assert summary.rejected_by_rule == {"vin_format": 1}
    assert [(r["rule"], r["value"]) for r in quarantine(lake, summary)] == [("vin_format", "SHORT")]


def test_earliest_date_follows_the_setting(tmp_path, lake, monkeypatch):
    monkeypatch.setenv("CELLGUARD_EARLIEST_TS", "2026-01-06")
    summary = run(write_summary(tmp_path / "s.csv", [row(day="2026-01-05"), row(day="2026-01-06")]), lake)
    assert (summary.accepted, summary.rejected_by_rule) == (1, {"date_too_old": 1})
    assert "before 2026-01-06" in quarantine(lake, summary)[0]["reason"]


def test_rows_with_the_wrong_number_of_fields_are_quarantined_by_data_row(tmp_path, lake):
    text = f"{HEADER}\n{','.join(row())}\n\n{VIN_A},2026-01-06,1,2\n{','.join(row(day='2026-01-07', label='9'))}\n"
    path = tmp_path / "ragged.csv"
    path.write_text(text)
    summary = run(path, lake)

    assert (summary.rows_in, summary.accepted, summary.quarantined) == (3, 1, 2)
    assert summary.rejected_by_rule == {"unparseable_line": 1, "label_value": 1}
    records = quarantine(lake, summary)
    # Data rows count from 1 after the header; the blank line is not a row.
    assert [(r["row_number"], r["rule"]) for r in records] == [(2, "unparseable_line"), (3, "label_value")]
    assert (records[0]["reason"], records[0]["raw"]) == ("row has 4 fields, header has 9", f"{VIN_A},2026-01-06,1,2")


def test_counts_add_up_on_a_mixed_file(tmp_path, lake):
    path = write_summary(tmp_path / "mixed.csv", [
        row(), row(day="2026-01-06"), row(voltage="9999"), row(vin="BAD"), row(day="2026-01-06", voltage="1"),
        row(vin=VIN_B, day="2026-01-06", voltage="", current="", cell_max="", cell_min="", t_max="", t_min="", label=""),
    ])
    summary = run(path, lake)
    assert (summary.rows_in, summary.accepted, summary.quarantined, summary.duplicates, summary.empty_days) == (6, 3, 2, 1, 1)
    assert summary.rows_in == summary.accepted + summary.quarantined + summary.duplicates


def test_repeats_inside_a_file_keep_the_first_row(tmp_path, lake):
    path = write_summary(tmp_path / "repeats.csv", [
        row(voltage="1200"),  # rejected: the next row for the same day is the first good one
        row(voltage="350.0"),
        row(voltage="360.0"),
        row(vin=VIN_A.lower(), voltage="370.0"),  # the same VIN once upper-cased
    ])
    summary = run(path, lake)
    assert (summary.accepted, summary.quarantined, summary.duplicates) == (1, 1, 2)
    assert [r["total_voltage"] for r in daily_rows(lake)] == [350.0]


def test_rows_the_daily_zone_already_holds_are_duplicates_and_not_written(tmp_path, lake):
    earlier = pa.Table.from_pylist([{"vin": VIN_A, "dt": date(2026, 1, 5), "total_voltage": 300.0}], DAILY_SCHEMA)
    write_imported(lake, date(2026, 1, 5), earlier, "0123456789abcdef")
    computed = pa.Table.from_pylist([{"vin": VIN_B, "dt": date(2026, 1, 6), "total_voltage": 390.0, "frame_count": 2880}],
                                    DAILY_SCHEMA)
    write_computed(lake, date(2026, 1, 6), computed, CELL_DAILY_SCHEMA.empty_table())

    path = write_summary(tmp_path / "overlap.csv", [row(), row(vin=VIN_B, day="2026-01-06"), row(vin=VIN_B)])
    summary = run(path, lake)

    assert (summary.rows_in, summary.accepted, summary.duplicates) == (3, 1, 2)
    assert summary.dates == ["2026-01-05"] and summary.keys == [f"daily/dt=2026-01-05/import-{summary.import_id}.parquet"]
    assert lake.read_parquet(summary.keys[0])["vin"].to_pylist() == [VIN_B]
    assert {(r["vin"], r["dt"].isoformat()): r["total_voltage"] for r in daily_rows(lake)} == {
        (VIN_B, "2026-01-05"): 350.4, (VIN_A, "2026-01-05"): 300.0, (VIN_B, "2026-01-06"): 390.0}


def test_reimporting_the_same_file_changes_nothing(tmp_path, lake):
    path = write_summary(tmp_path / "again.csv", [row(), row(day="2026-01-06"), row(day="2026-01-06"), row(vin="BAD")])
    first = run(path, lake)
    root = tmp_path / "lake"
    before = files_on_disk(root)
    assert (first.accepted, first.quarantined, first.duplicates, first.already_imported) == (2, 1, 1, False)

    again = run(path, lake, now=datetime(2026, 2, 3, tzinfo=UTC))
    assert (again.rows_in, again.accepted, again.quarantined, again.duplicates) == (4, 0, 1, 3)
    assert again.already_imported and again.keys == [] and again.quarantine_key == first.quarantine_key
    assert files_on_disk(root) == before


def test_reimport_adds_rows_that_became_valid_beside_the_earlier_ones(tmp_path, lake):
    computed = pa.Table.from_pylist([{"vin": VIN_B, "dt": date(2026, 1, 5), "total_voltage": 390.0}], DAILY_SCHEMA)
    write_computed(lake, date(2026, 1, 5), computed, CELL_DAILY_SCHEMA.empty_table())
    path = write_summary(tmp_path / "later.csv", [row(), row(vin=VIN_B), row(day="2026-02-03")])
    first = run(path, lake)
    assert (first.accepted, first.duplicates, first.rejected_by_rule) == (1, 1, {"date_future": 1})

    write_computed(lake, date(2026, 1, 5), DAILY_SCHEMA.empty_table(), CELL_DAILY_SCHEMA.empty_table())
    later = run(path, lake, now=datetime(2026, 2, 10, tzinfo=UTC))
    assert (later.accepted, later.duplicates, later.quarantined, later.already_imported) == (2, 1, 0, False)
    assert later.dates == ["2026-01-05", "2026-02-03"]
    assert lake.read_parquet(later.keys[0])["vin"].to_pylist() == [VIN_B, VIN_A]  # the earlier row stays
    assert not lake.exists(first.quarantine_key)  # nothing is quarantined any more


def test_gzip_input_is_read_like_plain_csv(tmp_path, lake):
    path = write_summary(tmp_path / "summaries.csv.gz", [row(), row(day="2026-01-06", label="1")], compress=True)
    summary = run(path, lake)
    assert (summary.accepted, summary.dates) == (2, ["2026-01-05", "2026-01-06"])
    assert summary.import_id == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert [(r["total_voltage"], r["alarm"]) for r in daily_rows(lake)] == [(350.4, False), (350.4, True)]


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


WHOLE_FILE_CASES = {
    "truncated_gzip": ("s.csv.gz", lambda: half(gzip.compress("\n".join([HEADER, *[",".join(row())] * 200]).encode())),
                       "unreadable", "gzip stream is damaged or truncated"),
    "wrong_header": ("s.csv", lambda: b"vin,date,voltage\nLSVAB1234CD567890,2026-01-05,350\n", "required_column",
                     "header lacks VIN, Date, TotalVoltage"),
    "missing_label": ("s.csv", lambda: (HEADER.removesuffix(",Label") + "\n" + ",".join(row()[:-1]) + "\n").encode(),
                      "required_column", "header lacks Label: expected VIN,Date,"),
    "semicolons": ("s.csv", lambda: (HEADER.replace(",", ";") + "\n").encode(), "required_column",
                   "(it is ';'-separated; expected commas)"),
    "not_utf8": ("s.csv", lambda: f"{HEADER}\n{','.join(row())}\n".encode() + "LSVAB1234CD567890,2026-01-06,3°C".encode("latin-1"),
                 "unreadable", "file is not UTF-8: byte b'\\xb0' on line 3"),
    "header_only": ("s.csv", lambda: f"{HEADER}\n".encode(), "unreadable", "file has no data rows (header only)"),
    "empty": ("s.csv", lambda: b"", "unreadable", "file is empty (0 bytes)"),
}


@pytest.mark.parametrize("case", WHOLE_FILE_CASES, ids=list(WHOLE_FILE_CASES))
def test_unreadable_files_are_quarantined_whole(tmp_path, lake, case):
    name, data, rule, reason = WHOLE_FILE_CASES[case]
    path = tmp_path / name
    path.write_bytes(data())
    summary = run(path, lake)

    assert reason in summary.error
    assert (summary.rows_in, summary.accepted, summary.rejected_by_rule, summary.keys) == (0, 0, {rule: 1}, [])
    assert summary.quarantined_file_key == f"quarantine/files/{summary.import_id}/{name}"
    assert lake.read_bytes(summary.quarantined_file_key) == path.read_bytes()
    (record,) = quarantine(lake, summary)
    assert (record["row_number"], record["rule"], record["value"], record["reason"]) == (0, rule, name, summary.error)
    assert not lake.list("daily")

    before = files_on_disk(tmp_path / "lake")
    assert run(path, lake).already_imported and files_on_disk(tmp_path / "lake") == before


def test_bom_crlf_and_extra_columns_are_read(tmp_path, lake):
    path = tmp_path / "excel.csv"
    lines = [f"{HEADER},Comment", ",".join([*row(), "ok"]), ",".join([*row(day="2026-01-06", cell_min="x"), "typo"])]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    summary = run(path, lake)
    assert (summary.accepted, summary.quarantined) == (1, 1)
    assert daily_rows(lake)[0]["cell_min_voltage"] == 3.701
    (record,) = quarantine(lake, summary)
    assert (record["rule"], record["value"], json.loads(record["raw"])["Comment"]) == ("number_format", "x", "typo")
