"""The bad-input corpus: every kind of damage ends in quarantine with a readable reason; the good rows are kept."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from pipelines.ingest.manifest import source_id_for

from .builders import (
    DAY,
    VIN_A,
    entry,
    frames,
    landing_key,
    native_csv_bytes,
    native_jsonl_bytes,
    native_parquet_bytes,
    native_row,
    native_rows,
    put,
    quarantine_rows,
    run_ingest,
    utc,
    wide_csv_bytes,
    wide_rows,
)

GOOD = native_rows(3)  # 00:00:00, 00:00:10, 00:00:20 on 5 January
GOOD_TS = [utc(r["ts"]) for r in GOOD]
TEN_MB = 10 << 20


def bad(ts: str = f"{DAY}T00:05:00Z", **overrides) -> dict:
    return native_row(ts=ts, **overrides)


def mixed_csv(bad_rows: list[dict], **kwargs) -> bytes:
    """Good rows with the bad ones in the middle."""
    return native_csv_bytes([GOOD[0], *bad_rows, *GOOD[1:]], **kwargs)


def drop_column(data: bytes, name: str) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode())))
    drop = rows[0].index(name)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([r[:drop] + r[drop + 1:] for r in rows])
    return out.getvalue().encode()


def with_line(data: bytes, line: bytes, at: int) -> bytes:
    lines = data.rstrip(b"\n").split(b"\n")
    lines.insert(at, line)
    return b"\n".join(lines) + b"\n"


@dataclass
class Case:
    """One damaged landing object and what ingest must make of it."""

    key: str
    data: bytes
    rules: list[str]  # quarantine rules, in row order
    reasons: list[str | tuple[str, ...]]  # text(s) each quarantine reason must contain, in row order
    accepted: int = 3
    whole_file: bool = False
    duplicates: int = 0
    warning: str | None = None
    raw_contains: list[str] = field(default_factory=list)  # text each quarantine raw must contain, in row order


CSV = landing_key()
CASES: dict[str, Callable[[], Case]] = {
    "empty_file": lambda: Case(CSV, b"", ["unreadable"], ["file is empty (0 bytes)"], accepted=0, whole_file=True),
    "header_only": lambda: Case(CSV, native_csv_bytes([]), ["unreadable"], ["file has no data rows (header only)"],
                                accepted=0, whole_file=True),
    "truncated_gzip": lambda: Case(
        CSV + ".gz", gzip.compress(native_csv_bytes(native_rows(200)))[:400], ["unreadable"],
        [("gzip stream is damaged or truncated", "nothing could be read")], accepted=0, whole_file=True),
    "semicolons": lambda: Case(
        CSV, native_csv_bytes(GOOD).replace(b",", b";"), ["unreadable"],
        ["expected comma-separated values, but the header is ';'-separated: 'vin;ts;vehicle_state"], accepted=0,
        whole_file=True),
    "non_utf8_line": lambda: Case(
        CSV, with_line(native_csv_bytes(GOOD), f"{VIN_A},{DAY}T00:05:00Z,1,3,4\xb0C".encode("latin-1"), 4),
        ["unparseable_line"], ["line is not valid UTF-8 (byte 44: b'\\xb0C')"], raw_contains=["T00:05:00Z,1,3,4\\xb0C"]),
    "missing_required_column": lambda: Case(
        CSV, drop_column(native_csv_bytes(GOOD), "soc_pct"), ["required_column"] * 3,
        ["file lacks what mapping 'simulator' needs: soc_pct needs column 'soc_pct'"] * 3, accepted=0,
        raw_contains=['"pack_current_a": 20.5'] * 3),
    "unknown_extra_columns": lambda: Case(
        CSV, native_csv_bytes([{**r, "firmware": "v1.2", "gps_lat": 31.2} for r in GOOD]), [], [],
        warning="ignored columns not in mapping 'simulator': firmware, gps_lat"),
    "unparseable_timestamp": lambda: Case(
        CSV, mixed_csv([bad(ts="05/01/2026 00:05")]), ["ts_format"],
        ["'05/01/2026 00:05' is not a valid iso8601 timestamp"], raw_contains=['"ts": "05/01/2026 00:05"']),
    "vin_wrong_length": lambda: Case(
        CSV, mixed_csv([bad(vin="LSVAB1234CD5678")]), ["vin_format"],
        ["VIN 'LSVAB1234CD5678' is not 17 characters"], raw_contains=['"vin": "LSVAB1234CD5678"']),
    "cell_count_changes": lambda: Case(
        CSV, mixed_csv([bad(cells=[3650, 3651, 3652])]), ["cell_count_changed"],
        ["frame has 3 cell voltages; this vehicle's other frames in the file have 4"], raw_contains=['"V_4": null']),
    "nan_and_inf": lambda: Case(
        CSV, mixed_csv([bad(pack_current_a="nan"), bad(ts=f"{DAY}T00:05:10Z", speed_kmh="inf"),
                        bad(ts=f"{DAY}T00:05:20Z", cells=[3650, "-inf", 3652, 3653])]),
        ["finite"] * 3, ["pack_current_a = nan is not a finite number", "speed_kmh = inf is not a finite number",
                         "V_n[2] is not a finite number"],
        raw_contains=['"pack_current_a": NaN', '"speed_kmh": Infinity', '"V_2": -Infinity']),
    "soc_out_of_range": lambda: Case(
        CSV, mixed_csv([bad(soc_pct=150.0)]), ["soc_range"],
        ["soc_pct = 150 is outside 0…100 (SOC is a percentage, 0–100)"], raw_contains=['"soc_pct": 150']),
    "ten_megabyte_line": lambda: Case(
        CSV, mixed_csv([bad(vin="X" * TEN_MB)]), ["vin_format"], ["VIN 'XXXXXXXX"],
        raw_contains=['{"vin": "XXXXXXXXXXXXXXXX']),
    "duplicated_rows": lambda: Case(CSV, native_csv_bytes([*GOOD, GOOD[0], GOOD[2]]), [], [], duplicates=2),
    "timestamp_far_future": lambda: Case(
        CSV, mixed_csv([bad(ts="2099-01-01T00:00:00Z")]), ["ts_future"],
        ["timestamp 2099-01-01T00:00:00.000Z is in the future (later than 2026-02-02 00:00 UTC)"],
        raw_contains=['"ts": "2099-01-01 00:00:00+00:00"']),  # the CSV reader parsed it: same instant
    # beyond the list: other formats and sources
    "text_in_number_column": lambda: Case(
        CSV, mixed_csv([bad(soc_pct="n/a%")]), ["number_format"], ["soc_pct = 'n/a%' is not a number"],
        raw_contains=['"soc_pct": "n/a%"']),
    "jsonl_broken_line": lambda: Case(
        landing_key(ext="jsonl"), with_line(native_jsonl_bytes(GOOD), b'{"vin": "' + VIN_A.encode() + b'", "ts": ', 2),
        ["unparseable_line"], ["not valid JSON: Expecting value"], raw_contains=[f'{{"vin": "{VIN_A}", "ts": ']),
    "jsonl_every_line_broken": lambda: Case(
        landing_key(ext="jsonl"), b"{oops\n[1, 2]\n", ["unparseable_line"] * 2,
        ["not valid JSON", "expected a JSON object, got list"], accepted=0, raw_contains=["{oops", "[1, 2]"]),
    "parquet_damaged": lambda: Case(
        landing_key(ext="parquet"), native_parquet_bytes(GOOD)[:-40], ["unreadable"], ["Parquet reader:"], accepted=0,
        whole_file=True),
    "unknown_extension": lambda: Case(
        landing_key(ext="xlsx"), b"PK\x03\x04", ["unreadable"], [("unknown file type", "expected .csv, .jsonl or .parquet")],
        accepted=0, whole_file=True),
    "unknown_source": lambda: Case(
        landing_key(source="other_vendor"), native_csv_bytes(GOOD), ["no_mapping"],
        [("no column mapping for source 'other_vendor'", "known sources: simulator, wide_export")], accepted=0,
        whole_file=True),
    "wide_export_name_without_vin": lambda: Case(
        f"landing/wide_export/{DAY}/export.csv", wide_csv_bytes(wide_rows(3)), ["vin_from_filename"] * 3,
        ["file name 'export.csv' does not match '^(?P<vin>[A-Za-z0-9]{17})', so it names no VIN"] * 3, accepted=0,
        raw_contains=['"tboxTime": "2026-01-05 08:00:00"', '"tboxTime": "2026-01-05 08:00:10"',
                      '"tboxTime": "2026-01-05 08:00:20"']),
}


def assert_raw_is_the_row(raw: str, header: list[str], fields: list[str]) -> None:
    """The quarantined raw JSON holds every field of the source line (numbers as numbers, times as instants)."""
    record = json.loads(raw)
    assert list(record) == header
    for name, text in zip(header, fields, strict=True):
        value = record[name]
        if text == "":
            assert value is None, name
        elif name == "ts" and text.endswith("Z"):
            assert datetime.fromisoformat(value) == utc(text), name
        elif isinstance(value, float | int) and not isinstance(value, bool):
            assert math.isclose(value, float(text)) or (math.isnan(value) and math.isnan(float(text))), name
        else:
            assert str(value) == text, name


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(lake, name: str) -> None:
    case = CASES[name]()
    lake.write_bytes(case.key, case.data)
    summary = run_ingest(lake)
    record = entry(lake, case.key)
    source_id = source_id_for(case.key)
    quarantine = quarantine_rows(lake, case.key)

    assert summary.objects == 1 and record.reconciles()
    assert [q["rule"] for q in quarantine] == case.rules
    for q, reason in zip(quarantine, case.reasons, strict=True):
        for text in (reason,) if isinstance(reason, str) else reason:
            assert text in q["reason"], q["reason"]
        assert len(q["reason"]) < 600  # readable: a huge value is cut short in the reason, kept whole in landing/
        assert (q["source_key"], q["source_id"]) == (case.key, source_id)
    assert record.accepted == case.accepted == frames(lake).num_rows
    assert record.duplicates == case.duplicates
    assert case.rules == [] or lake.exists(f"quarantine/rows/{source_id}.parquet")

    if case.whole_file:
        (q,) = quarantine
        assert (q["row_number"], q["raw"]) == (0, None)
        assert record.status == "rejected" and record.error == q["reason"]
        assert (record.rows_in, record.quarantined) == (0, 0)
        assert summary.rejected_objects == 1
        name_in_lake = case.key.rsplit("/", 1)[1]
        assert lake.read_bytes(f"quarantine/files/{source_id}/{name_in_lake}") == case.data
        return

    assert not lake.list("quarantine/files")
    assert record.quarantined == len(quarantine)
    assert record.rows_in == case.accepted + len(quarantine) + case.duplicates
    assert sum(record.rejected_by_rule.values()) == len(quarantine)
    assert record.status == ("ingested" if not quarantine else "partial" if case.accepted else "rejected")
    if case.accepted:
        assert frames(lake)["ts"].to_pylist() == GOOD_TS
        assert set(frames(lake)["vin"].to_pylist()) == {VIN_A}
    if case.warning:
        assert case.warning in record.warnings

    # nothing is lost: each quarantine record carries its row as received
    for q, text in zip(quarantine, case.raw_contains, strict=True):
        assert q["raw"] and text in q["raw"], (q["raw"] or "")[:200]
        assert len(q["raw"]) <= 64 << 10
    if case.key.endswith(".csv") and len(case.data) < TEN_MB:
        lines = case.data.decode("utf-8", errors="replace").split("\n")
        header = next(csv.reader([lines[0]]))
        for q in quarantine:
            if q["rule"] != "unparseable_line":
                assert_raw_is_the_row(q["raw"], header, next(csv.reader([lines[q["row_number"] - 1]])))


def test_whole_corpus_in_one_run_reconciles(lake) -> None:
    """Every case side by side in one run: each manifest entry and the run's totals reconcile."""
    for name, make in CASES.items():
        case = make()
        lake.write_bytes(case.key.replace(f"/{DAY}/", f"/{DAY}/{name}/"), case.data)
    summary = run_ingest(lake)
    assert summary.objects == len(CASES)
    assert summary.rejected_objects == sum(make().whole_file for make in CASES.values()) + 3  # + the all-rows-rejected
    assert summary.rows_in == sum(e.rows_in for e in summary.entries)
    assert summary.accepted == frames(lake).num_rows == 3  # the same three good frames, first copy wins
    assert summary.quarantined == sum(len(quarantine_rows(lake, e.key)) for e in summary.entries if e.rows_in)
    assert summary.touched_dates == [DAY]


def test_quarantine_names_the_line_of_the_file_even_after_lines_were_set_aside(lake) -> None:
    lines = native_csv_bytes(native_rows(5)).split(b"\n")  # header + 5 rows: file lines 1..6
    lines[2] = b"\xff\xfe" + lines[2]
    lines[4] = b"only,three,fields"
    lines[5] = lines[5].replace(VIN_A.encode(), b"SHORTVIN")
    key = put(lake, landing_key(), b"\n".join(lines))
    run_ingest(lake)
    found = sorted((r["row_number"], r["rule"]) for r in quarantine_rows(lake, key))
    assert found == [(3, "unparseable_line"), (5, "unparseable_line"), (6, "vin_format")]
