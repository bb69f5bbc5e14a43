"""What the prediction API reads from the daily zone, held in memory per as_of date.

A request names a vehicle and an as_of date; what it needs from the lake depends only on the daily rows of the 14
days before that date: the suspect cell (every request) and the inference window (requests without features).
Reading those 14 partitions per request cost ~29 ms on a 60-vehicle lake and 1.4 s on a 100k-vehicle one, so
this module reads them once per as_of date for the whole fleet and answers from dictionaries afterwards:

- `suspects(as_of)`: every vehicle's latest named suspect cell in the context days (one read of the daily rows);
- `window(as_of, vin)`: the vehicle's inference window, from `inference_windows` over the whole fleet at that
  date (the same SQL batch inference runs), computed on the first request that needs it.

An entry stays valid while the daily objects of its context days are the same ones (key, size, modification
stamp). The daily zone is listed at most once every `revalidate_seconds` for all dates together, and again at
once when a vehicle is missing, so a vehicle whose first daily rows just landed is not refused as unknown. At
most `max_dates` dates are held (least recently used goes first); windows, the bigger part, for `max_window_dates`.
Thread-safe; one date is built once even when many requests ask for it together.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.features.window_signals import CONTEXT_DAYS
from pipelines.features.windows import inference_windows
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass
class _DateEntry:
    fingerprint: Fingerprint
    suspects: dict[str, int]
    windows: pa.Table | None = None
    window_rows: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one windows build at a time


def context_days(as_of: date) -> tuple[date, date]:
    """The first and last of the 14 days whose daily rows an as_of date's window reads."""
    return as_of - timedelta(days=CONTEXT_DAYS), as_of - timedelta(days=1)


def latest_suspects(daily: pa.Table) -> dict[str, int]:
    """Per vehicle, the suspect cell of its latest daily row that names one."""
    named = daily.select(["vin", "dt", "suspect_cell"]).filter(pc.is_valid(daily["suspect_cell"]))
    if named.num_rows == 0:
        return {}
    ordered = named.sort_by([("vin", "ascending"), ("dt", "ascending")])
    latest = ordered.group_by("vin", use_threads=False).aggregate([("suspect_cell", "last")])
    return dict(zip(latest["vin"].to_pylist(), latest["suspect_cell_last"].to_pylist(), strict=True))


class DailyContext:
    """Per as_of date: every vehicle's suspect cell and, on demand, inference window (see the module doc)."""

    def __init__(self, lake: Lake, revalidate_seconds: float = 1.0, max_dates: int = 32, max_window_dates: int = 4):
        self.lake = lake
        self.revalidate_seconds, self.max_dates, self.max_window_dates = revalidate_seconds, max_dates, max_window_dates
        self._lock = threading.Lock()  # guards _entries, _listing and _listed_at
        self._entries: OrderedDict[date, _DateEntry] = OrderedDict()
        self._building: dict[date, threading.Lock] = {}
        self._listing: list[tuple[date, str, int, int]] = []
        self._fingerprints: dict[date, Fingerprint] = {}  # per as_of, from the current listing
        self._listed_at = float("-inf")

    def suspects(self, as_of: date) -> dict[str, int]:
        """vin → the latest suspect cell its daily rows of the 14 days before as_of name (vehicles with none absent)."""
        return self._entry(as_of).suspects

    def window(self, as_of: date, vin: str) -> pa.Table | None:
        """The vehicle's inference window at as_of (one row), or None when it has no daily row in the context days."""
        found = self._window(self._entry(as_of), as_of, vin)
        if found is None:  # perhaps its first daily rows landed since the last listing: look again before refusing
            found = self._window(self._entry(as_of, relist=True), as_of, vin)
        return found

    def _window(self, entry: _DateEntry, as_of: date, vin: str) -> pa.Table | None:
        with entry.lock:
            if entry.windows is None:
                first, last = context_days(as_of)
                windows = inference_windows(daily_zone.read_daily(self.lake, first, last), [as_of])
                entry.window_rows = {v: row for row, v in enumerate(windows["vin"].to_pylist())}
                entry.windows = windows
                self._drop_old_windows(as_of)
            windows, rows = entry.windows, entry.window_rows  # a drop may clear the entry's; ours stay whole
        row = rows.get(vin)
        return None if row is None else windows.slice(row, 1)

    def _entry(self, as_of: date, relist: bool = False) -> _DateEntry:
        fingerprint = self._fingerprint(as_of, relist)
        with self._lock:
            entry = self._entries.get(as_of)
            if entry is not None and entry.fingerprint == fingerprint:
                self._entries.move_to_end(as_of)
                return entry
            building = self._building.setdefault(as_of, threading.Lock())
        with building:  # requests for the same date wait for one build instead of each reading the lake
            with self._lock:
                entry = self._entries.get(as_of)
                if entry is not None and entry.fingerprint == fingerprint:
                    return entry
            first, last = context_days(as_of)
            daily = daily_zone.read_daily(self.lake, first, last, columns=["suspect_cell"])
            entry = _DateEntry(fingerprint, latest_suspects(daily))
            with self._lock:
                self._entries[as_of] = entry
                self._entries.move_to_end(as_of)
                while len(self._entries) > self.max_dates:
                    self._entries.popitem(last=False)
            return entry

    def _fingerprint(self, as_of: date, relist: bool) -> Fingerprint:
        """The daily objects of as_of's context days, from a listing at most revalidate_seconds old (or a new one)."""
        with self._lock:
            if relist or time.monotonic() - self._listed_at >= self.revalidate_seconds:
                self._listing = daily_zone.daily_objects(self.lake)
                self._listed_at = time.monotonic()
                self._fingerprints = {}
            found = self._fingerprints.get(as_of)
            if found is None:
                first, last = context_days(as_of)
                found = tuple((key, size, mtime) for day, key, size, mtime in self._listing if first <= day <= last)
                self._fingerprints[as_of] = found
            return found

    def _drop_old_windows(self, keep: date) -> None:
        """Forget the windows of all but the max_window_dates most recently used dates (suspects stay)."""
        with self._lock:
            holding = [day for day, entry in reversed(self._entries.items()) if entry.windows is not None]
        for day in holding[self.max_window_dates:]:
            if day != keep:
                entry = self._entries.get(day)
                if entry is not None:
                    entry.windows, entry.window_rows = None, {}
