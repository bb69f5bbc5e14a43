"""Readers for landing objects: CSV, JSON lines and Parquet, each optionally gzip-compressed."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from dataclasses import dataclass, field

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


def _split_invalid_utf8(data: bytes) -> tuple[bytes, list[BadLine]]:
    """Drop lines that are not UTF-8 (keeping the rest), each as a bad line with its position."""
    try:
        data.decode("utf-8")
        return data, []
    except UnicodeDecodeError:
        pass
    kept, bad = [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
            kept.append(line)
        except UnicodeDecodeError as exc:
            bad.append(BadLine(number, f"line is not valid UTF-8 (byte {exc.start}: {line[exc.start:exc.start + 4]!r})", _text(line)))
    if bad and bad[0].line_number == 1:
        raise UnreadableObject(f"header line is not valid UTF-8: {bad[0].reason}")
    return b"\n".join(kept), bad


def read_csv(data: bytes) -> RawBatch:
    """Parse CSV with a header; rows with the wrong number of fields or bad bytes are set aside."""
    data, bad = _split_invalid_utf8(data)
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
    return RawBatch(table, "csv", bad, data_line_offset=1)


def read_jsonl(data: bytes) -> RawBatch:
    """Parse JSON lines; lines that are not a JSON object are set aside with the parser's message."""
    data, bad = _split_invalid_utf8(data)
    try:
        table = pjson.read_json(io.BytesIO(data), read_options=pjson.ReadOptions(block_size=max(1 << 20, len(data) + 1)))
        return RawBatch(table, "jsonl", bad, data_line_offset=0)
    except pa.ArrowInvalid:
        pass
    # Slow path, only for damaged files: find the bad lines one by one, keep the good ones.
    rows = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadLine(number, f"not valid JSON: {exc.msg} at column {exc.colno}", _text(line)))
            continue
        if not isinstance(record, dict):
            bad.append(BadLine(number, f"expected a JSON object, got {type(record).__name__}", _text(line)))
            continue
        rows.append(record)
    columns: dict[str, pa.Array] = {}
    for name in dict.fromkeys(name for row in rows for name in row):
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed types in one column: keep each value's text and let the mapping judge it value by value.
            columns[name] = pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())
    table = pa.table(columns) if columns else pa.table({})
    return RawBatch(table, "jsonl", bad, data_line_offset=0)


def read_parquet(data: bytes) -> RawBatch:
    """Parse a Parquet file (row-level damage cannot be isolated in Parquet: the file is read or rejected)."""
    try:
        return RawBatch(pq.read_table(io.BytesIO(data)), "parquet", [], data_line_offset=0)
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
