"""Row rules of the frame contract, applied to mapped frames before anything is written."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.dedup import vin_ranks
from pipelines.ingest.rejections import Rejections
from pipelines.quality.rules import RANGE_RULES, REQUIRED_COLUMNS, SET_RULES, VIN_PATTERN, frame_metrics


def _numpy(table: pa.Table, column: str) -> np.ndarray:
    return table[column].to_numpy(zero_copy_only=False)


def check_frames(frames: pa.Table, rejections: Rejections, earliest: datetime, latest: datetime,
                 list_metrics: dict | None = None, object_ids: np.ndarray | None = None,
                 vin_rank: np.ndarray | None = None) -> pa.Table:
    """Reject rows that break a contract rule; each keeps the first rule it broke. Returns the frame metrics."""
    # The pattern is matched once per distinct VIN, not once per frame.
    encoded = pc.dictionary_encode(frames["vin"].combine_chunks())
    valid_vin = pc.fill_null(pc.match_substring_regex(encoded.dictionary, VIN_PATTERN), False).to_numpy(zero_copy_only=False)
    vin_ok = np.append(valid_vin, False)[pc.fill_null(encoded.indices, len(valid_vin)).to_numpy(zero_copy_only=False)]
    rejections.add(~vin_ok, "vin_format", "vin", lambda rows: frames["vin"].take(pa.array(rows)).to_pylist(),
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
    ranks = vin_rank if vin_rank is not None else vin_ranks(frames["vin"])
    _check_cell_count_stable(ranks, objects, _numpy(metrics, "cell_count"), rejections)
    return metrics


def _check_cell_count_stable(ranks: np.ndarray, objects: np.ndarray, cell_count: np.ndarray, rejections: Rejections) -> None:
    """A pack does not change its number of cells mid-file: rows off the vehicle's usual count in that file
    (landing object) are rejected."""
    alive = ~rejections.rejected
    if not alive.any():
        return
    groups, group_of = np.unique(objects * (int(ranks.max()) + 1) + ranks, return_inverse=True)
    lowest, highest = np.full(len(groups), np.iinfo(np.int64).max), np.full(len(groups), -1)
    np.minimum.at(lowest, group_of[alive], cell_count[alive])
    np.maximum.at(highest, group_of[alive], cell_count[alive])
    if ((lowest == highest) | (highest == -1)).all():  # the usual window: one count per vehicle and file
        return
    rows = pd.DataFrame({"group": group_of, "cells": cell_count})
    counted = rows[alive].groupby(["group", "cells"], sort=False).size().rename("n").reset_index()
    usual = counted.sort_values(["n", "cells"], ascending=[False, True]).drop_duplicates("group")
    expected = rows.merge(usual[["group", "cells"]].rename(columns={"cells": "usual"}), how="left",
                          on="group")["usual"].fillna(-1).to_numpy().astype(np.int64)
    off = alive & (cell_count != expected)
    reasons = np.empty(len(cell_count), dtype=object)
    reasons[off] = [f"frame has {n} cell voltages; this vehicle's other frames in the file have {e}"
                    for n, e in zip(cell_count[off], expected[off], strict=True)]
    rejections.add(off, "cell_count_changed", "cell_mv", cell_count.astype(str), reasons)
