"""Honest splits of window rows and the metrics a model is judged by: window, vehicle and fleet-operations level.

Windows are DataFrames with `vin`, `as_of` and `label` (1/0, NULL when the horizon is not over); scored
windows add `probability`. Everything here is a pure function returning plain values, dicts or dataclasses.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from pipelines.features.window_signals import HORIZON_DAYS  # label: an alarm on any day as_of ... as_of + 13

CURVE_POINTS = 101  # most points kept per curve on a model card
CURVE_DIGITS = 4


def _day(value: date | str | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def _as_of(windows: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(windows["as_of"]).dt.normalize()


# ---------------------------------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class TimeSplit:
    """Train rows end `gap_days` before the cut-off, so no training label looks at a day on or after it."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: date
    gap_days: int


def time_split(windows: pd.DataFrame, cutoff: date | str, gap_days: int = HORIZON_DAYS,
               test_end: date | str | None = None) -> TimeSplit:
    """Train on as_of < cutoff - gap_days, test on cutoff <= as_of (< test_end); asserts the gap holds."""
    if gap_days < HORIZON_DAYS - 1:
        raise ValueError(f"gap_days {gap_days}: a label looks {HORIZON_DAYS - 1} days ahead, so the gap must be "
                         f"at least that to keep training labels before the cut-off")
    cut = _day(cutoff)
    as_of = _as_of(windows)
    train = windows[as_of < cut - pd.Timedelta(days=gap_days)]
    in_test = as_of >= cut
    if test_end is not None:
        in_test &= as_of < _day(test_end)
    test = windows[in_test]
    train_as_of, test_as_of = _as_of(train), _as_of(test)
    # The honesty guarantees, checked on the result rather than trusted from the filter above.
    assert train.empty or ((cut - train_as_of).dt.days > gap_days).all(), "a training as_of lies inside the gap"
    assert train.empty or (train_as_of.max() + pd.Timedelta(days=HORIZON_DAYS - 1) < cut), \
        "a training label window reaches the cut-off"
    assert test.empty or (test_as_of >= cut).all(), "a test as_of lies before the cut-off"
    return TimeSplit(train.reset_index(drop=True), test.reset_index(drop=True), cut.date(), gap_days)


@dataclass(frozen=True)
class ThreeWaySplit:
    """Train, validation (threshold and early stopping) and test, each separated by a label horizon."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    validation_start: date
    test_start: date
    gap_days: int


def train_validation_test_split(windows: pd.DataFrame, validation_start: date | str, test_start: date | str,
                                gap_days: int = HORIZON_DAYS) -> ThreeWaySplit:
    """Time split twice: train before validation_start - gap, validation up to test_start - gap, test after."""
    if _day(validation_start) >= _day(test_start) - pd.Timedelta(days=gap_days):
        raise ValueError(f"validation_start {validation_start} must be more than {gap_days} days before "
                         f"test_start {test_start}")
    first = time_split(windows, validation_start, gap_days)
    second = time_split(windows, test_start, gap_days)
    validation = second.train[_as_of(second.train) >= _day(validation_start)].reset_index(drop=True)
    return ThreeWaySplit(first.train, validation, second.test, _day(validation_start).date(), second.cutoff,
                         gap_days)


def _vin_rank(vin: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{vin}".encode()).hexdigest()


@dataclass(frozen=True)
class VehicleSplit:
    """Rows of disjoint vehicle sets: a model is tested on vehicles it never saw."""

    train: pd.DataFrame
    test: pd.DataFrame
    test_vins: frozenset[str] = field(default_factory=frozenset)


def vehicle_split(windows: pd.DataFrame, test_fraction: float = 0.2, salt: str = "cellguard",
                  cutoff: date | str | None = None, gap_days: int = HORIZON_DAYS) -> VehicleSplit:
    """Hold out a stable share of vehicles (by hash of vin); with a cut-off, also train before and test after it."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction {test_fraction}: expected a share between 0 and 1")
    vins = sorted(set(windows["vin"]), key=lambda v: _vin_rank(v, salt))
    n_test = max(1, round(len(vins) * test_fraction)) if len(vins) > 1 else 0
    test_vins = frozenset(vins[:n_test])
    is_test = windows["vin"].isin(test_vins)
    train, test = windows[~is_test], windows[is_test]
    if cutoff is not None:
        train = time_split(train, cutoff, gap_days).train
        test = time_split(test, cutoff, gap_days).test
    assert not set(train["vin"]) & set(test["vin"]), "a vehicle is on both sides of the split"
    return VehicleSplit(train.reset_index(drop=True), test.reset_index(drop=True), test_vins)


# --------------------------------------------------------------------------------------------- window level


def _arrays(labels: Iterable, scores: Iterable) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(list(labels) if not isinstance(labels, np.ndarray | pd.Series) else labels, dtype=float)
    p = np.asarray(list(scores) if not isinstance(scores, np.ndarray | pd.Series) else scores, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    return y, p


def roc_auc(labels: Iterable, scores: Iterable) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    y, p = _arrays(labels, scores)
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def average_precision(labels: Iterable, scores: Iterable) -> float | None:
    """Average precision (area under the precision-recall steps); None without a positive."""
    y, p = _arrays(labels, scores)
    return float(average_precision_score(y, p)) if y.sum() > 0 else None


def evenly_spaced_indices(count: int, most: int = CURVE_POINTS) -> np.ndarray:
    """At most `most` indices into `count` items, evenly spaced, always the first and the last."""
    if most < 2:
        raise ValueError(f"most {most}: a curve needs at least its two ends")
    if count <= most:
        return np.arange(count)
    # Steps wider than one index round to distinct integers, so exactly `most` remain.
    return np.rint(np.linspace(0, count - 1, most)).astype(int)


def _thinned(*series: np.ndarray) -> list[list[float]]:
    keep = evenly_spaced_indices(len(series[0]))
    return [[round(float(v), CURVE_DIGITS) for v in values[keep]] for values in series]


def curve_points(labels: Iterable, scores: Iterable) -> dict | None:
    """ROC and precision-recall points for a model card (≤ 101 each, 4 decimals); None when only one class is present.

    ROC runs from (0, 0) to (1, 1); precision-recall in scikit-learn's order, recall falling from 1 to 0, so a
    step drawn horizontally first gives each recall interval the precision average precision credits it with.
    """
    y, p = _arrays(labels, scores)
    if len(np.unique(y)) != 2:
        return None
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=True)
    precision, recall, _ = precision_recall_curve(y, p)
    fpr_points, tpr_points = _thinned(fpr, tpr)
    recall_points, precision_points = _thinned(recall, precision)
    return {"roc": {"fpr": fpr_points, "tpr": tpr_points},
            "pr": {"recall": recall_points, "precision": precision_points}}


@dataclass(frozen=True)
class ThresholdChoice:
    """An alarm threshold (alarm when probability >= threshold) and what it achieved on validation data."""

    threshold: float
    precision: float
    recall: float
    target_precision: float
    target_met: bool


def choose_threshold(labels: Iterable, scores: Iterable, target_precision: float) -> ThresholdChoice:
    """The threshold with the highest recall whose precision reaches the target (else the most precise one)."""
    y, p = _arrays(labels, scores)
    positives = int(y.sum())
    if positives == 0:
        raise ValueError("validation windows hold no positive label: a threshold for a precision cannot be chosen")
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    true_pos, flagged = np.cumsum(y_sorted), np.arange(1, len(y) + 1)
    # Each distinct score is a candidate; at threshold t every row with score >= t is flagged.
    last = np.r_[np.flatnonzero(np.diff(p_sorted) != 0), len(p_sorted) - 1]
    candidates = [(float(p_sorted[i]), float(true_pos[i] / flagged[i]), float(true_pos[i] / positives)) for i in last]
    meeting = [c for c in candidates if c[1] >= target_precision - 1e-12]
    if meeting:
        threshold, precision, recall = max(meeting, key=lambda c: (c[2], c[1], c[0]))
    else:
        threshold, precision, recall = max(candidates, key=lambda c: (c[1], c[2], c[0]))
    return ThresholdChoice(threshold, precision, recall, target_precision, bool(meeting))


def classification(labels: Iterable, scores: Iterable, threshold: float) -> dict:
    """Counts, precision, recall and F1 when alarming at probability >= threshold."""
    y, p = _arrays(labels, scores)
    alarm, positive = p >= threshold, y == 1
    tp, fp = int((alarm & positive).sum()), int((alarm & ~positive).sum())
    fn, tn = int((~alarm & positive).sum()), int((~alarm & ~positive).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"threshold": threshold, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": precision, "recall": recall, "f1": f1}


def false_alarms_per_1000_vehicle_days(labels: Iterable, scores: Iterable, threshold: float) -> float | None:
    """Alarms on windows whose horizon stayed quiet, per 1,000 scored vehicle-days (one window = one vehicle-day)."""
    y, p = _arrays(labels, scores)
    if not len(y):
        return None
    return 1000.0 * int(((p >= threshold) & (y == 0)).sum()) / len(y)


# -------------------------------------------------------------------------------------------- vehicle level


def vehicle_detection(scored: pd.DataFrame, threshold: float) -> dict:
    """Faulty vehicles (any positive window) caught by any alarm, healthy vehicles alarmed at least once."""
    per_vehicle = scored.groupby("vin").agg(faulty=("label", "max"), top=("probability", "max"))
    faulty = per_vehicle["faulty"] == 1
    alarmed = per_vehicle["top"] >= threshold
    n_faulty, n_healthy = int(faulty.sum()), int((~faulty).sum())
    caught, false_alarmed = int((faulty & alarmed).sum()), int((~faulty & alarmed).sum())
    return {
        "vehicles": len(per_vehicle), "faulty_vehicles": n_faulty, "healthy_vehicles": n_healthy,
        "faulty_caught": caught, "healthy_alarmed": false_alarmed,
        "vehicle_recall": caught / n_faulty if n_faulty else None,
        "healthy_alarmed_share": false_alarmed / n_healthy if n_healthy else None,
        "vehicle_auc": roc_auc(faulty.astype(float), per_vehicle["top"]),  # a vehicle's score: its highest window
        "caught_vins": sorted(per_vehicle.index[faulty & alarmed]),
        "falsely_alarmed_vins": sorted(per_vehicle.index[~faulty & alarmed]),
    }


def alarm_days_from_daily(daily: pd.DataFrame, date_column: str = "dt") -> dict[str, list[date]]:
    """Each vehicle's alarm days (daily rows with `alarm` true), sorted."""
    rows = daily[daily["alarm"].fillna(False).astype(bool)]
    days = pd.to_datetime(rows[date_column]).dt.date
    return {vin: sorted(group) for vin, group in days.groupby(rows["vin"])}


def lead_times(scored: pd.DataFrame, threshold: float, alarm_days: Mapping[str, Iterable[date | str]],
               horizon_days: int = HORIZON_DAYS) -> dict:
    """Days from the first alert to the vehicle's first alarm day, per vehicle whose alarm lies in the scored period.

    The first alarm day is the earliest one on or after the vehicle's first scored as_of (an earlier alarm
    was already known). Alerts count when issued in that alarm's horizon: as_of from first_alarm - 13 to
    first_alarm, so a lead time is 0 to 13 days; earlier alerts are false alarms of quiet windows.
    """
    as_of = _as_of(scored)
    alerts = scored.assign(_as_of=as_of)[scored["probability"].to_numpy() >= threshold]
    per_vehicle: dict[str, int | None] = {}
    for vin, first_scored in as_of.groupby(scored["vin"]).min().items():
        later = sorted(d for d in (_day(x) for x in alarm_days.get(vin, ())) if d >= first_scored)
        if not later:
            continue
        first_alarm = later[0]
        mine = alerts.loc[(alerts["vin"] == vin) & (alerts["_as_of"] <= first_alarm)
                          & (alerts["_as_of"] > first_alarm - pd.Timedelta(days=horizon_days)), "_as_of"]
        per_vehicle[vin] = int((first_alarm - mine.min()).days) if len(mine) else None
    leads = [v for v in per_vehicle.values() if v is not None]
    return {"alarmed_vehicles": len(per_vehicle), "warned_in_time": len(leads),
            "median_lead_days": float(statistics.median(leads)) if leads else None,
            "lead_days_by_vin": per_vehicle}


# ---------------------------------------------------------------------------------------------- the report


@dataclass
class Evaluation:
    """Every metric of one model on one test set, at a threshold chosen on validation data."""

    windows: int
    positive_windows: int
    roc_auc: float | None
    average_precision: float | None
    threshold: ThresholdChoice
    at_threshold: dict
    false_alarms_per_1000_vehicle_days: float | None
    vehicles: dict
    lead_time: dict | None
    curves: dict | None = None  # curve_points of the test windows, for the model card's charts

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(validation: pd.DataFrame, test: pd.DataFrame, target_precision: float = 0.5,
             alarm_days: Mapping[str, Iterable[date | str]] | None = None) -> Evaluation:
    """Pick the threshold on scored validation windows, then measure the scored test windows at it."""
    validation = validation[validation["label"].notna()]
    test = test[test["label"].notna()]
    choice = choose_threshold(validation["label"], validation["probability"], target_precision)
    y, p = test["label"].astype(float), test["probability"].astype(float)
    return Evaluation(
        windows=len(test), positive_windows=int(y.sum()),
        roc_auc=roc_auc(y, p), average_precision=average_precision(y, p), threshold=choice,
        at_threshold=classification(y, p, choice.threshold),
        false_alarms_per_1000_vehicle_days=false_alarms_per_1000_vehicle_days(y, p, choice.threshold),
        vehicles=vehicle_detection(test, choice.threshold),
        lead_time=lead_times(test, choice.threshold, alarm_days) if alarm_days is not None else None,
        curves=curve_points(y, p),
    )
