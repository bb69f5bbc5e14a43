"""Rejected rows, collected rule by rule: each row keeps the first rule it broke, with column and value."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa

from pipelines.schema import QUARANTINE_SCHEMA


class Rejections:
    """Row-level verdicts for one object's rows (indexes into the raw table)."""

    def __init__(self, num_rows: int):
        self.rejected = np.zeros(num_rows, dtype=bool)
        self._rows: list[np.ndarray] = []
        self._rule: list[str] = []
        self._column: list[str] = []
        self._values: list[Sequence[str]] = []
        self._reasons: list[Sequence[str]] = []

    def add(self, mask: np.ndarray, rule: str, column: str, values: Sequence[object] | Callable[[np.ndarray], Sequence[object]],
            reason: str | Sequence[str]) -> int:
        """Reject rows where `mask` holds (and no earlier rule did). Returns how many.

        `values` is one value per row, or a function giving the values of the rows it is handed (so costly
        formatting happens only for rejected rows). `reason` is a template using {value}, or one reason per row.
        """
        new = np.flatnonzero(mask & ~self.rejected)
        if not len(new):
            return 0
        self.rejected[new] = True
        texts = [_show(v) for v in values(new)] if callable(values) else [_show(values[i]) for i in new]
        self._rows.append(new)
        self._rule.append(rule)
        self._column.append(column)
        self._values.append(texts)
        if isinstance(reason, str):
            self._reasons.append([reason.format(value=t) for t in texts])
        else:
            self._reasons.append([reason[i] for i in new])
        return len(new)

    def reject_all(self, rule: str, column: str, reason: str) -> int:
        """Reject every row not yet rejected, for one reason that applies to the whole object."""
        n = len(self.rejected)  # the reason is finished text, not a template: it may hold braces (regex {17})
        return self.add(np.ones_like(self.rejected), rule, column, [""] * n, [reason] * n)

    @property
    def count(self) -> int:
        return int(self.rejected.sum())

    def count_in(self, start: int = 0, stop: int | None = None) -> int:
        """Rejected rows among rows start..stop-1."""
        return int(self.rejected[start:stop].sum())

    def by_rule(self, start: int = 0, stop: int | None = None) -> dict[str, int]:
        """How many rows each rule rejected (among rows start..stop-1)."""
        stop = len(self.rejected) if stop is None else stop
        counts: dict[str, int] = {}
        for rule, rows in zip(self._rule, self._rows, strict=True):
            n = int(((rows >= start) & (rows < stop)).sum())
            if n:
                counts[rule] = counts.get(rule, 0) + n
        return counts

    def to_table(self, raw: pa.Table, source_key: str, source_id: str, row_numbers: Callable[[np.ndarray], np.ndarray],
                 now: datetime, start: int = 0, stop: int | None = None) -> pa.Table:
        """Quarantine records of rows start..stop-1: rule, column, value, reason and the raw row as JSON, in row order.

        `row_numbers` turns row indexes relative to `start` into the object's own line numbers.
        """
        if not self._rows:
            return QUARANTINE_SCHEMA.empty_table()
        stop = len(self.rejected) if stop is None else stop
        rows = np.concatenate(self._rows)
        order = np.argsort(rows, kind="stable")
        order = order[(rows[order] >= start) & (rows[order] < stop)]
        if not len(order):
            return QUARANTINE_SCHEMA.empty_table()
        rows = rows[order]
        expand = lambda parts: [p for part in parts for p in part]  # noqa: E731
        rule = np.repeat(self._rule, [len(r) for r in self._rows])[order]
        column = np.repeat(self._column, [len(r) for r in self._rows])[order]
        values = np.array(expand(self._values), dtype=object)[order]
        reasons = np.array(expand(self._reasons), dtype=object)[order]
        raw_rows = raw.take(pa.array(rows)).to_pylist()
        return pa.table(
            {
                "source_key": [source_key] * len(rows),
                "source_id": [source_id] * len(rows),
                "row_number": row_numbers(rows - start),
                "rule": rule.tolist(),
                "column": column.tolist(),
                "value": values.tolist(),
                "reason": reasons.tolist(),
                "raw": [json.dumps(r, default=str, allow_nan=True)[: 64 << 10] for r in raw_rows],
                "quarantined_at": [now] * len(rows),
            },
            schema=QUARANTINE_SCHEMA,
        )


def _show(value: object) -> str:
    """A value as a person would want to read it in a reason."""
    if value is None:
        return "(empty)"
    if isinstance(value, float):
        value = float(value)  # numpy 2 scalars repr as np.float64(…)
        return repr(value) if not value.is_integer() else str(int(value)) if abs(value) < 1e15 else repr(value)
    text = str(value)
    return text if len(text) <= 80 else f"{text[:77]}…"


def quarantine_record(source_key: str, source_id: str, row_number: int, rule: str, column: str, value: str,
                      reason: str, raw: str | None, now: datetime) -> dict:
    """One quarantine record for things that are not rows of the raw table (bad lines, whole files)."""
    return {"source_key": source_key, "source_id": source_id, "row_number": row_number, "rule": rule,
            "column": column, "value": value, "reason": reason, "raw": raw, "quarantined_at": now}
