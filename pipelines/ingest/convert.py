"""Turn raw tables (one landing object, or several alike) into frame-contract columns: units, codes, sentinels, zones."""

from __future__ import annotations

import json
import re
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


def list_item_metrics(values: np.ndarray, null: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row: item count, valid item count, min and max of valid items (NaN where none), from flat items.

    Same figures as `quality.rules.frame_metrics` computes from the finished frames (a test holds them
    equal), taken here from the numpy arrays the conversion already has: several times cheaper.
    """
    n = len(lengths)
    if not len(values):
        return lengths.astype(np.int64), np.zeros(n, dtype=np.int64), np.full(n, np.nan), np.full(n, np.nan)
    lowest, highest = np.where(null, np.inf, values), np.where(null, -np.inf, values)
    if lengths.min() == lengths.max():  # the usual case, every frame of the same pack: one 2-D reduction
        width = int(lengths[0])
        valid_count = width - null.reshape(n, width).sum(axis=1)
        low, high = lowest.reshape(n, width).min(axis=1), highest.reshape(n, width).max(axis=1)
    else:
        starts = np.minimum(np.concatenate(([0], np.cumsum(lengths)[:-1])), len(values) - 1)
        valid_count = np.add.reduceat(~null, starts).astype(np.int64)
        low, high = np.minimum.reduceat(lowest, starts), np.maximum.reduceat(highest, starts)
        valid_count[lengths == 0] = 0
    low, high = low.astype(np.float64), high.astype(np.float64)
    low[valid_count == 0] = np.nan
    high[valid_count == 0] = np.nan
    return lengths.astype(np.int64), valid_count, low, high


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


def _raw_values(raw: pa.Table, column: str) -> np.ndarray:
    return raw[column].to_numpy(zero_copy_only=False) if column in raw.column_names else np.full(raw.num_rows, None)


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
    if pa.types.is_integer(flat.type) and flat.null_count == 0:  # the usual list<uint16>: no parsing to do
        values = flat.to_numpy().astype(LIST_ITEM_FLOAT)
        return values, np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=bool), lengths
    values, missing, unparseable = to_float(flat)
    return values.astype(LIST_ITEM_FLOAT), missing, unparseable, lengths


def _wide_matrix(raw: pa.Table, columns: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wide columns V_1..V_n as flat values plus row lengths; a row ends at its last non-empty column."""
    parsed = [to_float(raw[c]) for c in columns]
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
    item = lambda flags: _rows_with(flags, lengths)  # noqa: E731
    for flags, rule, text in (
        (unparseable, "number_format", "is not a number"),
        (~missing & ~unparseable & ~np.isfinite(values), "finite", "is not a finite number"),
    ):
        rows, first = item(flags)
        shown = [f"{source}[{first[i] + 1}]" for i in range(len(rows))] if rows.any() else [""] * len(rows)
        rejections.add(rows, rule, name, shown, f"{{value}} {text}")
    invalid = tuple(spec.invalid)
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
        is_code_item = np.repeat(np.array(codes), np.diff(item_starts))
        # The invalid markers are given as codes; in a °C file they read 40 lower.
        invalid_celsius = tuple(v - GBT_TEMPERATURE_OFFSET_C for v in invalid)
        sentinel = ~missing & np.where(is_code_item, _is_sentinel(values, invalid), _is_sentinel(values, invalid_celsius))
    else:
        sentinel = ~missing & _is_sentinel(values, invalid)
    if sentinel.any():
        item_rows = np.repeat(np.arange(len(lengths)), lengths)
        sentinels[name] = np.bincount(item_rows[sentinel], minlength=len(lengths))
    if name == "cell_mv":
        values = values * (1000.0 if spec.unit == "V" else 1.0)
        rule = "cell_mv_range"
    else:
        values = values - GBT_TEMPERATURE_OFFSET_C * is_code_item
        rule = "probe_temp_range"
    values = np.round(values)
    null = missing | unparseable | sentinel | ~np.isfinite(values)
    low, high = _RULE_BOUNDS[rule]
    outside = ~null & ((values < low) | (values > high))
    rows, first = item(outside)
    if rows.any():
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        unit = "mV" if name == "cell_mv" else "°C"
        shown = [f"{source}[{first[i] + 1}] = {values[starts[i] + first[i]]:g} {unit}" if rows[i] else "" for i in range(len(rows))]
        rejections.add(rows, rule, name, shown, f"{{value}} is outside {low:g}…{high:g} {unit}")
    null |= outside
    prefix = "cell" if name == "cell_mv" else "probe"
    count, valid_count, low_seen, high_seen = list_item_metrics(values, null, lengths)
    metrics.update({f"{prefix}_count": count, f"{prefix}_valid_count": valid_count,
                    f"{prefix}_min_{unit_suffix[name]}": low_seen, f"{prefix}_max_{unit_suffix[name]}": high_seen})
    item_type = FRAME_SCHEMA.field(name).type.value_type
    flat = pa.array(np.where(null, 0, values).astype(item_type.to_pandas_dtype()), item_type, mask=null)
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
