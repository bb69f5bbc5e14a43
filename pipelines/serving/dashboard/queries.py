"""The dashboard's views as plain JSON-ready values, computed from what lake_reads.py and the event store return.

Nothing here reads the lake or the store: each function takes tables and rows and returns dicts, so the figures
the dashboard shows are tested on small hand-made inputs. Every view is bounded whatever the fleet's size: the
fleet table is a page of it, the timeline one value per day, a vehicle's views that vehicle's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.serving.dashboard.lake_reads import DailyCounts, PredictionCounts
from pipelines.simulate.bms import DEFAULT_THRESHOLDS

SortKey = Literal["probability", "change", "vin", "suspect_cell", "bms_alarm_days", "range_max_mv"]
Show = Literal["all", "predicted", "bms"]
SORT_KEYS, SHOW = get_args(SortKey), get_args(Show)


def number(value: Any, digits: int | None = None) -> float | None:
    """A finite float (rounded if asked), or None for missing, NaN and ±inf (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


# ---------------------------------------------------------------------------------------------- fleet


def fleet_rows(latest: pa.Table, previous: pa.Table | None, daily: pa.Table) -> list[dict]:
    """One row per vehicle scored at as_of: its risk, change since the previous scoring, suspect cell, strongest
    reason, and from its daily rows of the 14 context days the BMS alarm days and newest cell range.

    `latest`/`previous`: one feature set's newest batch predictions (lake_reads.NEWEST_PREDICTION_SCHEMA);
    `daily`: lake_reads.DAILY_COLUMNS of the context days."""
    before = (dict(zip(previous["vin"].to_pylist(), previous["probability"].to_pylist(), strict=True))
              if previous is not None else {})
    newest = {row["vin"]: row for row in _per_vehicle(daily)}
    rows = []
    for row in latest.to_pylist():
        vin, day = row["vin"], newest.get(row["vin"], {})
        earlier = before.get(vin)
        reason = ({"feature": row["reason_feature"], "value": number(row["reason_value"]),
                   "contribution": number(row["reason_contribution"], 4)} if row["reason_feature"] else None)
        rows.append({
            "vin": vin, "probability": number(row["probability"], 4), "alarm": bool(row["alarm"]),
            "threshold": number(row["threshold"], 4),
            "change": number(row["probability"] - earlier, 4) if earlier is not None else None,
            "suspect_cell": row["suspect_cell"], "reason": reason, "model_version": row["model_version"],
            "bms_alarm_days": day.get("alarm_days", 0), "last_day": day.get("dt"),
            "range_max_mv": number(day.get("cell_range_max_mv"), 1),
            "range_p95_mv": number(day.get("cell_range_p95_mv"), 1),
        })
    return rows


def with_alerts(rows: list[dict], episodes: Sequence[dict], as_of: date) -> list[dict]:
    """The rows with `alert_since`: for a vehicle alarming at as_of, the start of its latest alert episode."""
    since: dict[str, date] = {}
    for episode in episodes:
        if since.get(episode["vin"], date.min) < episode["first_as_of"] <= as_of:
            since[episode["vin"]] = episode["first_as_of"]
    return [{**row, "alert_since": since.get(row["vin"]) if row["alarm"] else None} for row in rows]


def _per_vehicle(daily: pa.Table) -> list[dict]:
    """Per vehicle: its days with the BMS alarm, and its newest daily row's date and cell ranges."""
    if daily.num_rows == 0:
        return []
    ordered = daily.sort_by([("vin", "ascending"), ("dt", "ascending")])
    newest = pc.ScalarAggregateOptions(skip_nulls=False)  # the newest row's value, even when it is missing
    grouped = ordered.group_by("vin", use_threads=False).aggregate(
        [("alarm", "sum"), ("dt", "last", newest), ("cell_range_max_mv", "last", newest),
         ("cell_range_p95_mv", "last", newest)])
    return [{"vin": vin, "alarm_days": int(days or 0), "dt": dt, "cell_range_max_mv": high, "cell_range_p95_mv": p95}
            for vin, days, dt, high, p95 in zip(*(grouped[name].to_pylist() for name in (
                "vin", "alarm_sum", "dt_last", "cell_range_max_mv_last", "cell_range_p95_mv_last")), strict=True)]


def fleet_page(rows: list[dict], sort: str = "probability", descending: bool = True, query: str = "",
               show: str = "all", page: int = 1, page_size: int = 50) -> dict:
    """A sorted, filtered page of the fleet rows (missing values last in either order), with the match count."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort {sort!r} is not one of {', '.join(SORT_KEYS)}")
    if show not in SHOW:
        raise ValueError(f"show {show!r} is not one of {', '.join(SHOW)}")
    needle = query.strip().upper()
    matching = [row for row in rows if needle in row["vin"]
                and (show == "all" or (show == "predicted" and row["alarm"]) or (show == "bms" and row["bms_alarm_days"]))]
    present = [row for row in matching if row[sort] is not None]
    absent = [row for row in matching if row[sort] is None]
    present.sort(key=lambda row: row["vin"])  # ties in the sort column in VIN order, whatever the direction
    present.sort(key=lambda row: row[sort], reverse=descending)
    ordered = present + absent
    pages = max(1, math.ceil(len(ordered) / page_size))
    page = min(max(page, 1), pages)
    return {"matching": len(ordered), "page": page, "pages": pages, "page_size": page_size,
            "rows": ordered[(page - 1) * page_size: page * page_size]}


def fleet_summary(rows: list[dict], episodes: Sequence[dict], as_of: date) -> dict:
    """The fleet's headline figures at as_of."""
    started = [e for e in episodes if as_of - timedelta(days=13) <= e["first_as_of"] <= as_of]
    return {"vehicles": len(rows), "predicted_alarms": sum(row["alarm"] for row in rows),
            "bms_alarmed_vehicles": sum(1 for row in rows if row["bms_alarm_days"]),
            "alerts_started_14d": len(started),
            "mean_probability": number(sum(row["probability"] for row in rows) / len(rows), 4) if rows else None}


# ---------------------------------------------------------------------------------------------- timeline


def timeline(days: Sequence[date], daily: dict[date, DailyCounts], predictions: dict[date, dict[str, PredictionCounts]],
             episodes: Sequence[dict], feature_set: str) -> dict:
    """Per day: vehicles reporting and with the BMS alarm (daily rows), vehicles scored and predicted to alarm within
    14 days (batch predictions at that as_of), alert episodes started. None where the lake has nothing that day."""
    started: dict[date, int] = {}
    for episode in episodes:
        if episode["feature_set"] == feature_set:
            started[episode["first_as_of"]] = started.get(episode["first_as_of"], 0) + 1
    scored = [predictions.get(day, {}).get(feature_set) for day in days]
    return {"dates": list(days), "feature_set": feature_set,
            "vehicles_reporting": [daily[day].vehicles if day in daily else None for day in days],
            "bms_alarmed": [daily[day].alarmed if day in daily else None for day in days],
            "scored": [counts.scored if counts else None for counts in scored],
            "predicted_alarms": [counts.alarms if counts else None for counts in scored],
            "alerts_started": [started.get(day, 0) for day in days]}


# ---------------------------------------------------------------------------------------------- a vehicle


def alarm_threshold() -> dict:
    """The cell-range rule that sets GB/T 32960 bit 10 in this fleet's BMS (the simulator's calibration)."""
    t = DEFAULT_THRESHOLDS
    return {"set_mv": t.range_set_mv, "release_mv": t.range_release_mv, "level2_mv": t.range_level2_mv,
            "debounce_frames": t.debounce_frames,
            "rule": (f"bit 10 sets after {t.debounce_frames} frames in a row with a cell range (max − min) of at least "
                     f"{t.range_set_mv:.0f} mV and clears after {t.debounce_frames} below {t.range_release_mv:.0f} mV "
                     f"(the BMS calibration in pipelines/simulate/bms.py; GB/T 32960 leaves it to each manufacturer)")}


def probability_history(predictions: Sequence[dict]) -> list[dict]:
    """A vehicle's predictions as one oldest-first series per feature set and source (batch, api)."""
    series: dict[tuple[str, str], dict] = {}
    for row in sorted(predictions, key=lambda r: (r["as_of"], r["created_at"])):
        line = series.setdefault((row["feature_set"], row["source"]), {
            "feature_set": row["feature_set"], "source": row["source"], "as_of": [], "probability": [],
            "threshold": [], "alarm": [], "model_version": []})
        line["as_of"].append(row["as_of"])
        line["probability"].append(number(row["probability"], 4))
        line["threshold"].append(number(row["threshold"], 4))
        line["alarm"].append(bool(row["alarm"]))
        line["model_version"].append(row["model_version"])
    return [series[key] for key in sorted(series)]


def latest_prediction(predictions: Sequence[dict], feature_set: str) -> dict | None:
    """The newest prediction of a feature set (of any, if it has none), with its reasons."""
    if not predictions:
        return None
    ordered = sorted(predictions, key=lambda r: (r["as_of"], r["source"] == "batch", r["created_at"]), reverse=True)
    row = next((r for r in ordered if r["feature_set"] == feature_set), ordered[0])
    return {"as_of": row["as_of"], "feature_set": row["feature_set"], "source": row["source"],
            "model_version": row["model_version"], "probability": number(row["probability"], 4),
            "alarm": bool(row["alarm"]), "threshold": number(row["threshold"], 4), "suspect_cell": row["suspect_cell"],
            "reasons": [{"feature": r["feature"], "value": number(r["value"]), "contribution": number(r["contribution"], 4)}
                        for r in row["reasons"] or []]}


def range_trend(daily: pa.Table, days: Sequence[date]) -> dict:
    """A vehicle's daily cell voltage range (max, p95, mean of its frames), BMS alarm days and suspect cell, per day."""
    by_day = {row["dt"]: row for row in daily.to_pylist()}

    def column(name: str, digits: int | None = 1) -> list:
        return [number(by_day[day][name], digits) if day in by_day else None for day in days]

    return {"dates": list(days), "range_max_mv": column("cell_range_max_mv"), "range_p95_mv": column("cell_range_p95_mv"),
            "range_mean_mv": column("cell_range_mean_mv"),
            "bms_alarm": [bool(by_day[day]["alarm"]) if day in by_day else None for day in days],
            "suspect_cell": [by_day[day]["suspect_cell"] if day in by_day else None for day in days],
            "suspect_dev_mv": column("suspect_cell_dev_mv")}


@dataclass(frozen=True)
class Heatmap:
    """Cells × days of mean deviation from the pack median (mV)."""

    dates: list[date]
    cells: list[int]
    deviation_mv: list[list[float | None]]  # one list per cell, one value per date


def cell_heatmap(cells: pa.Table, days: Sequence[date]) -> Heatmap:
    """Rows (dt, cell_index, value) laid out as cells × days; a day or cell without a value is None."""
    count = int(pc.max(cells["cell_index"]).as_py() or 0) if cells.num_rows else 0
    column = {day: n for n, day in enumerate(days)}
    grid: list[list[float | None]] = [[None] * len(days) for _ in range(count)]
    for day, cell, value in zip(cells["dt"].to_pylist(), cells["cell_index"].to_pylist(), cells["value"].to_pylist(),
                                strict=True):
        if day in column and cell >= 1:
            grid[cell - 1][column[day]] = number(value, 1)
    return Heatmap(list(days), list(range(1, count + 1)), grid)


def heatmap_view(heatmap: Heatmap, suspect_cell: int | None, daily_suspects: dict, measure: str) -> dict:
    """The heatmap with the suspect cell to mark and a colour range symmetric around zero.

    The range reaches the 98th percentile of |deviation| (in steps of 5 mV, at least 5): a few extreme days must not
    wash out every other cell, and a drifting cell saturates, which is what it should look like."""
    values = sorted(abs(v) for row in heatmap.deviation_mv for v in row if v is not None)
    reach = values[min(len(values) - 1, int(0.98 * len(values)))] if values else 0.0
    span = max(5.0, math.ceil(reach / 5) * 5)
    # Days whose most deviating cell is another one than the marked suspect (marking its own row would hide it).
    other = [d for d in heatmap.dates if daily_suspects.get(d) is not None and daily_suspects[d] != suspect_cell]
    return {"measure": measure, "dates": heatmap.dates, "cells": heatmap.cells, "deviation_mv": heatmap.deviation_mv,
            "color_span_mv": span, "suspect_cell": suspect_cell,
            "daily_suspects": {"dates": other, "cells": [daily_suspects[d] for d in other]}}


def calendar(first: date, last: date) -> list[date]:
    """Every date from first to last inclusive."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# ---------------------------------------------------------------------------------------------- the model


# (key, label, how to read it from an evaluation dict, digits)
METRICS: tuple[tuple[str, str, tuple, int], ...] = (
    ("average_precision", "Average precision", ("average_precision",), 3),
    ("roc_auc", "ROC AUC", ("roc_auc",), 3),
    ("precision", "Precision at threshold", ("at_threshold", "precision"), 3),
    ("recall", "Recall at threshold", ("at_threshold", "recall"), 3),
    ("vehicle_auc", "Vehicle AUC", ("vehicles", "vehicle_auc"), 3),
    ("faulty_caught", "Faulty vehicles caught", ("vehicles", "faulty_caught"), 0),
    ("faulty_vehicles", "Faulty vehicles", ("vehicles", "faulty_vehicles"), 0),
    ("healthy_alarmed", "Healthy vehicles alarmed", ("vehicles", "healthy_alarmed"), 0),
    ("healthy_vehicles", "Healthy vehicles", ("vehicles", "healthy_vehicles"), 0),
    ("median_lead_days", "Median lead (days)", ("lead_time", "median_lead_days"), 1),
    ("false_alarms_per_1000_vehicle_days", "False alarms per 1,000 vehicle-days",
     ("false_alarms_per_1000_vehicle_days",), 1),
    ("windows", "Test windows", ("windows",), 0),
    ("positive_windows", "Positive test windows", ("positive_windows",), 0),
)
FIGURES = ("roc.png", "pr.png", "calibration.png", "confusion.png", "importance.png")


def _dig(evaluation: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(evaluation, dict):
            return None
        evaluation = evaluation.get(key)
    return evaluation


def curves(evaluation: Any) -> dict | None:
    """An evaluation's ROC and PR curve points, if its card has them (`metrics.curves`), checked for shape."""
    found = _dig(evaluation, ["curves"])
    if not isinstance(found, dict):
        return None
    shapes = {"roc": ("fpr", "tpr"), "pr": ("recall", "precision")}
    out = {}
    for name, (x, y) in shapes.items():
        points = found.get(name)
        if isinstance(points, dict) and isinstance(points.get(x), list) and isinstance(points.get(y), list) \
                and len(points[x]) == len(points[y]) >= 2:
            out[name] = {"x": [number(v, 5) for v in points[x]], "y": [number(v, 5) for v in points[y]]}
    return out or None


def model_view(card: dict, report_files: Sequence[str], report_base: str) -> dict:
    """A champion's card as the model page shows it: metrics beside the reference recipe's, curves, figures."""
    ours, reference = card.get("metrics") or {}, card.get("baseline_metrics") or {}
    metrics = [{"key": key, "label": label, "digits": digits, "ours": number(_dig(ours, path), digits),
                "reference": number(_dig(reference, path), digits) if reference else None}
               for key, label, path, digits in METRICS]
    present = set(report_files)
    return {"feature_set": card.get("feature_set"), "version": card.get("version"),
            "threshold": number(card.get("threshold"), 4), "created_at": card.get("created_at"),
            "target_precision": card.get("target_precision"), "training_data": card.get("training_data"),
            "split": card.get("split"), "metrics": metrics, "curves": curves(ours),
            "reference_curves": curves(reference),
            "figures": {name.removesuffix(".png"): f"{report_base}{name}" for name in FIGURES if name in present},
            "report_url": f"{report_base}index.html" if "index.html" in present else None}
