"""pipelines/training/evaluation.py: splits that keep labels apart, and metrics on hand-made predictions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_curve, roc_curve

from pipelines.serving.dashboard import queries
from pipelines.training import registry
from pipelines.training.evaluation import (
    alarm_days_from_daily,
    average_precision,
    choose_threshold,
    classification,
    curve_points,
    evaluate,
    evenly_spaced_indices,
    false_alarms_per_1000_vehicle_days,
    lead_times,
    roc_auc,
    time_split,
    train_validation_test_split,
    vehicle_detection,
    vehicle_split,
)

from .builders import synthetic_windows

# Six windows worked out by hand: positives score 0.9, 0.8, 0.6; negatives 0.7, 0.4, 0.2.
LABELS = [1, 1, 0, 1, 0, 0]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2]


def daily_windows(first: str, last: str, vins=("VIN_A", "VIN_B")) -> pd.DataFrame:
    dates = pd.date_range(first, last, freq="D").date
    return pd.DataFrame([{"vin": v, "as_of": d, "label": 0} for v in vins for d in dates])


def test_time_split_leaves_a_label_horizon_between_train_and_test() -> None:
    split = time_split(daily_windows("2026-01-01", "2026-03-31"), "2026-03-01")
    train_as_of, test_as_of = set(split.train["as_of"]), set(split.test["as_of"])
    assert max(train_as_of) == date(2026, 2, 14)  # 15 days before the cut-off
    assert not any(date(2026, 2, 15) <= d < date(2026, 3, 1) for d in train_as_of)  # nothing within 14 days
    assert max(train_as_of) + timedelta(days=13) < date(2026, 3, 1)  # its label window ends before the cut
    assert min(test_as_of) == date(2026, 3, 1) and max(test_as_of) == date(2026, 3, 31)
    assert len(split.train) == 2 * 45 and len(split.test) == 2 * 31  # Jan 1..Feb 14, Mar 1..31, two vehicles


def test_time_split_accepts_string_dates_and_refuses_a_short_gap() -> None:
    windows = daily_windows("2026-01-01", "2026-01-31").assign(as_of=lambda w: w["as_of"].astype(str))
    split = time_split(windows, date(2026, 1, 20), test_end="2026-01-25")
    assert sorted(set(split.train["as_of"])) == [f"2026-01-0{d}" for d in range(1, 6)]  # < Jan 6 = cut - 14
    assert sorted(set(split.test["as_of"])) == [f"2026-01-{d}" for d in range(20, 25)]
    with pytest.raises(ValueError, match="gap_days 7"):
        time_split(windows, "2026-01-20", gap_days=7)


def test_three_way_split_separates_validation_from_both_sides() -> None:
    split = train_validation_test_split(daily_windows("2026-01-01", "2026-04-30", vins=("V",)),
                                        "2026-02-15", "2026-04-01")
    assert (split.train["as_of"].min(), split.train["as_of"].max()) == (date(2026, 1, 1), date(2026, 1, 31))
    assert (split.validation["as_of"].min(), split.validation["as_of"].max()) == (date(2026, 2, 15), date(2026, 3, 17))
    assert (split.test["as_of"].min(), split.test["as_of"].max()) == (date(2026, 4, 1), date(2026, 4, 30))
    with pytest.raises(ValueError, match="more than 14 days before"):
        train_validation_test_split(daily_windows("2026-01-01", "2026-01-31"), "2026-01-10", "2026-01-20")


def test_vehicle_split_holds_out_whole_vehicles_stably() -> None:
    windows = synthetic_windows(vehicles=10, days=40)
    split = vehicle_split(windows, test_fraction=0.3)
    assert len(split.test_vins) == 3 and set(split.test["vin"]) == split.test_vins
    assert not set(split.train["vin"]) & split.test_vins
    assert len(split.train) + len(split.test) == len(windows)
    assert vehicle_split(windows, test_fraction=0.3).test_vins == split.test_vins  # same vins every run
    timed = vehicle_split(windows, test_fraction=0.3, cutoff="2026-01-30")
    assert timed.train["as_of"].max() == date(2026, 1, 15) and timed.test["as_of"].min() == date(2026, 1, 30)


def test_auc_and_average_precision_match_hand_computation() -> None:
    assert roc_auc(LABELS, SCORES) == pytest.approx(8 / 9)  # 8 of 9 positive-negative pairs ordered right
    assert average_precision(LABELS, SCORES) == pytest.approx((1 + 1 + 0.75) / 3)  # precision at each positive
    assert roc_auc([0, 0], [0.1, 0.2]) is None and average_precision([0, 0], [0.1, 0.2]) is None


def test_curve_points_match_hand_worked_roc_and_precision_recall() -> None:
    curves = curve_points(LABELS, SCORES)
    # Lowering the threshold score by score: .9 (0, 1/3), .8 (0, 2/3), .7 (1/3, 2/3), .6 (1/3, 1), .4 (2/3, 1),
    # .2 (1, 1). (2/3, 1) lies inside the straight top edge, so drop_intermediate leaves it out.
    assert curves["roc"] == {"fpr": [0.0, 0.0, 0.0, 0.3333, 0.3333, 1.0],
                             "tpr": [0.0, 0.3333, 0.6667, 0.6667, 1.0, 1.0]}
    # From the lowest threshold up: .2 flags all six (3/6), .4 five (3/5), .6 four (3/4), .7 three (2/3),
    # .8 two (2/2), .9 one (1/1); then recall 0 at precision 1.
    assert curves["pr"] == {"recall": [1.0, 1.0, 1.0, 0.6667, 0.6667, 0.3333, 0.0],
                            "precision": [0.5, 0.6, 0.75, 0.6667, 1.0, 1.0, 1.0]}


def test_evenly_spaced_indices_keep_both_ends() -> None:
    assert evenly_spaced_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced_indices(3).tolist() == [0, 1, 2]  # short curves stay whole
    for count in (102, 250, 10_001):
        kept = evenly_spaced_indices(count)
        assert len(kept) == 101 and (kept[0], kept[-1]) == (0, count - 1) and (np.diff(kept) > 0).all()
    with pytest.raises(ValueError, match="most 1"):
        evenly_spaced_indices(10, 1)


def test_long_curves_are_thinned_to_101_points_from_end_to_end() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 3000)
    scores = np.clip(0.3 * labels + rng.normal(0.35, 0.2, 3000), 0, 1)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=True)
    precision, recall, _ = precision_recall_curve(labels, scores)
    assert len(fpr) > 300 and len(recall) > 2000  # long enough that thinning has work to do
    curves = curve_points(labels, scores)
    roc, pr = curves["roc"], curves["pr"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == 101 and len(pr["recall"]) == len(pr["precision"]) == 101
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (pr["recall"][0], pr["recall"][-1], pr["precision"][-1]) == (1.0, 0.0, 1.0)
    assert pr["precision"][0] == round(labels.mean(), 4)  # everything flagged: precision is the positive share
    middle = round((len(fpr) - 1) / 2)  # point 50 of 101 sits halfway along the full curve
    assert (roc["fpr"][50], roc["tpr"][50]) == (round(fpr[middle], 4), round(tpr[middle], 4))
    assert all(np.diff(roc["fpr"]) >= 0) and all(np.diff(pr["recall"]) <= 0)


def test_a_single_class_has_no_curves() -> None:
    assert curve_points([0, 0, 0], [0.1, 0.5, 0.9]) is None
    assert curve_points([1, 1], [0.2, 0.3]) is None
    assert curve_points([], []) is None


def test_threshold_is_the_highest_recall_reaching_the_target_precision() -> None:
    choice = choose_threshold(LABELS, SCORES, target_precision=0.75)
    assert (choice.threshold, choice.precision, choice.recall, choice.target_met) == (0.6, 0.75, 1.0, True)
    strict = choose_threshold(LABELS, SCORES, target_precision=0.9)
    assert (strict.threshold, strict.precision, strict.recall) == (0.8, 1.0, pytest.approx(2 / 3))
    unreachable = choose_threshold([0, 1], [0.9, 0.1], target_precision=0.8)
    assert (unreachable.threshold, unreachable.precision, unreachable.target_met) == (0.1, 0.5, False)
    with pytest.raises(ValueError, match="no positive label"):
        choose_threshold([0, 0], [0.3, 0.4], 0.5)


def test_tied_scores_are_flagged_together() -> None:
    choice = choose_threshold([1, 0, 1, 0], [0.8, 0.8, 0.5, 0.1], target_precision=0.6)
    assert (choice.threshold, choice.precision, choice.recall) == (0.5, pytest.approx(2 / 3), 1.0)


def test_precision_recall_f1_and_false_alarm_rate_at_a_threshold() -> None:
    at = classification(LABELS, SCORES, 0.6)
    assert (at["tp"], at["fp"], at["fn"], at["tn"]) == (3, 1, 0, 2)
    assert (at["precision"], at["recall"], at["f1"]) == (0.75, 1.0, pytest.approx(6 / 7))
    # 1 alarm on a quiet window among 6 vehicle-days; 2 among 8
    assert false_alarms_per_1000_vehicle_days(LABELS, SCORES, 0.6) == pytest.approx(1000 / 6)
    assert false_alarms_per_1000_vehicle_days([0] * 8, [0.9, 0.9] + [0.1] * 6, 0.5) == 250.0


def scored(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["vin", "as_of", "label", "probability"])


def test_vehicle_detection_counts_caught_and_falsely_alarmed_vehicles() -> None:
    test = scored([("A", "2026-03-01", 1, 0.9), ("A", "2026-03-02", 0, 0.1),  # faulty, caught
                   ("B", "2026-03-01", 1, 0.3),  # faulty, missed
                   ("C", "2026-03-01", 0, 0.7), ("C", "2026-03-02", 0, 0.2),  # healthy, alarmed
                   ("D", "2026-03-01", 0, 0.1), ("E", "2026-03-01", 0, 0.4)])  # healthy, quiet
    result = vehicle_detection(test, threshold=0.5)
    assert {k: result[k] for k in ("vehicles", "faulty_vehicles", "healthy_vehicles", "faulty_caught",
                                   "healthy_alarmed")} == {"vehicles": 5, "faulty_vehicles": 2,
                                                           "healthy_vehicles": 3, "faulty_caught": 1,
                                                           "healthy_alarmed": 1}
    assert (result["vehicle_recall"], result["healthy_alarmed_share"]) == (0.5, pytest.approx(1 / 3))
    assert (result["caught_vins"], result["falsely_alarmed_vins"]) == (["A"], ["C"])
    # vehicle scores A .9, B .3 (faulty); C .7, D .1, E .4: pairs ordered right A>all 3, B>D = 4 of 6
    assert result["vehicle_auc"] == pytest.approx(4 / 6)


def test_lead_time_runs_from_the_first_alert_in_the_horizon_to_the_first_alarm_day() -> None:
    days = [f"2026-03-{d:02d}" for d in range(1, 21)]
    probability = {"A": {"2026-03-01": 0.9, "2026-03-05": 0.8, "2026-03-06": 0.9},  # Mar 1: before Mar 15's horizon
                   "B": {"2026-03-08": 0.7, "2026-03-12": 0.9},
                   "C": {"2026-03-13": 0.9},  # alert after its alarm: too late
                   "D": {"2026-03-03": 0.9}}  # never alarms
    test = scored([(v, d, 0, probability[v].get(d, 0.1)) for v in "ABCD" for d in days])
    alarm_days = {"A": [date(2026, 3, 15)], "B": ["2026-02-01", "2026-03-10", "2026-03-11"], "C": ["2026-03-12"]}
    result = lead_times(test, threshold=0.5, alarm_days=alarm_days)
    assert result["lead_days_by_vin"] == {"A": 10, "B": 2, "C": None}  # B's February alarm was already known
    assert (result["alarmed_vehicles"], result["warned_in_time"], result["median_lead_days"]) == (3, 2, 6.0)


def test_alarm_days_come_from_daily_rows() -> None:
    daily = pd.DataFrame({"vin": ["A", "A", "A", "B"], "dt": [date(2026, 3, 2), date(2026, 3, 1), date(2026, 3, 3),
                                                              date(2026, 3, 1)],
                          "alarm": [True, True, None, False]})
    assert alarm_days_from_daily(daily) == {"A": [date(2026, 3, 1), date(2026, 3, 2)]}


def test_evaluate_chooses_on_validation_and_measures_on_test() -> None:
    validation = scored([("V", f"2026-02-0{i + 1}", y, p) for i, (y, p) in enumerate(zip(LABELS, SCORES, strict=True))])
    test = scored([("A", "2026-03-01", 1, 0.65), ("A", "2026-03-02", 1, 0.55), ("B", "2026-03-01", 0, 0.62),
                   ("B", "2026-03-02", 0, 0.1), ("C", "2026-03-01", None, 0.9)])  # C: label unknown, left out
    result = evaluate(validation, test, target_precision=0.75, alarm_days={"A": ["2026-03-05"]}).to_dict()
    assert result["threshold"]["threshold"] == 0.6 and result["windows"] == 4 and result["positive_windows"] == 2
    assert result["roc_auc"] == pytest.approx(3 / 4)  # .65 beats both negatives, .55 beats .1 only
    assert (result["at_threshold"]["tp"], result["at_threshold"]["fp"]) == (1, 1)
    assert result["false_alarms_per_1000_vehicle_days"] == 250.0
    assert (result["vehicles"]["faulty_caught"], result["vehicles"]["healthy_alarmed"]) == (1, 1)
    assert result["lead_time"]["lead_days_by_vin"] == {"A": 4}
    # test scores .65 (+), .62 (-), .55 (+), .1 (-): up by 1/2, right by 1/2, up by 1/2, right by 1/2
    assert result["curves"]["roc"] == {"fpr": [0.0, 0.0, 0.5, 0.5, 1.0], "tpr": [0.0, 0.5, 0.5, 1.0, 1.0]}
    # thresholds .1, .55, .62, .65 flag 4, 3, 2, 1 windows holding 2, 2, 1, 1 positives
    assert result["curves"]["pr"] == {"recall": [1.0, 1.0, 0.5, 0.5, 0.0], "precision": [0.5, 0.6667, 0.5, 1.0, 1.0]}


def test_a_card_carries_the_curves_the_dashboards_model_view_draws() -> None:
    validation = scored([("V", f"2026-02-0{i + 1}", y, p) for i, (y, p) in enumerate(zip(LABELS, SCORES, strict=True))])
    evaluation = evaluate(validation, validation, target_precision=0.75)
    card = registry.model_card(
        version="20260401t020000z-full-0123abcd", feature_set="full", feature_names=["a"], training_data={},
        split={}, metrics=evaluation.to_dict(), baseline_metrics=evaluation.to_dict(), threshold=0.6,
        target_precision=0.75, params={}, created_at=datetime(2026, 4, 1, 2, tzinfo=UTC))
    stored = json.loads(registry.json_bytes(card))  # as card.json holds it
    view = queries.model_view(stored, [], "/r/")
    assert view["curves"]["roc"] == {"x": [0.0, 0.0, 0.0, 0.3333, 0.3333, 1.0],
                                     "y": [0.0, 0.3333, 0.6667, 0.6667, 1.0, 1.0]}
    assert view["curves"]["pr"]["y"] == [0.5, 0.6, 0.75, 0.6667, 1.0, 1.0, 1.0]
    assert view["reference_curves"] == view["curves"]
