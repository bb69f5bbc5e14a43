"""Readers: format detection, CSV / JSON lines / Parquet (optionally gzip), and how each sets bad lines aside."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest

from pipelines.ingest.readers import RAW_TEXT_LIMIT, UnreadableObject, detect_format, read_object

from .builders import (
    VIN_A,
    native_csv_bytes,
    native_jsonl_bytes,
    native_parquet_bytes,
    native_row,
    native_rows,
)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("landing/s/a.csv", ("csv", False)),
        ("landing/s/a.CSV.GZ", ("csv", True)),
        ("landing/s/a.jsonl", ("jsonl", False)),
        ("landing/s/a.json.gz", ("jsonl", True)),
        ("landing/s/a.ndjson", ("jsonl", False)),
        ("landing/s/a.parquet", ("parquet", False)),
        ("landing/s/a.parquet.gz", ("parquet", True)),
    ],
)
def test_detect_format(key: str, expected: tuple[str, bool]) -> None:
    assert detect_format(key) == expected


def test_unknown_extension_is_unreadable() -> None:
    with pytest.raises(UnreadableObject, match=r"unknown file type for 'landing/s/a.xlsx'"):
        read_object("landing/s/a.xlsx", b"PK\x03\x04")


def test_native_csv_wide_columns() -> None:
    batch = read_object("a.csv", native_csv_bytes(native_rows(3)))
    assert batch.file_format == "csv"
    assert batch.rows_in == 3 and batch.bad_lines == []
    assert batch.data_line_offset == 1
    assert batch.table.column_names[:3] == ["vin", "ts", "vehicle_state"]
    assert {"V_1", "V_4", "T_1", "T_2"} <= set(batch.table.column_names)
    assert batch.table["V_1"].to_pylist() == [3650] * 3


def test_csv_keeps_nan_and_inf_as_numbers() -> None:
    batch = read_object("a.csv", native_csv_bytes([native_row(speed_kmh="nan"), native_row(ts="2026-01-05T00:00:10Z", speed_kmh="inf")]))
    values = batch.table["speed_kmh"].to_pylist()
    assert values[0] != values[0] and values[1] == float("inf")


def test_gzip_csv_and_jsonl_and_parquet_read_the_same_rows() -> None:
    rows = native_rows(2)
    for key, data in (
        ("a.csv.gz", gzip.compress(native_csv_bytes(rows))),
        ("a.jsonl", native_jsonl_bytes(rows)),
        ("a.jsonl.gz", gzip.compress(native_jsonl_bytes(rows))),
        ("a.parquet", native_parquet_bytes(rows)),
    ):
        batch = read_object(key, data)
        assert batch.table.num_rows == 2, key
        assert batch.table["vin"].to_pylist() == [VIN_A, VIN_A], key
    parquet = read_object("a.parquet", native_parquet_bytes(rows)).table
    assert parquet.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert parquet["cell_mv"].to_pylist() == [[3650, 3651, 3652, 3653]] * 2


@pytest.mark.parametrize(
    ("key", "data", "message"),
    [
        ("a.csv", b"", "file is empty (0 bytes)"),
        ("a.csv", b"vin,ts,soc_pct\n", "file has no data rows (header only)"),
        ("a.jsonl", b"\n\n", "file has no data rows"),
        ("a.csv", b"\n1,2\n", "file has no header line"),
        ("a.csv.gz", gzip.compress(b"vin,ts\n" * 100)[:20], "gzip stream is damaged or truncated"),
        ("a.csv.gz", gzip.compress(b""), "gzip stream holds an empty file"),
        ("a.csv", b"vin;ts;soc_pct\nA;B;1\n", "header is ';'-separated"),
        ("a.csv", b"vin\tts\tsoc_pct\nA\tB\t1\n", "header is '\\t'-separated"),
        ("a.csv", b"v\xffin,ts\nA,B\n", "header line is not valid UTF-8"),
        ("a.parquet", b"PAR1 this is not parquet PAR1", "Parquet reader:"),
    ],
    ids=["empty", "header_only", "jsonl_blank", "no_header", "truncated_gzip", "empty_gzip", "semicolons", "tabs",
         "bad_header_bytes", "broken_parquet"],
)
def test_unreadable_objects(key: str, data: bytes, message: str) -> None:
    with pytest.raises(UnreadableObject) as error:
        read_object(key, data)
    assert message in str(error.value)


def test_csv_line_with_invalid_utf8_is_set_aside() -> None:
    lines = native_csv_bytes(native_rows(3)).split(b"\n")
    lines.insert(2, b"LSVAB1234CD567890,2026-01-05T00:09:00Z,\xff\xfe,1")
    batch = read_object("a.csv", b"\n".join(lines))
    assert batch.table.num_rows == 3
    assert batch.rows_in == 4
    (bad,) = batch.bad_lines
    assert bad.line_number == 3
    assert "line is not valid UTF-8 (byte 39" in bad.reason
    assert bad.text == "LSVAB1234CD567890,2026-01-05T00:09:00Z,\\xff\\xfe,1"


def test_csv_row_with_wrong_field_count_is_set_aside() -> None:
    data = native_csv_bytes(native_rows(2)) + b"LSVAB1234CD567890,2026-01-05T00:09:00Z,1\n"
    batch = read_object("a.csv", data)
    assert batch.table.num_rows == 2
    (bad,) = batch.bad_lines
    assert bad.reason == "row has 3 fields, header has 18"
    assert bad.text == "LSVAB1234CD567890,2026-01-05T00:09:00Z,1"


def test_csv_very_long_line_is_read_in_one_block_and_keeps_other_bad_lines() -> None:
    """A row longer than the parser's block forces a second read; UTF-8 rejects of the first pass survive it."""
    lines = native_csv_bytes(native_rows(3)).split(b"\n")
    lines.insert(2, b"LSVAB1234CD567890,2026-01-05T00:09:00Z,\xff,1")
    lines.insert(3, b"X" * (3 << 20))
    batch = read_object("a.csv", b"\n".join(lines))
    assert batch.table.num_rows == 3
    assert batch.table.schema.field("soc_pct").type == pa.string()  # read again as text
    assert batch.rows_in == 5
    assert [b.reason for b in batch.bad_lines] == ["line is not valid UTF-8 (byte 39: b'\\xff,1')", "row has 1 fields, header has 18"]
    assert len(batch.bad_lines[1].text) < RAW_TEXT_LIMIT + 100
    assert batch.bad_lines[1].text.endswith(f"(truncated, {3 << 20} bytes in all)")


def test_jsonl_bad_lines_are_set_aside_with_the_parser_message() -> None:
    rows = native_rows(2)
    data = native_jsonl_bytes(rows[:1]) + b'{"vin": "LSVAB1234CD567890", "ts": \n' + b"[1, 2]\n" + native_jsonl_bytes(rows[1:])
    batch = read_object("a.jsonl", data)
    assert batch.table.num_rows == 2
    assert batch.table["cell_mv"].to_pylist() == [[3650, 3651, 3652, 3653]] * 2
    assert [(b.line_number, b.reason) for b in batch.bad_lines] == [
        (2, "not valid JSON: Expecting value at column 36"),
        (3, "expected a JSON object, got list"),
    ]
    assert batch.rows_in == 4


def test_jsonl_mixed_types_in_a_column_become_text() -> None:
    data = native_jsonl_bytes([native_row(soc_pct=55.0), native_row(ts="2026-01-05T00:00:10Z", soc_pct="high")]) + b"oops\n"
    batch = read_object("a.jsonl", data)
    assert batch.table["soc_pct"].to_pylist() == ["55.0", "high"]
    assert len(batch.bad_lines) == 1
