"""pipelines/serving/dashboard/queries.py: every view's figures on small hand-made tables."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from pipelines.schema import DAILY_SCHEMA
from pipelines.serving.dashboard import queries
from pipelines.serving.dashboard.lake_reads import (
    DAILY_COLUMNS,
    NEWEST_PREDICTION_SCHEMA,
    DailyCounts,
    PredictionCounts,
)

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
AT = datetime(2026, 3, 3, 6, tzinfo=UTC)


def predictions(*rows: tuple) -> pa.Table:
    """(vin, probability, suspect_cell, reason feature or None) at as_of D3, threshold 0.5."""
    return pa.Table.from_pylist([
        {"vin": vin, "as_of": D3, "feature_set": "full", "model_version": "v1", "probability": p, "alarm": p >= 0.5,
         "threshold": 0.5, "suspect_cell": cell, "reason_feature": feature, "reason_value": 12.5 if feature else None,
         "reason_contribution": 0.75 if feature else None, "created_at": AT} for vin, p, cell, feature in rows],
        NEWEST_PREDICTION_SCHEMA)


def daily(*rows: tuple) -> pa.Table:
    """(vin, dt, alarm, cell_range_max_mv)."""
    return pa.Table.from_pylist([
        {"vin": vin, "dt": day, "alarm": alarm, "cell_range_max_mv": high, "cell_range_p95_mv": high and high / 2,
         "cell_range_mean_mv": 1.0, "suspect_cell": 4, "suspect_cell_dev_mv": -3.0} for vin, day, alarm, high in rows],
        DAILY_SCHEMA.empty_table().select(DAILY_COLUMNS).schema)


def test_fleet_rows_join_risk_change_reason_and_the_context_days() -> None:
    latest = predictions(("VA", 0.9, 7, "cell_range_max_mv_lag1"), ("VB", 0.2, None, None), ("VC", 0.6, 2, None))
    previous = predictions(("VA", 0.7, 7, None), ("VB", 0.25, None, None))
    rows = queries.fleet_rows(latest, previous, daily(("VA", D1, False, 100.0), ("VA", D2, True, 310.0),
                                                      ("VB", D1, False, 30.0), ("VB", D2, False, None)))
    by_vin = {row["vin"]: row for row in rows}
    assert by_vin["VA"] == {"vin": "VA", "probability": 0.9, "alarm": True, "threshold": 0.5, "change": 0.2,
                            "suspect_cell": 7, "reason": {"feature": "cell_range_max_mv_lag1", "value": 12.5,
                                                          "contribution": 0.75},
                            "model_version": "v1", "bms_alarm_days": 1, "last_day": D2, "range_max_mv": 310.0,
                            "range_p95_mv": 155.0}
    # the newest day's range even when it is missing; no previous scoring, no daily rows: None and 0
    assert (by_vin["VB"]["change"], by_vin["VB"]["last_day"], by_vin["VB"]["range_max_mv"]) == (-0.05, D2, None)
    assert (by_vin["VC"]["change"], by_vin["VC"]["bms_alarm_days"], by_vin["VC"]["last_day"], by_vin["VC"]["reason"]) == (
        None, 0, None, None)


def test_alerts_mark_the_latest_episode_of_vehicles_alarming_now() -> None:
    rows = [{"vin": "VA", "alarm": True}, {"vin": "VB", "alarm": False}, {"vin": "VC", "alarm": True}]
    episodes = [{"vin": "VA", "first_as_of": D1}, {"vin": "VA", "first_as_of": D2}, {"vin": "VB", "first_as_of": D1},
                {"vin": "VC", "first_as_of": date(2026, 3, 9)}]  # after as_of: not yet
    marked = queries.with_alerts(rows, episodes, D3)
    assert [row["alert_since"] for row in marked] == [D2, None, None]


def fleet(n: int) -> list[dict]:
    return [{"vin": f"V{i:02d}", "probability": i / 100, "alarm": i >= 50, "change": None if i % 4 == 0 else i / 1000,
             "suspect_cell": i % 3, "bms_alarm_days": i % 5, "range_max_mv": float(i)} for i in range(n)]


def test_fleet_page_sorts_pages_and_filters_on_the_server() -> None:
    page = queries.fleet_page(fleet(100), sort="probability", descending=True, page=2, page_size=10)
    assert [row["vin"] for row in page["rows"]] == [f"V{i:02d}" for i in range(89, 79, -1)]
    assert (page["matching"], page["page"], page["pages"], page["page_size"]) == (100, 2, 10, 10)
    predicted = queries.fleet_page(fleet(100), show="predicted", page_size=200)
    assert predicted["matching"] == 50 and all(row["alarm"] for row in predicted["rows"])
    bms = queries.fleet_page(fleet(100), show="bms", page_size=200)
    assert bms["matching"] == 80
    assert [row["vin"] for row in queries.fleet_page(fleet(100), query=" v0 ")["rows"]] == [f"V0{i}" for i in range(9, -1, -1)]


def test_missing_values_sort_last_in_either_order_and_ties_go_by_vin() -> None:
    rows = fleet(8)
    ascending = queries.fleet_page(rows, sort="change", descending=False)["rows"]
    descending = queries.fleet_page(rows, sort="change", descending=True)["rows"]
    assert [r["vin"] for r in ascending] == ["V01", "V02", "V03", "V05", "V06", "V07", "V00", "V04"]
    assert [r["vin"] for r in descending] == ["V07", "V06", "V05", "V03", "V02", "V01", "V00", "V04"]
    by_cell = queries.fleet_page(rows, sort="suspect_cell", descending=True)["rows"]
    assert [r["vin"] for r in by_cell] == ["V02", "V05", "V01", "V04", "V07", "V00", "V03", "V06"]


def test_a_page_past_the_end_is_the_last_page_and_bad_choices_are_named() -> None:
    page = queries.fleet_page(fleet(25), page=9, page_size=10)
    assert (page["page"], len(page["rows"])) == (3, 5)
    assert queries.fleet_page([], page=4)["pages"] == 1
    with pytest.raises(ValueError, match="sort 'risk' is not one of probability, change"):
        queries.fleet_page(fleet(3), sort="risk")
    with pytest.raises(ValueError, match="show 'some' is not one of all, predicted, bms"):
        queries.fleet_page(fleet(3), show="some")


def test_fleet_summary_counts_the_headline_figures() -> None:
    rows = [{"probability": 0.9, "alarm": True, "bms_alarm_days": 2}, {"probability": 0.2, "alarm": False,
                                                                       "bms_alarm_days": 0},
            {"probability": 0.4, "alarm": False, "bms_alarm_days": 1}]
    episodes = [{"first_as_of": date(2026, 2, 17)}, {"first_as_of": date(2026, 2, 18)}, {"first_as_of": D3}]
    assert queries.fleet_summary(rows, episodes, D3) == {"vehicles": 3, "predicted_alarms": 1,
                                                         "bms_alarmed_vehicles": 2, "alerts_started_14d": 2,
                                                         "mean_probability": 0.5}
    assert queries.fleet_summary([], [], D3)["mean_probability"] is None


def test_timeline_is_one_value_per_day_and_none_where_the_lake_has_nothing() -> None:
    days = [D1, D2, D3]
    result = queries.timeline(days, {D1: DailyCounts(10, 1), D2: DailyCounts(9, 3)},
                              {D2: {"full": PredictionCounts(9, 4), "signals6": PredictionCounts(9, 6)},
                               D3: {"signals6": PredictionCounts(8, 1)}},
                              [{"vin": "VA", "feature_set": "full", "first_as_of": D2},
                               {"vin": "VB", "feature_set": "full", "first_as_of": D2},
                               {"vin": "VA", "feature_set": "signals6", "first_as_of": D3}], "full")
    assert result == {"dates": days, "feature_set": "full", "vehicles_reporting": [10, 9, None],
                      "bms_alarmed": [1, 3, None], "scored": [None, 9, None], "predicted_alarms": [None, 4, None],
                      "alerts_started": [0, 2, 0]}


def test_the_alarm_threshold_is_the_simulated_bms_calibration() -> None:
    rule = queries.alarm_threshold()
    assert (rule["set_mv"], rule["release_mv"], rule["level2_mv"], rule["debounce_frames"]) == (300.0, 250.0, 500.0, 3)
    assert "at least 300 mV" in rule["rule"] and "below 250 mV" in rule["rule"]


def stored(as_of: date, feature_set: str, source: str, probability: float, hour: int = 6) -> dict:
    return {"vin": "VA", "as_of": as_of, "feature_set": feature_set, "source": source, "probability": probability,
            "threshold": 0.5, "alarm": probability >= 0.5, "model_version": "v1", "suspect_cell": 7,
            "reasons": [{"feature": "f", "value": float("nan"), "contribution": 0.123456}],
            "created_at": datetime(2026, 3, 3, hour, tzinfo=UTC)}


def test_probability_history_is_one_oldest_first_series_per_feature_set_and_source() -> None:
    rows = [stored(D3, "full", "batch", 0.8), stored(D1, "full", "batch", 0.3), stored(D2, "full", "api", 0.55),
            stored(D2, "signals6", "batch", 0.6)]
    history = queries.probability_history(rows)
    assert [(s["feature_set"], s["source"], s["as_of"], s["probability"], s["alarm"]) for s in history] == [
        ("full", "api", [D2], [0.55], [True]), ("full", "batch", [D1, D3], [0.3, 0.8], [False, True]),
        ("signals6", "batch", [D2], [0.6], [True])]


def test_the_latest_prediction_prefers_the_feature_set_then_batch_on_the_same_day() -> None:
    rows = [stored(D2, "full", "api", 0.55, hour=9), stored(D2, "full", "batch", 0.4), stored(D3, "signals6", "batch", 0.6)]
    latest = queries.latest_prediction(rows, "full")
    assert (latest["as_of"], latest["source"], latest["probability"]) == (D2, "batch", 0.4)
    assert latest["reasons"] == [{"feature": "f", "value": None, "contribution": 0.1235}]  # NaN is not JSON
    assert queries.latest_prediction(rows, "other")["feature_set"] == "signals6"
    assert queries.latest_prediction([], "full") is None


def test_range_trend_lays_the_vehicles_rows_on_the_calendar() -> None:
    trend = queries.range_trend(daily(("VA", D1, False, 120.04), ("VA", D3, True, 305.0)), [D1, D2, D3])
    assert trend["dates"] == [D1, D2, D3]
    assert trend["range_max_mv"] == [120.0, None, 305.0] and trend["range_p95_mv"] == [60.0, None, 152.5]
    assert trend["bms_alarm"] == [False, None, True] and trend["suspect_cell"] == [4, None, 4]


def test_the_heatmap_is_cells_by_days_with_gaps_as_none() -> None:
    cells = pa.table({"dt": pa.array([D1, D1, D3, D3, D3], pa.date32()), "cell_index": pa.array([1, 3, 1, 2, 3], pa.int32()),
                      "value": [0.04, -12.26, 1.0, float("nan"), -14.0]})
    heatmap = queries.cell_heatmap(cells, [D1, D2, D3])
    assert heatmap.cells == [1, 2, 3]
    assert heatmap.deviation_mv == [[0.0, None, 1.0], [None, None, None], [-12.3, None, -14.0]]
    view = queries.heatmap_view(heatmap, 3, {D1: 3, D3: 1}, "rest")
    assert (view["color_span_mv"], view["suspect_cell"], view["measure"]) == (15.0, 3, "rest")
    assert view["daily_suspects"] == {"dates": [D3], "cells": [1]}  # the marked suspect's own days are not crossed


def test_the_colour_range_follows_the_bulk_of_the_values_not_one_extreme_day() -> None:
    values = [1.0] * 99 + [240.0]
    cells = pa.table({"dt": pa.array([D1] * 100, pa.date32()), "cell_index": pa.array(range(1, 101), pa.int32()),
                      "value": values})
    assert queries.heatmap_view(queries.cell_heatmap(cells, [D1]), None, {}, "all")["color_span_mv"] == 5.0


def test_the_model_view_puts_metrics_beside_the_reference_and_checks_curves() -> None:
    card = {"feature_set": "full", "version": "v9", "threshold": 0.123456, "target_precision": 0.5,
            "metrics": {"average_precision": 0.65342, "vehicles": {"faulty_caught": 12},
                        "curves": {"roc": {"fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1]}, "pr": {"recall": [1], "precision": [0.2]}}},
            "baseline_metrics": {"average_precision": 0.551}}
    view = queries.model_view(card, ["roc.png", "index.html", "notes.txt"], "/r/")
    metrics = {m["key"]: m for m in view["metrics"]}
    assert (metrics["average_precision"]["ours"], metrics["average_precision"]["reference"]) == (0.653, 0.551)
    assert (metrics["faulty_caught"]["ours"], metrics["faulty_caught"]["reference"], metrics["roc_auc"]["ours"]) == (
        12.0, None, None)
    assert view["curves"] == {"roc": {"x": [0.0, 0.5, 1.0], "y": [0.0, 0.9, 1.0]}}  # one PR point is no curve
    assert view["reference_curves"] is None and view["threshold"] == 0.1235
    assert view["figures"] == {"roc": "/r/roc.png"} and view["report_url"] == "/r/index.html"
