"""Row rules of the frame contract, applied to mapped frames before anything is written."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.rejections import Rejections
from pipelines.quality.rules import RANGE_RULES, REQUIRED_COLUMNS, SET_RULES, VIN_PATTERN, frame_metrics


def _numpy(table: pa.Table, column: str) -> np.ndarray:
    return table[column].to_numpy(zero_copy_only=False)


def check_frames(frames: pa.Table, rejections: Rejections, earliest: datetime, latest: datetime,
                 list_metrics: dict | None = None, object_ids: np.ndarray | None = None) -> pa.Table:
    """Reject rows that break a contract rule; each keeps the first rule it broke. Returns the frame metrics."""
    vin = _numpy(frames, "vin")
    vin_ok = pc.fill_null(pc.match_substring_regex(frames["vin"], VIN_PATTERN), False).to_numpy(zero_copy_only=False)
    rejections.add(~vin_ok, "vin_format", "vin", vin,
                   "VIN '{value}' is not 17 characters of A–Z (no I, O, Q) and 0–9")

    ts = frames["ts"]
    def shown_ts(rows: np.ndarray) -> list[str]:
        return pc.strftime(ts.take(pa.array(rows)), "%Y-%m-%dT%H:%M:%SZ").to_pylist()

    ts_ms = pc.fill_null(ts.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    known = pc.is_valid(ts).to_numpy(zero_copy_only=False)
    early_ms, late_ms = int(earliest.timestamp() * 1000), int(latest.timestamp() * 1000)
    rejections.add(known & (ts_ms > late_ms), "ts_future", "ts", shown_ts,
                   f"timestamp {{value}} is in the future (later than {latest:%Y-%m-%d %H:%M} UTC)")
    rejections.add(known & (ts_ms < early_ms), "ts_too_old", "ts", shown_ts,
                   f"timestamp {{value}} is before {earliest:%Y-%m-%d}, older than any GB/T 32960-2016 report")

    for column in REQUIRED_COLUMNS:
        if column in ("vin", "ts"):
            continue
        missing = pc.is_null(frames[column]).to_numpy(zero_copy_only=False)
        rejections.add(missing, "required", column, [""] * frames.num_rows, f"{column} is required but empty")

    metrics = frame_metrics(frames, list_metrics)
    no_cells = _numpy(metrics, "cell_valid_count") == 0
    rejections.add(no_cells, "cells_missing", "cell_mv", [""] * frames.num_rows,
                   "frame carries no valid cell voltage")
    for rule in RANGE_RULES:
        values = pc.fill_null(metrics[rule.column].cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        outside = ((values < rule.low) if rule.low is not None else False) | ((values > rule.high) if rule.high is not None else False)
        rejections.add(np.asarray(outside), rule.name, rule.column, values,
                       f"{rule.column} = {{value}} is outside {rule.low:g}…{rule.high:g} ({rule.meaning})")
    for rule in SET_RULES:
        values = pc.fill_null(metrics[rule.column].cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        bad = ~np.isnan(values) & ~np.isin(values, rule.allowed)
        rejections.add(bad, rule.name, rule.column, values, f"{rule.column} = {{value}} is not one of {rule.allowed} ({rule.meaning})")

    objects = object_ids if object_ids is not None else np.zeros(frames.num_rows, dtype=np.int64)
    _check_cell_count_stable(vin, objects, _numpy(metrics, "cell_count"), rejections)
    return metrics


def _check_cell_count_stable(vin: np.ndarray, objects: np.ndarray, cell_count: np.ndarray, rejections: Rejections) -> None:
    """A pack does not change its number of cells mid-file: rows off the vehicle's usual count in that file
    (landing object) are rejected."""
    alive = ~rejections.rejected
    if not alive.any():
        return
    rows = pd.DataFrame({"object": objects, "vin": vin, "cells": cell_count})
    counted = rows[alive].groupby(["object", "vin", "cells"], sort=False).size().rename("n").reset_index()
    usual = counted.sort_values(["n", "cells"], ascending=[False, True]).drop_duplicates(["object", "vin"])
    expected = rows.merge(usual[["object", "vin", "cells"]].rename(columns={"cells": "usual"}), how="left",
                          on=["object", "vin"])["usual"].fillna(-1).to_numpy().astype(np.int64)
    off = alive & (cell_count != expected)
    reasons = np.empty(len(vin), dtype=object)
    reasons[off] = [f"frame has {n} cell voltages; this vehicle's other frames in the file have {e}"
                    for n, e in zip(cell_count[off], expected[off], strict=True)]
    rejections.add(off, "cell_count_changed", "cell_mv", cell_count.astype(str), reasons)
