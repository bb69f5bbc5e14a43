"""One training run: daily rows → windows → honest split → train.py → evaluation beside the reference → registry gate."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import xgboost as xgb

from pipelines.features.window_signals import HORIZON_DAYS, feature_columns
from pipelines.features.windows import select_feature_set, training_windows
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake
from pipelines.training import registry, train
from pipelines.training.evaluation import alarm_days_from_daily, evaluate, train_validation_test_split
from pipelines.training.reference_baseline import REFERENCE, run_recipe

log = logging.getLogger(__name__)

MIN_SPLIT_DAYS = 7  # fewest as_of dates each of train, validation and test may have


@dataclass(frozen=True)
class TrainingRequest:
    """What to train: the feature set, the as_of range to draw windows from, and the booster's settings."""

    feature_set: str = "full"
    first_as_of: date | None = None
    last_as_of: date | None = None
    params: dict = field(default_factory=dict)  # booster parameters over train.py's defaults
    num_round: int = 300
    early_stopping_rounds: int = 20
    target_precision: float = 0.5
    with_baseline: bool = True  # also run the reference recipe on the same split


@dataclass(frozen=True)
class SplitPlan:
    """As_of boundaries of the three parts; each gap is one label horizon, so no label crosses a boundary."""

    first_as_of: date
    validation_start: date
    test_start: date
    last_as_of: date
    gap_days: int = HORIZON_DAYS

    def to_dict(self) -> dict:
        return {"first_as_of": self.first_as_of.isoformat(), "validation_start": self.validation_start.isoformat(),
                "test_start": self.test_start.isoformat(), "last_as_of": self.last_as_of.isoformat(),
                "gap_days": self.gap_days}


def plan_split(first_as_of: date, last_as_of: date, gap_days: int = HORIZON_DAYS) -> SplitPlan:
    """Half of the usable days to train, a quarter each to validate and test, gaps between (oldest first)."""
    span = (last_as_of - first_as_of).days + 1
    usable = span - 2 * gap_days
    if usable < 3 * MIN_SPLIT_DAYS:
        raise ValueError(
            f"labelled as_of dates {first_as_of} … {last_as_of} span {span} days; an honest split needs at least "
            f"{3 * MIN_SPLIT_DAYS + 2 * gap_days} (train, validation and test of {MIN_SPLIT_DAYS}+ days each, "
            f"{gap_days}-day gaps between): add days of data (e.g. `cellguard simulate --days 120`)")
    part = max(MIN_SPLIT_DAYS, usable // 4)
    test_start = last_as_of - timedelta(days=part - 1)
    validation_start = test_start - timedelta(days=gap_days + part)
    return SplitPlan(first_as_of, validation_start, test_start, last_as_of, gap_days)


def labelled_as_of_range(daily: pd.DataFrame, request: TrainingRequest) -> tuple[date, date]:
    """As_of dates whose whole 14-day horizon lies inside the observed days (a partial horizon can miss an alarm)."""
    first_day, last_day = daily["dt"].min(), daily["dt"].max()
    first = max(first_day + timedelta(days=1), request.first_as_of or first_day)
    last = min(last_day - timedelta(days=HORIZON_DAYS - 1), request.last_as_of or last_day)
    if first > last:
        raise ValueError(f"daily rows cover {first_day} … {last_day}: no as_of date has a complete "
                         f"{HORIZON_DAYS}-day label horizon in the requested range")
    return first, last


@dataclass
class TrainingResult:
    """What a run produced: the version, its card, the decision and where the report is."""

    version: str
    card: dict
    decision: dict
    report_url: str
    champion: str | None

    def headline(self) -> str:
        metrics, base = self.card["metrics"], self.card.get("baseline_metrics") or {}

        def fmt(value: float | None) -> str:
            return "—" if value is None else f"{value:.3f}"

        return (f"{self.version}: AP {fmt(metrics.get('average_precision'))} (reference recipe "
                f"{fmt(base.get('average_precision'))}), ROC AUC {fmt(metrics.get('roc_auc'))} (reference "
                f"{fmt(base.get('roc_auc'))}); {self.decision['reason']}")


def _train_with_entry_point(train_rows: pd.DataFrame, validation_rows: pd.DataFrame, request: TrainingRequest,
                            workdir: Path) -> bytes:
    """Run train.py exactly as a SageMaker script-mode job would (channels as folders, hyperparameters as --key value)."""
    channels = {"train": train_rows, "validation": validation_rows}
    for name, rows in channels.items():
        (workdir / name).mkdir(parents=True)
        rows.to_parquet(workdir / name / f"{name}.parquet", index=False)
    hyperparameters = {"feature_set": request.feature_set, "num_round": request.num_round,
                       "early_stopping_rounds": request.early_stopping_rounds, "verbose": "false", **request.params}
    argv = ["--train", str(workdir / "train"), "--validation", str(workdir / "validation"),
            "--model-dir", str(workdir / "model")]
    for key, value in hyperparameters.items():
        argv += [f"--{key}", str(value)]
    train.main(argv)
    return (workdir / "model" / train.ARCHIVE_FILE).read_bytes()


Model = tuple[xgb.Booster, dict]  # a booster and its feature_names.json metadata


def _load(archive: bytes, workdir: Path) -> Model:
    """The booster and metadata inside a model.tar.gz (unpacked once per archive)."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    (folder / train.ARCHIVE_FILE).write_bytes(archive)
    return train.load_booster(folder)


def _score(model: Model, rows: pd.DataFrame) -> pd.DataFrame | None:
    """Rows with the model's probability, or None when the rows lack a column the model needs."""
    booster, metadata = model
    names = metadata["feature_names"]
    if any(name not in rows.columns for name in names):
        return None
    matrix = train.feature_matrix(rows, names, metadata.get("missing_as"))
    return rows.assign(probability=train.predict(booster, matrix))


def _importance(model: Model) -> dict[str, float]:
    """Total gain per named feature (the booster knows features as f0, f1, … in feature_names order)."""
    booster, metadata = model
    names = metadata["feature_names"]
    gains = booster.get_score(importance_type="total_gain")
    return {names[int(key[1:])]: float(value) for key, value in gains.items() if key[1:].isdigit()}


Trainer = Callable[[pd.DataFrame, pd.DataFrame, TrainingRequest, Path], bytes]  # rows in, model.tar.gz bytes out


def train_and_register(request: TrainingRequest | None = None, lake: Lake | None = None,
                       progress: Callable[[str], None] | None = None, now: datetime | None = None,
                       trainer: Trainer | None = None) -> TrainingResult:
    """Train a challenger on the lake's daily rows, evaluate it beside the reference recipe, register, gate.

    trainer: runs train.py on the split (default: in this process; `sagemaker_training` runs it as a job)."""
    from pipelines.training.report import ScoredModel, render_evaluation_report

    request = request or TrainingRequest()
    lake = lake or Lake.from_settings()
    say = progress or log.info
    now = now or datetime.now(UTC)
    feature_columns(request.feature_set)  # an unknown feature set fails here, before any work

    daily = daily_zone.read_daily(lake)
    if daily.num_rows == 0:
        raise ValueError(f"no daily rows in {lake.url('daily')}: run bms_features (or `cellguard import-daily`) first")
    daily_frame = daily.to_pandas()
    first, last = labelled_as_of_range(daily_frame, request)
    plan = plan_split(first, last)
    say(f"windows for as_of {first} … {last} from {daily.num_rows:,} daily rows; split {plan.to_dict()}")
    all_windows = training_windows(daily, daily_zone.days_between(first, last))
    windows = select_feature_set(all_windows, request.feature_set).to_pandas()
    windows = windows[windows["label"].notna()].reset_index(drop=True)
    split = train_validation_test_split(windows, plan.validation_start, plan.test_start, plan.gap_days)
    for part in ("train", "validation", "test"):
        rows = getattr(split, part)
        if rows.empty or rows["label"].nunique() < 2:
            raise ValueError(f"the {part} part ({len(rows)} windows, {int(rows['label'].sum()) if len(rows) else 0} "
                             f"positive) needs both alarm and no-alarm windows: add vehicles or days")
    alarm_days = alarm_days_from_daily(daily_frame)

    with tempfile.TemporaryDirectory(prefix="cellguard-training-") as tmp:
        workdir = Path(tmp)
        say(f"training {request.feature_set} on {len(split.train):,} windows "
            f"({int(split.train['label'].sum()):,} positive) with train.py")
        archive = (trainer or _train_with_entry_point)(split.train, split.validation, request, workdir)
        challenger = _load(archive, workdir)
        validation = _score(challenger, split.validation)
        test = _score(challenger, split.test)
        ours = evaluate(validation, test, request.target_precision, alarm_days)
        importance = _importance(challenger)

        models = []
        baseline = None
        if request.with_baseline:
            say("training the reference recipe on the same split")
            reference_windows = select_feature_set(all_windows, "signals6").to_pandas()
            baseline = run_recipe(reference_windows, REFERENCE, plan.validation_start, plan.test_start,
                                  request.target_precision, alarm_days)

        # The gate compares the champion on this run's test window, never on the figures from its own run.
        current = registry.champion(lake, request.feature_set)
        champion_evaluation = champion_test = None
        if current is not None:
            champion_archive, _ = registry.load_version(lake, current.version)
            champion_model = _load(champion_archive, workdir)
            champion_test = _score(champion_model, split.test)
            champion_validation = _score(champion_model, split.validation)
            if champion_test is not None and champion_validation is not None:
                champion_evaluation = evaluate(champion_validation, champion_test, request.target_precision, alarm_days)
        champion_ap = champion_evaluation.average_precision if champion_evaluation else None

    version = registry.new_version_id(now, request.feature_set, hashlib.sha256(archive).hexdigest())
    test_window = {"start": plan.test_start, "end": plan.last_as_of}
    decision = registry.decide(request.feature_set, version, ours.average_precision,
                               current.version if current else None, champion_ap, registry.promotion_margin(),
                               test_window, now)
    card = registry.model_card(
        version=version, feature_set=request.feature_set, feature_names=feature_columns(request.feature_set),
        training_data={"first_as_of": plan.first_as_of, "last_as_of": plan.last_as_of,
                       "daily_first": daily_frame["dt"].min(), "daily_last": daily_frame["dt"].max(),
                       "vehicles": int(windows["vin"].nunique()), "train_rows": len(split.train),
                       "validation_rows": len(split.validation), "test_rows": len(split.test)},
        split=plan.to_dict(), metrics=ours.to_dict(),
        baseline_metrics=baseline.summary["evaluation"] if baseline else None,
        threshold=ours.threshold.threshold, target_precision=request.target_precision,
        params={**train.DEFAULT_PARAMS, **request.params, "num_round": request.num_round,
                "early_stopping_rounds": request.early_stopping_rounds}, created_at=now)
    card["decision"] = decision.to_dict()

    models.append(ScoredModel(f"{request.feature_set} {version}", test, ours.to_dict(), importance))
    if baseline:
        models.append(ScoredModel("reference recipe (signals6, −1 for missing)", baseline.test,
                                  baseline.summary["evaluation"]))
    if champion_evaluation is not None and current is not None and current.version != version:
        models.append(ScoredModel(f"champion {current.version}", champion_test, champion_evaluation.to_dict()))
    report = render_evaluation_report(models, card)
    registered = registry.register(lake, version, archive, card, report)
    registry.record_decision(lake, decision)
    champion = registry.champion(lake, request.feature_set)
    say(f"registered {version}: {decision.reason}")
    return TrainingResult(version=version, card=registered.card, decision=decision.to_dict(),
                          report_url=lake.url(f"{registered.key}report/index.html"),
                          champion=champion.version if champion else None)


def request_from_params(feature_set: str, params: dict) -> TrainingRequest:
    """A training request from bms_training's params (dates as YYYY-MM-DD, booster settings by name)."""

    def day(name: str) -> date | None:
        return date.fromisoformat(params[name]) if params.get(name) else None

    booster = {name: params[name] for name in ("max_depth", "eta") if params.get(name) is not None}
    return TrainingRequest(feature_set=feature_set, first_as_of=day("first_as_of"), last_as_of=day("last_as_of"),
                           params=booster, num_round=int(params.get("num_round") or 300),
                           target_precision=float(params.get("target_precision") or 0.5))
