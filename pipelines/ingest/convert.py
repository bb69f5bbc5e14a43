"""Turn raw tables (one landing object, or several alike) into frame-contract columns: units, codes, sentinels, zones."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.mapping import Mapping
from pipelines.ingest.rejections import Rejections
from pipelines.quality.rules import RANGE_RULES
from pipelines.schema import FRAME_SCHEMA

GBT_TEMPERATURE_OFFSET_C = 40
_RULE_BOUNDS = {r.name: (r.low, r.high) for r in RANGE_RULES}
# Cell and probe items are handled as float32: exact for every mV and °C value (integers below 2**24),
# and half the memory traffic of float64 over ~100 items per frame.
LIST_ITEM_FLOAT = np.float32
INT_FIELDS = {f.name: f.type for f in FRAME_SCHEMA if pa.types.is_integer(f.type)}


@dataclass(frozen=True)
class Segments:
    """Which raw rows came from which landing object: small uploads are concatenated and converted at once,
    because per-call overhead, not per-row work, dominates uploads of a thousand frames."""

    keys: list[str]
    starts: np.ndarray  # first row of each object, then the total row count

    @classmethod
    def single(cls, key: str, num_rows: int) -> Segments:
        return cls([key], np.array([0, num_rows]))

    @property
    def ids(self) -> np.ndarray:
        """The object index of every row."""
        return np.repeat(np.arange(len(self.keys)), np.diff(self.starts))

    def per_object(self, row_counts: np.ndarray) -> np.ndarray:
        """Sum a per-row count over each object's rows."""
        return np.bincount(self.ids, weights=row_counts, minlength=len(self.keys)).astype(np.int64)


@dataclass
class MappedBatch:
    """Frame columns for every raw row (rejected rows included, to be filtered by the caller)."""

    frames: pa.Table
    sentinels: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    list_metrics: dict[str, np.ndarray] = field(default_factory=dict)  # METRIC_COLUMNS of the list columns
    segment_sentinels: list[dict[str, int]] = field(default_factory=list)  # per object
    segment_warnings: list[list[str]] = field(default_factory=list)  # per object


def _runs_of_equal_length(lengths: np.ndarray) -> list[tuple[int, int, int]]:
    """(first row, end row, items per row) for each run of consecutive rows with the same item count."""
    change = np.flatnonzero(np.diff(lengths)) + 1
    bounds = np.concatenate(([0], change, [len(lengths)]))
    return [(int(a), int(b), int(lengths[a])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def list_item_metrics(values: np.ndarray, null: np.ndarray | None, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row: item count, valid item count, min and max of valid items (NaN where none), from flat items.

    `null` is None when no item is null. Same figures as `quality.rules.frame_metrics` computes from the
    finished frames (a test holds them equal), taken here from the numpy arrays the conversion already has.
    Rows come in runs of one pack size (an upload is one vehicle), so each run is one 2-D reduction; rows
    holding a null item, rare, are then redone with their nulls masked.
    """
    n = len(lengths)
    lengths = lengths.astype(np.int64)
    low, high = np.full(n, np.nan), np.full(n, np.nan)
    valid_count = lengths.copy()
    starts = np.concatenate(([0], np.cumsum(lengths)))
    for first, end, width in _runs_of_equal_length(lengths):
        if width:
            block = values[starts[first]:starts[end]].reshape(end - first, width)
            low[first:end], high[first:end] = block.min(axis=1), block.max(axis=1)
    if null is not None:
        item_rows = np.repeat(np.arange(n), lengths)
        null_rows = np.unique(item_rows[null])
        valid_count -= np.bincount(item_rows[null], minlength=n)
        row_lengths = lengths[null_rows]
        row_starts = np.concatenate(([0], np.cumsum(row_lengths)[:-1]))
        items = np.repeat(starts[null_rows] - row_starts, row_lengths) + np.arange(row_lengths.sum())
        masked = values[items].astype(np.float64)
        masked_null = null[items]
        low[null_rows] = np.minimum.reduceat(np.where(masked_null, np.inf, masked), row_starts)
        high[null_rows] = np.maximum.reduceat(np.where(masked_null, -np.inf, masked), row_starts)
        none_valid = valid_count == 0
        low[none_valid], high[none_valid] = np.nan, np.nan
    return lengths, valid_count, low, high


def to_float(array: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float values (NaN where missing or unparseable), the missing mask and the unparseable mask."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], array.type)
    missing = pc.is_null(array).to_numpy(zero_copy_only=False)
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type):
        values = pc.fill_null(array.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False, writable=True)
        return values, missing, np.zeros(len(array), dtype=bool)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = pc.utf8_trim_whitespace(array)
        missing |= pc.fill_null(pc.equal(text, ""), False).to_numpy(zero_copy_only=False)
        try:  # fast path: every value is a plain number
            values = pc.fill_null(text.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False, writable=True)
            values[missing] = np.nan
            return values, missing, np.zeros(len(array), dtype=bool)
        except pa.ArrowInvalid:
            values = pd.to_numeric(pd.Series(text.to_numpy(zero_copy_only=False)), errors="coerce").to_numpy(dtype=float, copy=True)
            lowered = pc.utf8_lower(text).to_numpy(zero_copy_only=False)
            named_nan = np.isin(lowered, ["nan", "-nan", "+nan"])
            bad = np.isnan(values) & ~missing & ~named_nan
            values[missing] = np.nan
            return values, missing, bad
    # Lists, structs, binary: nothing a scalar column can hold.
    return np.full(len(array), np.nan), missing, ~missing


def _is_sentinel(values: np.ndarray, sentinels: tuple[float, ...]) -> np.ndarray:
    if all(float(s).is_integer() for s in sentinels):  # exact codes (mV, GB/T bytes): one fast pass
        return np.isin(values, np.array(sentinels, dtype=values.dtype))
    hit = np.zeros(values.shape, dtype=bool)
    for sentinel in sentinels:
        hit |= np.isclose(values, sentinel, rtol=0, atol=1e-6 * max(1.0, abs(sentinel)))
    return hit


def _raw_values(raw: pa.Table, column: str) -> Callable[[np.ndarray], list]:
    """The source values of given rows, looked up only for rows that are rejected."""
    if column not in raw.column_names:
        return lambda rows: [None] * len(rows)
    return lambda rows: raw[column].take(pa.array(rows)).to_pylist()


def map_vin(raw: pa.Table, mapping: Mapping, segments: Segments, rejections: Rejections) -> pa.Array:
    """VINs, trimmed and upper-cased, from a column or from each object's file name."""
    if mapping.vin_filename_pattern:
        vins: list[str | None] = []
        ids = segments.ids
        for index, key in enumerate(segments.keys):
            name = PurePosixPath(key).name
            match = re.match(mapping.vin_filename_pattern, name)
            vins.append(match.group("vin").upper() if match else None)
            if not match:
                n = raw.num_rows
                reason = f"file name {name!r} does not match {mapping.vin_filename_pattern!r}, so it names no VIN"
                rejections.add(ids == index, "vin_from_filename", "vin", [""] * n, [reason] * n)
        return pa.array(np.repeat(np.array(vins, dtype=object), np.diff(segments.starts)), pa.string())
    column = raw[mapping.vin_column]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return pc.utf8_upper(pc.utf8_trim_whitespace(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column))


def _localize(naive: pd.Series, zone: str) -> pd.Series:
    return naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")


def map_timestamps(raw: pa.Table, mapping: Mapping, rejections: Rejections) -> pa.Array:
    """UTC millisecond timestamps; unparseable or non-existent local times are rejected."""
    column = raw[mapping.ts_column]
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    fmt, zone = mapping.ts_format, mapping.ts_timezone
    missing = pc.is_null(column).to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(column.type):
        series = pd.Series(column.to_pandas())
        parsed = series.dt.tz_convert("UTC") if column.type.tz else _localize(series, zone)
    elif fmt in ("epoch_s", "epoch_ms"):
        values, missing, _ = to_float(column)
        values[~np.isfinite(values)] = np.nan
        parsed = pd.Series(pd.to_datetime(values, unit="s" if fmt == "epoch_s" else "ms", utc=True, errors="coerce"))
    else:
        text = pd.Series(pc.cast(column, pa.string()).to_numpy(zero_copy_only=False), dtype=object)
        if fmt == "iso8601":
            has_zone = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
            parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
            if has_zone.any():
                parsed[has_zone] = pd.to_datetime(text[has_zone], format="ISO8601", utc=True, errors="coerce")
            if (~has_zone).any():
                naive = pd.to_datetime(text[~has_zone], format="ISO8601", errors="coerce")
                parsed[~has_zone] = _localize(pd.Series(naive), zone) if len(naive) else naive
        else:
            parsed = _localize(pd.Series(pd.to_datetime(text, format=fmt, errors="coerce")), zone)
    bad = parsed.isna().to_numpy() & ~missing
    shown = _raw_values(raw, mapping.ts_column)
    rejections.add(missing, "ts_missing", "ts", shown, "timestamp is missing")
    rejections.add(bad, "ts_format", "ts", shown,
                   f"'{{value}}' is not a valid {fmt} timestamp" + (f" in {zone}" if zone != "UTC" else ""))
    millis = parsed.astype("datetime64[ns, UTC]").dt.tz_localize(None).to_numpy().astype("datetime64[ms]")
    return pa.array(millis, pa.timestamp("ms"), mask=np.isnat(millis)).cast(pa.timestamp("ms", tz="UTC"))


def map_scalar(raw: pa.Table, name: str, mapping: Mapping, rejections: Rejections, sentinels: dict[str, np.ndarray]) -> pa.Array:
    """One scalar frame column: parse, drop sentinels, scale, reject non-numbers and non-finite values."""
    spec = mapping.fields[name]
    values, missing, unparseable = to_float(raw[spec.column])
    shown = _raw_values(raw, spec.column)
    rejections.add(unparseable, "number_format", name, shown, f"{spec.column} = '{{value}}' is not a number")
    rejections.add(~missing & ~unparseable & ~np.isfinite(values), "finite", name, shown,
                   f"{spec.column} = {{value}} is not a finite number")
    sentinel = _is_sentinel(values, spec.invalid)
    if sentinel.any():
        sentinels[name] = sentinel.astype(np.int64)
    values = values * spec.scale + spec.offset
    null = missing | unparseable | sentinel | ~np.isfinite(values)
    target = FRAME_SCHEMA.field(name).type
    if name in INT_FIELDS:
        fractional = ~null & (values != np.round(values))
        rejections.add(fractional, "whole_number", name, shown, f"{spec.column} = {{value}} is not a whole number")
        info = np.iinfo(target.to_pandas_dtype())
        out_of_type = ~null & ((values < info.min) | (values > info.max))
        rejections.add(out_of_type, "integer_range", name, shown,
                       f"{spec.column} = {{value}} does not fit {target} ({info.min}…{info.max})")
        null |= fractional | out_of_type
        values = np.where(null, 0, values).astype(target.to_pandas_dtype())
    return pa.array(values, target, mask=null)


def _integer_dtype(arrow_type: pa.DataType) -> type:
    """Integer list items stay integers (no float round trip); int32 holds every mV and °C code exactly."""
    return np.int32 if arrow_type.bit_width < 32 or arrow_type == pa.int32() else np.int64


def _list_matrix(raw: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A list column as flat values plus row offsets: (values, missing, unparseable, lengths)."""
    array = raw[column]
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_string(array.type):  # JSON text of a list (a damaged JSON lines file): parse each
        def parse(text: str | None) -> list | None:
            try:
                value = json.loads(text) if text is not None else None
            except json.JSONDecodeError:
                return ["not a list"]
            return value if isinstance(value, list) else ["not a list"]

        array = pa.array([parse(t) for t in array.to_pylist()], pa.list_(pa.string()))
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(array)
    if pa.types.is_integer(flat.type):  # the usual list<uint16>: no parsing to do
        missing = pc.is_null(flat).to_numpy(zero_copy_only=False) if flat.null_count else np.zeros(len(flat), dtype=bool)
        values = pc.fill_null(flat, 0) if flat.null_count else flat
        return values.to_numpy().astype(_integer_dtype(flat.type)), missing, np.zeros(len(flat), dtype=bool), lengths
    values, missing, unparseable = to_float(flat)
    return values.astype(LIST_ITEM_FLOAT), missing, unparseable, lengths


def _wide_matrix(raw: pa.Table, columns: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wide columns V_1..V_n as flat values plus row lengths; a row ends at its last non-empty column."""
    arrays = [raw[c].combine_chunks() for c in columns]
    if all(pa.types.is_integer(a.type) or pa.types.is_null(a.type) for a in arrays):
        # The usual export: whole numbers, so no parsing. Row-major flattening of the (rows × columns) matrix
        # is already the list layout; files of smaller packs concatenated with larger ones end in empty cells.
        values = np.column_stack([pc.fill_null(a.cast(pa.int64()), 0).to_numpy() if a.null_count else a.cast(pa.int64()).to_numpy()
                                  for a in arrays])
        if not any(a.null_count for a in arrays):
            no_flags = np.zeros(values.size, dtype=bool)
            return values.reshape(-1), no_flags, no_flags, np.full(len(values), values.shape[1], dtype=np.int64)
        missing = np.column_stack([pc.is_null(a).to_numpy(zero_copy_only=False) for a in arrays])
        unparseable = np.zeros(values.shape, dtype=bool)
    else:
        parsed = [to_float(a) for a in arrays]
        values = np.column_stack([p[0].astype(LIST_ITEM_FLOAT) for p in parsed])
        missing = np.column_stack([p[1] for p in parsed])
        unparseable = np.column_stack([p[2] for p in parsed])
    present = ~missing
    lengths = np.where(present.any(axis=1), values.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
    keep = np.arange(values.shape[1])[None, :] < lengths[:, None]
    return values[keep], missing[keep], unparseable[keep], lengths.astype(np.int64)


def _rows_with(flags: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: does any item have the flag, and the first flagged item's position (for the reason)."""
    if not flags.any():
        return np.zeros(len(lengths), dtype=bool), np.full(len(lengths), -1)
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    hit_rows = np.zeros(len(lengths), dtype=bool)
    first = np.full(len(lengths), -1)
    where = np.flatnonzero(flags)
    if len(where):
        rows = row_of[where]
        hit_rows[rows] = True
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        unique_rows, idx = np.unique(rows, return_index=True)
        first[unique_rows] = where[idx] - starts[unique_rows]
    return hit_rows, first


def map_list(raw: pa.Table, name: str, mapping: Mapping, rejections: Rejections, sentinels: dict[str, np.ndarray],
             warnings: list[list[str]], metrics: dict[str, np.ndarray], segments: Segments) -> pa.Array:
    """cell_mv (mV) or probe_temp_c (°C) as a list column, from a list column or wide columns."""
    spec = mapping.cells if name == "cell_mv" else mapping.probes
    names = raw.column_names
    wide = spec.wide_columns(names)
    if spec.list_column and spec.list_column in names:
        values, missing, unparseable, lengths = _list_matrix(raw, spec.list_column)
        source = spec.list_column
    elif wide:
        values, missing, unparseable, lengths = _wide_matrix(raw, wide)
        source = f"{spec.wide_prefix}n"
    else:
        return pa.nulls(raw.num_rows, FRAME_SCHEMA.field(name).type)
    unit_suffix = {"cell_mv": "mv", "probe_temp_c": "c"}
    integer = values.dtype.kind in "iu"  # whole numbers throughout: no float passes over ~100 items a frame
    item = lambda flags: _rows_with(flags, lengths)  # noqa: E731
    checks = [(unparseable, "number_format", "is not a number")]
    if not integer:
        checks.append((~missing & ~unparseable & ~np.isfinite(values), "finite", "is not a finite number"))
    for flags, rule, text in checks:
        rows, first = item(flags)
        shown = [f"{source}[{first[i] + 1}]" for i in range(len(rows))] if rows.any() else [""] * len(rows)
        rejections.add(rows, rule, name, shown, f"{{value}} {text}")
    invalid = tuple(spec.invalid)
    any_missing = bool(missing.any())
    if name == "probe_temp_c":
        # Whether probes are raw GB/T codes (°C + 40) is a property of each file, decided object by object.
        item_starts = np.concatenate(([0], np.cumsum(lengths)))[segments.starts]
        codes = []
        for index in range(len(segments.keys)):
            items = slice(item_starts[index], item_starts[index + 1])
            is_code = spec.encoding == "gbt_code" or (
                spec.encoding == "auto" and _looks_like_codes(values[items], missing[items], invalid))
            codes.append(is_code)
            if spec.encoding == "auto":
                warnings[index].append(f"{source}: probe temperatures read as {'GB/T codes (°C + 40)' if is_code else '°C'}")
        # The invalid markers are given as codes; in a °C file they read 40 lower.
        invalid_celsius = tuple(v - GBT_TEMPERATURE_OFFSET_C for v in invalid)
        if all(codes):
            sentinel, offset = _is_sentinel(values, invalid), GBT_TEMPERATURE_OFFSET_C
        elif not any(codes):
            sentinel, offset = _is_sentinel(values, invalid_celsius), 0
        else:
            is_code_item = np.repeat(np.array(codes), np.diff(item_starts))
            sentinel = np.where(is_code_item, _is_sentinel(values, invalid), _is_sentinel(values, invalid_celsius))
            offset = GBT_TEMPERATURE_OFFSET_C * is_code_item
        values = values - offset
        rule = "probe_temp_range"
    else:
        sentinel = _is_sentinel(values, invalid)
        if spec.unit == "V":
            values = values * 1000.0
        rule = "cell_mv_range"
    if any_missing:
        sentinel &= ~missing
    if sentinel.any():
        item_rows = np.repeat(np.arange(len(lengths)), lengths)
        sentinels[name] = np.bincount(item_rows[sentinel], minlength=len(lengths))
    if integer:
        null = (missing | sentinel) if any_missing else sentinel
    else:
        values = np.round(values)
        null = missing | unparseable | sentinel | ~np.isfinite(values)
    low, high = _RULE_BOUNDS[rule]
    outside = (values < low) | (values > high)
    outside &= ~null
    rows, first = item(outside)
    if rows.any():
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        unit = "mV" if name == "cell_mv" else "°C"
        shown = [f"{source}[{first[i] + 1}] = {values[starts[i] + first[i]]:g} {unit}" if rows[i] else "" for i in range(len(rows))]
        rejections.add(rows, rule, name, shown, f"{{value}} is outside {low:g}…{high:g} {unit}")
    null |= outside
    any_null = bool(null.any())
    prefix = "cell" if name == "cell_mv" else "probe"
    count, valid_count, low_seen, high_seen = list_item_metrics(values, null if any_null else None, lengths)
    metrics.update({f"{prefix}_count": count, f"{prefix}_valid_count": valid_count,
                    f"{prefix}_min_{unit_suffix[name]}": low_seen, f"{prefix}_max_{unit_suffix[name]}": high_seen})
    item_type = FRAME_SCHEMA.field(name).type.value_type
    items = np.where(null, 0, values) if any_null else values
    flat = pa.array(items.astype(item_type.to_pandas_dtype(), copy=False), item_type, mask=null if any_null else None)
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, flat)


def _looks_like_codes(values: np.ndarray, missing: np.ndarray, invalid: tuple[float, ...]) -> bool:
    """Raw GB/T temperature codes sit 40 above °C: a file of them has invalid markers or a high median."""
    seen = values[~missing & np.isfinite(values)]
    if not len(seen):
        return True
    if invalid and _is_sentinel(seen, invalid).any():
        return True
    return bool(np.median(seen) > 55)


def apply_mapping(raw: pa.Table, mapping: Mapping, key: str | Segments, rejections: Rejections) -> MappedBatch:
    """Every frame column for every raw row; row-level problems go to `rejections`.

    `key` is the landing key, or the Segments of several objects concatenated into `raw`.
    """
    segments = key if isinstance(key, Segments) else Segments.single(key, raw.num_rows)
    sentinel_rows: dict[str, np.ndarray] = {}
    warnings: list[list[str]] = [[] for _ in segments.keys]
    absent: list[str] = []
    list_metrics: dict[str, np.ndarray] = {}
    columns: dict[str, pa.Array] = {"vin": map_vin(raw, mapping, segments, rejections),
                                    "ts": map_timestamps(raw, mapping, rejections)}
    for name in FRAME_SCHEMA.names:
        if name in columns:
            continue
        if name in ("cell_mv", "probe_temp_c"):
            columns[name] = map_list(raw, name, mapping, rejections, sentinel_rows, warnings, list_metrics, segments)
        elif name in mapping.fields and mapping.fields[name].column in raw.column_names:
            columns[name] = map_scalar(raw, name, mapping, rejections, sentinel_rows)
        else:
            columns[name] = pa.nulls(raw.num_rows, FRAME_SCHEMA.field(name).type)
            if name in mapping.fields:
                absent.append(mapping.fields[name].column)
    for object_warnings in warnings:
        if absent:
            object_warnings.append(f"optional columns not in file, left empty: {', '.join(absent)}")
    per_object = {name: segments.per_object(rows) for name, rows in sentinel_rows.items()}
    segment_sentinels = [{name: int(counts[i]) for name, counts in per_object.items() if counts[i]}
                         for i in range(len(segments.keys))]
    totals = {name: int(rows.sum()) for name, rows in sentinel_rows.items() if rows.sum()}
    return MappedBatch(pa.table(columns, schema=FRAME_SCHEMA), totals, [w for ws in warnings for w in ws], list_metrics,
                       segment_sentinels, warnings)
