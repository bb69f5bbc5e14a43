"""Readers for landing objects: CSV, JSON lines and Parquet, each optionally gzip-compressed."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

# Only these mean "no value" in CSV; "nan"/"inf" stay numbers so the finite-number rule can name them.
CSV_NULL_VALUES = ["", "NULL", "null", "NA", "N/A"]
RAW_TEXT_LIMIT = 64 << 10  # quarantine keeps this much of a rejected line; the landing object keeps it all


class UnreadableObject(Exception):
    """The whole object cannot be parsed; the message is the reason shown in quarantine."""


@dataclass
class BadLine:
    """A line the parser rejected before it became a row."""

    line_number: int  # 1-based line in the (decompressed) file; 0 when the parser did not say
    reason: str
    text: str


@dataclass
class RawBatch:
    """What a reader got out of one object: a table of source columns plus the lines it had to reject."""

    table: pa.Table
    file_format: str
    bad_lines: list[BadLine] = field(default_factory=list)
    data_line_offset: int = 1  # line number of the first data row minus one (1 for a CSV header)
    line_numbers: np.ndarray | None = None  # each row's line in the file, where lines were set aside

    def row_numbers(self, rows: np.ndarray) -> np.ndarray:
        """The 1-based line (CSV, JSON lines) or row (Parquet) in the file of the given table rows."""
        if self.line_numbers is not None:
            return self.line_numbers[rows]
        return rows + self.data_line_offset + 1

    @property
    def rows_in(self) -> int:
        """Every data row the object held, parsed or not."""
        return self.table.num_rows + len(self.bad_lines)


def detect_format(key: str) -> tuple[str, bool]:
    """File format and whether it is gzip-compressed, from the key's ending."""
    name = key.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[:-3]
    for suffix, file_format in ((".csv", "csv"), (".jsonl", "jsonl"), (".json", "jsonl"), (".ndjson", "jsonl"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return file_format, gzipped
    raise UnreadableObject(f"unknown file type for {key!r}: expected .csv, .jsonl or .parquet, optionally .gz")


def _gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise UnreadableObject(f"gzip stream is damaged or truncated ({exc}); nothing could be read") from exc


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= RAW_TEXT_LIMIT else f"{text[:RAW_TEXT_LIMIT]}… (truncated, {len(raw)} bytes in all)"


def _split_invalid_utf8(data: bytes) -> tuple[bytes, list[BadLine], np.ndarray | None]:
    """Drop lines that are not UTF-8 (keeping the rest), each as a bad line with its position.

    Also returns, when lines were dropped, the original line number of every kept line.
    """
    if data.isascii():  # the usual upload: checked in C, without decoding into a str
        return data, [], None
    try:
        data.decode("utf-8")
        return data, [], None
    except UnicodeDecodeError:
        pass
    kept, kept_numbers, bad = [], [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
            kept.append(line)
            kept_numbers.append(number)
        except UnicodeDecodeError as exc:
            bad.append(BadLine(number, f"line is not valid UTF-8 (byte {exc.start}: {line[exc.start:exc.start + 4]!r})", _text(line)))
    if bad and bad[0].line_number == 1:
        raise UnreadableObject(f"header line is not valid UTF-8: {bad[0].reason}")
    return b"\n".join(kept), bad, np.array(kept_numbers)


def _row_lines(data: bytes, skipped: set[int], first_data_line: int) -> np.ndarray:
    """Line numbers (in `data`) of the rows a parser produced: non-blank lines from `first_data_line` on, minus `skipped`."""
    return np.array([n for n, line in enumerate(data.split(b"\n"), start=1)
                     if n >= first_data_line and n not in skipped and line.strip()], dtype=np.int64)


def _original(numbers: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    return kept[numbers - 1] if kept is not None else numbers


def read_csv(data: bytes) -> RawBatch:
    """Parse CSV with a header; rows with the wrong number of fields or bad bytes are set aside."""
    data, bad, kept = _split_invalid_utf8(data)
    header = data.split(b"\n", 1)[0].decode("utf-8").strip()
    if not header:
        raise UnreadableObject("file has no header line")
    for other in (";", "\t", "|"):
        if "," not in header and other in header:
            raise UnreadableObject(f"expected comma-separated values, but the header is {other!r}-separated: {header[:120]!r}")

    def on_invalid(row: pcsv.InvalidRow) -> str:
        bad.append(BadLine(row.number or 0, f"row has {row.actual_columns} fields, header has {row.expected_columns}", _text(row.text.encode())))
        return "skip"

    utf8_bad = len(bad)  # the retry below re-collects the parser's rejects, not these
    parse = pcsv.ParseOptions(invalid_row_handler=on_invalid)
    convert = pcsv.ConvertOptions(null_values=CSV_NULL_VALUES, strings_can_be_null=True)
    try:
        table = pcsv.read_csv(io.BytesIO(data), parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc) and "conver" not in str(exc).lower():
            raise UnreadableObject(f"CSV parser: {exc}") from exc
        # A very long row, or a column whose type changes after the first block: read again in one block, as text.
        del bad[utf8_bad:]
        read = pcsv.ReadOptions(block_size=len(data) + 1, use_threads=False)
        convert = pcsv.ConvertOptions(null_values=CSV_NULL_VALUES, strings_can_be_null=True, column_types=None)
        try:
            names = pcsv.read_csv(io.BytesIO(data.split(b"\n", 1)[0] + b"\n"), convert_options=convert).column_names
            convert.column_types = {name: pa.string() for name in names}
            table = pcsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc2:
            raise UnreadableObject(f"CSV parser: {exc2}") from exc2
    parser_bad = bad[utf8_bad:]
    if any(line.line_number == 0 for line in parser_bad):
        # Threaded parsing does not report line numbers; this rare path reads again on one thread to get them.
        del bad[utf8_bad:]
        table = pcsv.read_csv(io.BytesIO(data), read_options=pcsv.ReadOptions(use_threads=False, block_size=len(data) + 1),
                              parse_options=parse, convert_options=convert)
        parser_bad = bad[utf8_bad:]
    if not bad:
        return RawBatch(table, "csv", bad, data_line_offset=1)
    rows = _row_lines(data, {line.line_number for line in parser_bad}, first_data_line=2)
    for line in parser_bad:
        line.line_number = int(_original(np.array([line.line_number]), kept)[0])
    return RawBatch(table, "csv", bad, data_line_offset=1, line_numbers=_original(rows, kept) if len(rows) == table.num_rows else None)


def read_jsonl(data: bytes) -> RawBatch:
    """Parse JSON lines; lines that are not a JSON object are set aside with the parser's message."""
    data, bad, kept = _split_invalid_utf8(data)
    try:
        table = pjson.read_json(io.BytesIO(data), read_options=pjson.ReadOptions(block_size=max(1 << 20, len(data) + 1)))
        rows = _row_lines(data, set(), first_data_line=1) if bad else None
        return RawBatch(table, "jsonl", bad, data_line_offset=0, line_numbers=_original(rows, kept) if bad else None)
    except pa.ArrowInvalid:
        pass
    # Slow path, only for damaged files: find the bad lines one by one, keep the good ones.
    rows, numbers = [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        original = int(_original(np.array([number]), kept)[0])
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadLine(original, f"not valid JSON: {exc.msg} at column {exc.colno}", _text(line)))
            continue
        if not isinstance(record, dict):
            bad.append(BadLine(original, f"expected a JSON object, got {type(record).__name__}", _text(line)))
            continue
        rows.append(record)
        numbers.append(original)
    columns: dict[str, pa.Array] = {}
    for name in dict.fromkeys(name for row in rows for name in row):
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed types in one column: keep each value's text and let the mapping judge it value by value.
            columns[name] = pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())
    table = pa.table(columns) if columns else pa.table({})
    return RawBatch(table, "jsonl", bad, data_line_offset=0, line_numbers=np.array(numbers, dtype=np.int64))


def read_parquet(data: bytes) -> RawBatch:
    """Parse a Parquet file (row-level damage cannot be isolated in Parquet: the file is read or rejected)."""
    try:
        # ParquetFile.read skips the dataset layer of read_table: half the cost per small upload.
        return RawBatch(pq.ParquetFile(pa.BufferReader(data)).read(), "parquet", [], data_line_offset=0)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableObject(f"Parquet reader: {exc}") from exc


READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


def read_object(key: str, data: bytes) -> RawBatch:
    """Decompress and parse one landing object; raises UnreadableObject with a reason a person can act on."""
    if not data:
        raise UnreadableObject("file is empty (0 bytes)")
    file_format, gzipped = detect_format(key)
    if gzipped:
        data = _gunzip(data)
        if not data:
            raise UnreadableObject("gzip stream holds an empty file")
    batch = READERS[file_format](data)
    if batch.table.num_rows == 0 and not batch.bad_lines:
        raise UnreadableObject("file has no data rows" + (" (header only)" if file_format == "csv" else ""))
    return batch
