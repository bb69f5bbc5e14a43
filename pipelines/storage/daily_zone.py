"""The `daily` and `cell_daily` zones: one Parquet object per UTC date and source, read back as one table.

`daily/dt=D/frames.parquet` holds the rows computed from frames; `daily/dt=D/import-<id>.parquet` holds rows
imported from reference-format summaries. When both have a row for the same (vin, dt), the computed row wins:
it is derived from the raw frames, the import only from someone's summary of them.
`cell_daily/dt=D/frames.parquet` keeps the per-cell deviations the suspect cell's 7-day trailing mean reads.
Computed objects are sorted by vin and cut into row groups of 65,536 rows, so a read filtered on a few VINs
(the dashboard's cells × days view) skips the row groups whose vin statistics cannot match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA
from pipelines.storage.lake import PARQUET_OPTIONS, Lake, ObjectInfo

DAILY_PREFIX = "daily"
CELL_DAILY_PREFIX = "cell_daily"
FRAMES_PREFIX = "frames"
COMPUTED_PART = "frames"
IMPORT_PART_PREFIX = "import-"
COMPUTED_PARQUET_OPTIONS = {**PARQUET_OPTIONS, "row_group_size": 65_536}
# Rows in this order within a date: one vehicle's rows are contiguous, in one or two row groups.
SORT_KEYS = {DAILY_PREFIX: ("vin", "dt"), CELL_DAILY_PREFIX: ("vin", "dt", "cell_index")}
_PARTITION = re.compile(r"^(?P<zone>[a-z_]+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/(?P<part>[^/]+)\.parquet$")


def partition_key(zone: str, day: date, part: str = COMPUTED_PART) -> str:
    """`<zone>/dt=YYYY-MM-DD/<part>.parquet`."""
    return f"{zone}/dt={day.isoformat()}/{part}.parquet"


def _objects(lake: Lake, zone: str) -> list[tuple[date, str, ObjectInfo]]:
    """(date, part, object) of every Parquet object in a zone, in key order."""
    found = []
    for info in lake.list(zone):
        match = _PARTITION.match(info.key)
        if match and match["zone"] == zone:
            found.append((date.fromisoformat(match["dt"]), match["part"], info))
    return found


def _partitions(lake: Lake, zone: str) -> list[tuple[date, str, str]]:
    """(date, part, key) of every Parquet object in a zone, in key order."""
    return [(day, part, info.key) for day, part, info in _objects(lake, zone)]


def _in_range(day: date, first: date | None, last: date | None) -> bool:
    return (first is None or day >= first) and (last is None or day <= last)


def daily_objects(lake: Lake) -> list[tuple[date, str, int, int]]:
    """(date, key, size, modification stamp) of every daily object: what tells a reader its copy is stale."""
    return [(day, info.key, info.size, info.mtime_ns) for day, _, info in _objects(lake, DAILY_PREFIX)]


def frame_days(lake: Lake) -> list[date]:
    """Dates that have frames in the lake."""
    return sorted({day for day, _, _ in _partitions(lake, FRAMES_PREFIX)})


def daily_days(lake: Lake) -> list[date]:
    """Dates with daily rows from any source (computed or imported)."""
    return sorted({day for day, _, _ in _partitions(lake, DAILY_PREFIX)})


def computed_days(lake: Lake) -> list[date]:
    """Dates whose daily rows have been computed from frames."""
    return sorted({day for day, part, _ in _partitions(lake, DAILY_PREFIX) if part == COMPUTED_PART})


def frame_locations(lake: Lake, days: Iterable[date]) -> list[str]:
    """Where a query reads the frames of these dates: one glob per date partition that exists."""
    wanted = set(days)
    partitions = sorted({day for day, _, _ in _partitions(lake, FRAMES_PREFIX) if day in wanted})
    base = lake.path if lake.is_local else lake.url
    return [f"{base(f'{FRAMES_PREFIX}/dt={day.isoformat()}')}/*.parquet" for day in partitions]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The zone's schema exactly: columns in contract order and type (a query may widen an int, never rename)."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"rows lack contract columns {missing}")
    return table.select(schema.names).cast(schema)


def _is_sorted(table: pa.Table, keys: Sequence[str]) -> bool:
    """Whether each row's `keys` are >= the previous row's (one linear pass; a null key counts as unsorted)."""
    if table.num_rows < 2:
        return True
    in_order = None
    for key in reversed(keys):  # a row is in order if an earlier key rises, or ties and the later keys are in order
        previous, current = table[key].slice(0, table.num_rows - 1), table[key].slice(1)
        if in_order is None:
            in_order = pc.less_equal(previous, current)
        else:
            in_order = pc.or_(pc.less(previous, current), pc.and_(pc.equal(previous, current), in_order))
    return bool(pc.all(in_order, skip_nulls=False).as_py())


def _sorted(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Rows ordered by `keys` (a stable sort: equal keys keep their order, so the same rows give the same bytes)."""
    if _is_sorted(table, keys):
        return table  # the SQL's `order by` already did it: no copy of a million cell rows
    return table.sort_by([(key, "ascending") for key in keys])


def write_computed(lake: Lake, day: date, daily: pa.Table, cell_daily: pa.Table) -> int:
    """Replace one date's computed daily and cell rows (an empty day deletes them); returns the daily row count.

    A vehicle has one computed daily row per date (what lets read_daily skip its de-duplication)."""
    if daily.num_rows and pc.count_distinct(daily["vin"]).as_py() != daily.num_rows:
        raise ValueError(f"daily rows of {day} repeat a vehicle: a computed day holds one row per vin")
    for zone, rows, schema in ((DAILY_PREFIX, daily, DAILY_SCHEMA), (CELL_DAILY_PREFIX, cell_daily, CELL_DAILY_SCHEMA)):
        key = partition_key(zone, day)
        if rows.num_rows:
            lake.write_parquet(key, _sorted(_conform(rows, schema), SORT_KEYS[zone]), COMPUTED_PARQUET_OPTIONS)
        else:
            lake.delete(key)
    return daily.num_rows


def write_imported(lake: Lake, day: date, rows: pa.Table, import_id: str) -> str:
    """Write one date's imported summary rows under the import's id; returns the key."""
    key = partition_key(DAILY_PREFIX, day, f"{IMPORT_PART_PREFIX}{import_id}")
    lake.write_parquet(key, _conform(rows, DAILY_SCHEMA))
    return key


def _read(lake: Lake, keys: list[str], schema: pa.Schema, columns: list[str] | None = None,
          where: pc.Expression | None = None) -> pa.Table:
    if not keys:
        empty = schema.empty_table()
        return empty.select(columns) if columns is not None else empty
    dataset = ds.dataset([lake.path(k) for k in keys], schema=schema, format="parquet", filesystem=lake.fs)
    return dataset.to_table(columns=columns, filter=where)


def read_cell_daily(lake: Lake, first: date | None = None, last: date | None = None,
                    vins: Sequence[str] | None = None, columns: list[str] | None = None) -> pa.Table:
    """Per-cell rows of the dates in [first, last] (either end open); only these vehicles' and columns, if given."""
    if isinstance(vins, str):
        raise ValueError(f"vins: expected a list of VINs, got the string {vins!r} (pass [{vins!r}] for one vehicle)")
    unknown = [c for c in columns or () if c not in CELL_DAILY_SCHEMA.names]
    if unknown:
        raise ValueError(f"columns: {unknown} are not cell_daily columns ({', '.join(CELL_DAILY_SCHEMA.names)})")
    keys = [key for day, _, key in _partitions(lake, CELL_DAILY_PREFIX) if _in_range(day, first, last)]
    where = pc.field("vin").isin(pa.array(list(vins), pa.string())) if vins is not None else None
    return _read(lake, keys, CELL_DAILY_SCHEMA, columns, where)


def read_daily(lake: Lake, first: date | None = None, last: date | None = None,
               columns: list[str] | None = None, ordered: bool = True) -> pa.Table:
    """Daily rows of the dates in [first, last], one per (vin, dt): a computed row wins over an imported one.

    columns: only these (vin and dt are always read: they decide which row wins). ordered: sorted by vin and dt
    (False: in no promised order, for readers that group the rows themselves)."""
    found = [(day, part, key) for day, part, key in _partitions(lake, DAILY_PREFIX) if _in_range(day, first, last)]
    # Computed objects first, so that a stable de-duplication keeps their rows.
    found.sort(key=lambda item: (item[1] != COMPUTED_PART, item[0], item[1]))
    schema = DAILY_SCHEMA
    if columns is not None:
        wanted = ["vin", "dt", *(c for c in columns if c not in ("vin", "dt"))]
        schema = pa.schema([DAILY_SCHEMA.field(c) for c in wanted])
    table = _read(lake, [key for _, _, key in found], schema)
    if table.num_rows == 0:
        return table
    # One computed object per date holds one row per vehicle (write_computed): only imports can repeat a key.
    if any(part != COMPUTED_PART for _, part, _ in found):
        table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
        first_rows = table.group_by(["vin", "dt"], use_threads=False).aggregate([("_row", "min")])["_row_min"]
        table = table.take(first_rows).drop_columns(["_row"])
    return table.sort_by([("vin", "ascending"), ("dt", "ascending")]) if ordered else table


def daily_keys(lake: Lake) -> set[tuple[str, date]]:
    """Every (vin, dt) the daily zone holds, from any source (what an import checks its rows against)."""
    table = read_daily(lake).select(["vin", "dt"])
    return set(zip(table["vin"].to_pylist(), table["dt"].to_pylist(), strict=True))


def days_between(first: date, last: date) -> list[date]:
    """Every date from first to last inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
