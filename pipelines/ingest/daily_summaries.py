"""Import daily summaries in the reference solution's format straight into the `daily` zone.

A summary file (CSV, optionally gzip) has the header
`VIN,Date,TotalVoltage,TotalCurrent,CellMaxVoltage,CellMinVoltage,MaxTemperature,MinTemperature,Label`
in V, A (positive = discharge), V per cell, °C and 0/1. Every row is checked like a frame: a row that breaks
a rule goes to `quarantine/rows/<import id>.parquet` with the rule, column, value, reason and the row as
received; a file that cannot be read at all is copied whole to `quarantine/files/<import id>/<name>`. Good
rows become daily rows (the six signals and `alarm`, every other column null) under
`daily/dt=D/import-<import id>.parquet`, where the import id is the start of the file's sha256: importing
the same file again finds every row already there and writes nothing.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from pipelines.config import Settings, load_settings
from pipelines.ingest.convert import to_float
from pipelines.ingest.readers import UnreadableObject
from pipelines.ingest.rejections import Rejections, quarantine_record
from pipelines.quality.rules import VIN_PATTERN, RangeRule
from pipelines.schema import DAILY_SCHEMA, QUARANTINE_SCHEMA
from pipelines.storage.daily_zone import DAILY_PREFIX, IMPORT_PART_PREFIX, daily_keys, write_imported
from pipelines.storage.lake import Lake

QUARANTINE_PREFIX = "quarantine"
IMPORT_ID_LENGTH = 16
# Source column -> daily column, for the six reference signals.
SIGNALS = {
    "TotalVoltage": "total_voltage",
    "TotalCurrent": "total_current",
    "CellMaxVoltage": "cell_max_voltage",
    "CellMinVoltage": "cell_min_voltage",
    "MaxTemperature": "max_temperature",
    "MinTemperature": "min_temperature",
}
SUMMARY_COLUMNS = ("VIN", "Date", *SIGNALS, "Label")
SOURCE_OF = {"vin": "VIN", "dt": "Date", "alarm": "Label", **{column: source for source, column in SIGNALS.items()}}
UNITS = {"total_voltage": "V", "total_current": "A", "cell_max_voltage": "V", "cell_min_voltage": "V",
         "max_temperature": "°C", "min_temperature": "°C"}

# Physical limits of GB/T 32960 (shared/reference/bms-domain.md); day means cannot lie outside them either.
DAILY_RANGE_RULES: tuple[RangeRule, ...] = (
    RangeRule("total_voltage_range", "total_voltage", 0, 1000, "GB/T 32960 pack voltage limits"),
    RangeRule("total_current_range", "total_current", -1000, 1000, "GB/T 32960 pack current limits"),
    RangeRule("cell_voltage_range", "cell_max_voltage", 0.5, 5.0, "cell voltages are in volts, not mV"),
    RangeRule("cell_voltage_range", "cell_min_voltage", 0.5, 5.0, "cell voltages are in volts, not mV"),
    RangeRule("temperature_range", "max_temperature", -40, 210, "GB/T 32960 temperature limits"),
    RangeRule("temperature_range", "min_temperature", -40, 210, "GB/T 32960 temperature limits"),
)
# (rule, lower column, upper column): the day's minimum cannot exceed its maximum.
DAILY_ORDER_RULES = (
    ("cell_voltage_order", "cell_min_voltage", "cell_max_voltage"),
    ("temperature_order", "min_temperature", "max_temperature"),
)
# The daily contract before the rules ran: a rejected row may lack its vin or date.
CHECKED_SCHEMA = pa.schema([f.with_nullable(True) for f in DAILY_SCHEMA])
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadHeader(UnreadableObject):
    """The header lacks a summary column or names one twice: the file is rejected whole (rule required_column)."""


@dataclass
class DailyImportSummary:
    """What importing one summary file did; counts reconcile: rows_in = accepted + quarantined + duplicates."""

    file_name: str
    import_id: str
    rows_in: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    empty_days: int = 0  # accepted rows whose six signals are all empty (a day without data)
    dates: list[str] = field(default_factory=list)  # dates whose partitions this import wrote
    keys: list[str] = field(default_factory=list)  # daily objects written
    first_date: str | None = None  # date range of the file's rows that passed the rules
    last_date: str | None = None
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    quarantine_key: str | None = None  # where this import's quarantine records are (None: nothing quarantined)
    quarantined_file_key: str | None = None  # the copy of a file rejected whole
    error: str | None = None  # why the file was rejected whole
    already_imported: bool = False  # an earlier import of the same bytes left rows or quarantine; nothing new

    def reconciles(self) -> bool:
        return self.rows_in == self.accepted + self.quarantined + self.duplicates


@dataclass
class SummaryRows:
    """A summary file parsed as text: one string column per header name, plus rows the parser set aside."""

    table: pa.Table
    row_numbers: np.ndarray  # each table row's 1-based data row in the file
    bad_rows: list[tuple[int, str, str]]  # (data row, reason, text) of rows with the wrong number of fields

    @property
    def rows_in(self) -> int:
        return self.table.num_rows + len(self.bad_rows)


def import_id_of(data: bytes) -> str:
    """The first 16 hex characters of the file's sha256: the same bytes always get the same keys."""
    return hashlib.sha256(data).hexdigest()[:IMPORT_ID_LENGTH]


def read_summaries(data: bytes, name: str) -> SummaryRows:
    """Decompress (by name or magic bytes), decode and parse a summary CSV, every column as text.

    Raises UnreadableObject with a reason a person can act on: damaged gzip, not UTF-8, wrong header, no rows.
    """
    if not data:
        raise UnreadableObject("file is empty (0 bytes)")
    if name.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise UnreadableObject(f"gzip stream is damaged or truncated ({exc}); nothing could be read") from exc
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnreadableObject(f"file is not UTF-8: byte {data[exc.start:exc.start + 1]!r} on line {line} "
                               f"(offset {exc.start}); save it as UTF-8") from exc
    data = data.removeprefix(b"\xef\xbb\xbf")
    header_line = data.split(b"\n", 1)[0].decode("utf-8").strip()
    if not header_line:
        raise UnreadableObject("file has no header line")
    names = [n.strip() for n in next(csv.reader([header_line]))]
    missing = [c for c in SUMMARY_COLUMNS if c not in names]
    if missing:
        hint = next((f" (it is {sep!r}-separated; expected commas)" for sep in (";", "\t", "|")
                     if "," not in header_line and sep in header_line), "")
        raise BadHeader(f"header lacks {', '.join(missing)}{hint}: expected {','.join(SUMMARY_COLUMNS)}, "
                               f"found {header_line[:200]!r}")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise BadHeader(f"header names {', '.join(twice)} more than once: {header_line[:200]!r}")

    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        # The parser numbers non-blank records from the header (1), so the data row is one less (-1: unknown).
        bad.append((row.number - 1 if row.number is not None else -1, f"row has {row.actual_columns} fields, header has {row.expected_columns}",
                    row.text[:64 << 10]))
        return "skip"

    try:  # one thread: only then does the parser number the rows it sets aside
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False, block_size=len(data) + 1),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=[],
                                                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise UnreadableObject(f"CSV parser: {exc}") from exc
    if table.num_rows == 0 and not bad:
        raise UnreadableObject("file has no data rows (header only)")
    set_aside = np.array([number for number, _, _ in bad], dtype=np.int64)
    numbers = np.setdiff1d(np.arange(1, table.num_rows + len(bad) + 1, dtype=np.int64), set_aside)
    if len(numbers) != table.num_rows:  # the parser did not number a row: fall back to positions
        numbers = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return SummaryRows(table, numbers, bad)


def _text(raw: pa.Table, source: str) -> pa.Array:
    return pc.utf8_trim_whitespace(raw[source].combine_chunks())


def _shown(raw: pa.Table, source: str) -> Callable[[np.ndarray], list]:
    """The values of given rows as received (looked up only for rejected rows)."""
    return lambda rows: raw[source].take(pa.array(rows)).to_pylist()


def _parse_dates(text: pa.Array) -> pa.Array:
    """date32 of YYYY-MM-DD values that are real dates; null otherwise (each distinct value parsed once)."""
    encoded = pc.dictionary_encode(text)
    parsed = []
    for value in encoded.dictionary.to_pylist():
        try:
            parsed.append(date.fromisoformat(value) if _ISO_DATE.match(value) else None)
        except ValueError:  # 2026-02-30
            parsed.append(None)
    return pa.array(parsed, pa.date32()).take(encoded.indices)


def check_summaries(raw: pa.Table, rejections: Rejections, earliest: date, latest: date) -> pa.Table:
    """Daily rows (DAILY_SCHEMA's columns; vin and dt null where unusable) for the raw text rows, row for row.

    Rows that break a rule are marked in `rejections`, each with the first rule it broke."""
    n = raw.num_rows
    vin = pc.utf8_upper(_text(raw, "VIN"))
    vin_ok = pc.fill_null(pc.match_substring_regex(vin, VIN_PATTERN), False).to_numpy(zero_copy_only=False)
    rejections.add(~vin_ok, "vin_format", "vin", _shown(raw, "VIN"),
                   "VIN '{value}' is not 17 characters of A–Z (no I, O, Q) and 0–9")

    date_text = _text(raw, "Date")
    dt = _parse_dates(date_text)
    empty = pc.equal(date_text, "").to_numpy(zero_copy_only=False)
    known = pc.is_valid(dt).to_numpy(zero_copy_only=False)
    days = pc.fill_null(dt.cast(pa.int32()), 0).to_numpy(zero_copy_only=False)
    epoch = date(1970, 1, 1)
    shown_date = _shown(raw, "Date")
    rejections.add(empty, "date_missing", "dt", shown_date, "Date is empty")
    rejections.add(~known, "date_format", "dt", shown_date, "Date '{value}' is not a real date written YYYY-MM-DD")
    rejections.add(known & (days > (latest - epoch).days), "date_future", "dt", shown_date,
                   f"Date {{value}} is in the future (later than {latest.isoformat()})")
    rejections.add(known & (days < (earliest - epoch).days), "date_too_old", "dt", shown_date,
                   f"Date {{value}} is before {earliest.isoformat()} (CELLGUARD_EARLIEST_TS), older than GB/T 32960-2016")

    values: dict[str, np.ndarray] = {}
    for source, column in [*SIGNALS.items(), ("Label", "alarm")]:
        parsed, missing, unparseable = to_float(raw[source])
        shown = _shown(raw, source)
        if column == "alarm":
            rejections.add(~missing & ~np.isin(parsed, (0.0, 1.0)), "label_value", "alarm", shown,
                           "Label = '{value}' is not empty, 0 or 1")
        else:
            rejections.add(unparseable, "number_format", column, shown, f"{source} = '{{value}}' is not a number")
            rejections.add(~missing & ~unparseable & ~np.isfinite(parsed), "finite", column, shown,
                           f"{source} = {{value}} is not a finite number")
        values[column] = np.where(np.isfinite(parsed), parsed, np.nan)

    for rule in DAILY_RANGE_RULES:
        source, unit = SOURCE_OF[rule.column], UNITS[rule.column]
        with np.errstate(invalid="ignore"):
            outside = (values[rule.column] < rule.low) | (values[rule.column] > rule.high)
        rejections.add(outside, rule.name, rule.column, _shown(raw, source),
                       f"{source} = {{value}} {unit} is outside {rule.low:g}…{rule.high:g} {unit} ({rule.meaning})")
    for rule, low, high in DAILY_ORDER_RULES:
        with np.errstate(invalid="ignore"):
            inverted = values[low] > values[high]
        reasons = np.empty(n, dtype=object)
        reasons[inverted] = [f"{SOURCE_OF[low]} {a:g} {UNITS[low]} is above {SOURCE_OF[high]} {b:g} {UNITS[high]}"
                             for a, b in zip(values[low][inverted], values[high][inverted], strict=True)]
        rejections.add(inverted, rule, low, _shown(raw, SOURCE_OF[low]), reasons)

    columns = {"vin": vin, "dt": dt}
    for column in SIGNALS.values():
        columns[column] = pa.array(values[column], pa.float64(), from_pandas=True)
    columns["alarm"] = pa.array(values["alarm"] == 1.0, pa.bool_(), mask=np.isnan(values["alarm"]))
    return pa.table([columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in DAILY_SCHEMA],
                    schema=CHECKED_SCHEMA)


def first_in_file(rows: pa.Table, keep: np.ndarray) -> np.ndarray:
    """Mask of the kept rows that are the first of their (vin, dt) in the file."""
    index = pa.table({"vin": rows["vin"], "dt": rows["dt"], "row": np.arange(rows.num_rows)}).filter(pa.array(keep))
    firsts = index.group_by(["vin", "dt"], use_threads=False).aggregate([("row", "min")])["row_min"]
    mask = np.zeros(rows.num_rows, dtype=bool)
    mask[firsts.to_numpy()] = True
    return mask


def quarantine_keys(import_id: str, file_name: str) -> tuple[str, str]:
    """Where an import's rejected rows go, and where its file goes when it is rejected whole."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", file_name)[:120] or "file"
    return f"{QUARANTINE_PREFIX}/rows/{import_id}.parquet", f"{QUARANTINE_PREFIX}/files/{import_id}/{safe}"


def _own_daily(lake: Lake, import_id: str) -> dict[str, str]:
    """This import's daily objects already in the lake, by date."""
    part = f"/{IMPORT_PART_PREFIX}{import_id}.parquet"
    return {info.key.split("/")[1].removeprefix("dt="): info.key
            for info in lake.list(DAILY_PREFIX) if info.key.endswith(part)}


def _write_quarantine(lake: Lake, key: str, records: pa.Table) -> bool:
    """Write quarantine records unless the lake holds the same ones (stamps aside); none deletes. Returns True
    when the lake already held them."""
    if not records.num_rows:
        lake.delete(key)
        return False
    if lake.exists(key):
        held = lake.read_parquet(key)
        if held.drop_columns(["quarantined_at"]).equals(records.drop_columns(["quarantined_at"])):
            return True
    lake.write_parquet(key, records)
    return False


def import_daily_summaries(lake: Lake, data: bytes, file_name: str, settings: Settings | None = None,
                           now: datetime | None = None) -> DailyImportSummary:
    """Check one summary file's rows and write the good ones into the daily zone, the rest into quarantine."""
    settings = settings or load_settings()
    now = now or datetime.now(UTC)
    import_id = import_id_of(data)
    summary = DailyImportSummary(file_name, import_id)
    rows_key, file_key = quarantine_keys(import_id, file_name)
    try:
        parsed = read_summaries(data, file_name)
    except UnreadableObject as exc:
        rule = "required_column" if isinstance(exc, BadHeader) else "unreadable"
        summary.error, summary.rejected_by_rule = str(exc), {rule: 1}
        record = quarantine_record(file_name, import_id, 0, rule, "", file_name, str(exc), None, now)
        held = lake.exists(file_key)
        if not held:
            lake.write_bytes(file_key, data)
        records = pa.Table.from_pylist([record], QUARANTINE_SCHEMA)
        summary.already_imported = _write_quarantine(lake, rows_key, records) and held
        summary.quarantine_key, summary.quarantined_file_key = rows_key, file_key
        return summary

    raw = parsed.table
    earliest = datetime.fromisoformat(settings.earliest_ts).date()
    latest = (now + timedelta(hours=settings.max_clock_skew_hours)).date()
    rejections = Rejections(raw.num_rows)
    rows = check_summaries(raw, rejections, earliest, latest)
    keep = ~rejections.rejected
    first = first_in_file(rows, keep)
    existing = daily_keys(lake)  # from frames, earlier imports and this file's own earlier import
    vins, dts = rows["vin"].to_pylist(), rows["dt"].to_pylist()
    held = np.array([first[i] and (vins[i], dts[i]) in existing for i in range(rows.num_rows)], dtype=bool)
    new = first & ~held

    records = rejections.to_table(raw, file_name, import_id, lambda r: parsed.row_numbers[r], now)
    if parsed.bad_rows:
        lines = pa.Table.from_pylist([quarantine_record(file_name, import_id, number, "unparseable_line", "", "", reason,
                                                        text, now) for number, reason, text in parsed.bad_rows],
                                     QUARANTINE_SCHEMA)
        records = pa.concat_tables([lines, records]).sort_by("row_number")
    own = _own_daily(lake, import_id)
    quarantine_held = _write_quarantine(lake, rows_key, records)

    accepted = rows.filter(pa.array(new))
    signals = np.column_stack([pc.is_null(accepted[c]).to_numpy(zero_copy_only=False) for c in SIGNALS.values()])
    summary.empty_days = int(signals.all(axis=1).sum()) if accepted.num_rows else 0
    for day in sorted(set(accepted["dt"].to_pylist())):
        day_rows = accepted.filter(pc.equal(accepted["dt"], pa.scalar(day, pa.date32())))
        if day.isoformat() in own:  # rows an earlier import of this file wrote for the day stay
            day_rows = pa.concat_tables([lake.read_parquet(own[day.isoformat()]).cast(CHECKED_SCHEMA), day_rows])
        summary.keys.append(write_imported(lake, day, day_rows.sort_by([("vin", "ascending")]), import_id))
        summary.dates.append(day.isoformat())

    passed = rows.filter(pa.array(keep))["dt"]
    if len(passed):
        summary.first_date, summary.last_date = (d.as_py().isoformat() for d in pc.min_max(passed).values())
    summary.rows_in = parsed.rows_in
    summary.accepted = accepted.num_rows
    summary.quarantined = rejections.count + len(parsed.bad_rows)
    summary.duplicates = int((keep & ~new).sum())
    summary.rejected_by_rule = rejections.by_rule()
    if parsed.bad_rows:
        summary.rejected_by_rule["unparseable_line"] = len(parsed.bad_rows)
    summary.quarantine_key = rows_key if records.num_rows else None
    summary.already_imported = not summary.accepted and (bool(own) or quarantine_held)
    return summary


def import_daily_file(path: Path, lake: Lake | None = None, settings: Settings | None = None,
                      now: datetime | None = None) -> DailyImportSummary:
    """Import one local summary file (see import_daily_summaries)."""
    settings = settings or load_settings()
    lake = lake or Lake.from_settings(settings)
    return import_daily_summaries(lake, Path(path).read_bytes(), Path(path).name, settings, now)
