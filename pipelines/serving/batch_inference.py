"""Batch inference: score every vehicle at some as_of dates with the feature set's champion, publish the predictions.

Which as_of dates (what `bms_batch_inference` scores for a `daily` event that touched dates D1 … Dn):
a window for as_of A reads the days A−14 … A−1, so the day after the newest data is the prediction date.
Each touched date D is scored as as_of D+1: a normal daily run touches yesterday and so scores today; a run
that recomputed late data for D (bms_features also recomputes the six dates after it) re-scores D+1 … D+7,
the most recent predictions it changed. Older predictions it feeds (as_of up to D+14) are history and are left
alone: re-score them by hand with explicit as_of dates if needed. An as_of date whose 14 context days hold no
daily row is skipped (nothing to score).

Rows: `source="batch"`, the champion's version and card threshold (alarm when probability >= threshold), the
window's `suspect_cell`, reasons, and a deterministic `request_id = batch:<model_version>:<as_of>:<inputs>` where
<inputs> is a hash of the row's feature values and suspect cell. Re-running the same dates with the same champion
and the same daily rows gives the same keys: the event store adds nothing, each row keeps its first `created_at`,
and the batch object `predictions/dt=<as_of>/batch-<model_version>.parquet` is replaced by the same bytes. If late
data changed a vehicle's window, its new prediction is a new key (the store keeps both, `created_at` orders them)
and the batch object holds the current one.

Reasons (a contract decision): a batch row carries reasons only if it alarms, and of each as_of date's alarms only
the `explain_limit` most probable (default EXPLAINED_ALARMS_PER_DATE, ties to the earlier vin) get them; every
other batch row has `reasons = null`. Reasons are exact TreeSHAP contributions (`reasons.py`, what the API answers
with), ~0.2–0.3 ms per row on this machine's 2 cores: 20–40 s for every window of a 100k fleet, ~5× the rest of the
run, and cost in proportion to the alarms would leave the run's time to the data (75–80 % of the benchmark fleet's
windows alarm). XGBoost's approximate contributions (`approx_contribs`, ~20× cheaper) named another top feature
than the exact ones for 55–57 % of alarm rows (benchmarks/serving.py's fleet), so they are not used. A row without
reasons is explained on demand: the API computes them for any vehicle it is asked about.

Windows are built with numpy (`windows.inference_window_matrix`: the same rows and values as
sql/features/windows.sql, which stays the portable definition) from only the daily columns the model reads, and
scored in one call: `predict_fn` in this process, or on the aws backend one SageMaker Batch Transform job named
from the run id (`batch_scorer`, CELLGUARD_BATCH_SCORING). `BatchSummary.stage_seconds` says where a run's time went (read daily, windows,
predict, reasons, rows, store, lake, other).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import Settings, load_settings
from pipelines.features.daily import as_dates
from pipelines.features.window_signals import CONTEXT_DAYS
from pipelines.features.windows import WindowMatrix, daily_columns_for, inference_window_matrix
from pipelines.schema import PREDICTION_SCHEMA
from pipelines.serving.inference import CellGuardModel, predict_fn
from pipelines.serving.model_loading import LoadedModel, load_registered
from pipelines.serving.reasons import feature_contributions, top_reasons
from pipelines.storage import daily_zone
from pipelines.storage.event_store import PredictionEventStore, python_values
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import publish_batch
from pipelines.training import registry

log = logging.getLogger(__name__)

SOURCE = "batch"
EXPLAINED_ALARMS_PER_DATE = 1_000  # alarm rows per as_of date that get reasons, the most probable first
Probabilities = Callable[[np.ndarray], np.ndarray]  # float32 feature rows → one alarm probability per row
STAGES = ("read daily", "windows", "predict", "reasons", "rows", "store", "lake")


@dataclass
class BatchSummary:
    """What one batch inference run did (plain values, so it travels as an XCom)."""

    feature_set: str
    requested: list[str]  # as_of dates asked for
    scored: list[str] = field(default_factory=list)  # as_of dates with predictions written
    skipped: list[str] = field(default_factory=list)  # as_of dates whose context had no daily rows
    model_version: str | None = None  # None: no champion, nothing scored
    threshold: float | None = None
    rows: int = 0
    alarms: int = 0
    new_in_store: int = 0  # rows the event store did not hold yet (0 on an identical re-run)
    explained: int = 0  # rows that carry reasons (see the module doc)
    keys: list[str] = field(default_factory=list)  # lake objects written
    message: str = ""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # read daily, windows, predict, reasons, rows, …

    def to_dict(self) -> dict:
        return asdict(self)


def as_of_dates_for(touched: Iterable[date | str]) -> list[date]:
    """The as_of dates a change to the daily rows of these dates calls for: the day after each."""
    return [day + timedelta(days=1) for day in as_dates(touched)]


def latest_as_of(lake: Lake) -> date | None:
    """The day after the newest date in the daily zone (None when it is empty)."""
    days = daily_zone.daily_days(lake)
    return days[-1] + timedelta(days=1) if days else None


def as_of_dates_to_score(requested: Iterable[date | str], touched: Iterable[date | str] | None,
                         lake: Lake | None = None) -> list[date]:
    """Requested as_of dates; else the day after each touched daily date; else the day after the newest one."""
    if requested := as_dates(requested):
        return requested
    if touched:
        return as_of_dates_for(touched)
    latest = latest_as_of(lake or Lake.from_settings())
    return [latest] if latest else []


class StageClock:
    """Seconds spent per named stage, added up over a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def report(self, total: float) -> dict[str, float]:
        """Seconds per stage in STAGES order (rounded), and `other`: the rest of `total` (champion, bookkeeping)."""
        stages = {name: round(self.seconds.get(name, 0.0), 3) for name in STAGES}
        return {**stages, "other": round(max(total - sum(self.seconds.values()), 0.0), 3)}


class _TimedStore:
    """An event store whose calls count as the `store` stage (so publishing splits into store and lake)."""

    def __init__(self, store: PredictionEventStore, clock: StageClock):
        self._store, self._clock = store, clock

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def timed(*args: object, **kwargs: object) -> object:
            with self._clock.stage("store"):
                return attribute(*args, **kwargs)
        return timed


def input_fingerprints(matrix: np.ndarray, suspect_cells: pa.ChunkedArray | pa.Array) -> list[str]:
    """12 hex characters per row identifying what the row was scored from (its float32 features and suspect cell)."""
    rows = np.ascontiguousarray(matrix, dtype=np.float32)
    nan = np.isnan(rows)
    if (rows.view(np.uint32)[nan] != np.float32(np.nan).view(np.uint32)).any():  # hash every NaN as one bit pattern
        rows = np.where(nan, np.float32(np.nan), rows)
    cells = np.asarray(pc.fill_null(pc.cast(suspect_cells, pa.int64()), -1).to_numpy(zero_copy_only=False), "<i8")
    features, width, cell_bytes = memoryview(rows.reshape(-1).view(np.uint8)), rows.shape[1] * 4, cells.tobytes()
    fingerprints = []
    for i in range(len(rows)):
        digest = hashlib.blake2b(features[i * width:(i + 1) * width], digest_size=6)
        digest.update(cell_bytes[i * 8:(i + 1) * 8])
        fingerprints.append(digest.hexdigest())
    return fingerprints


def rows_to_explain(probabilities: np.ndarray, threshold: float, as_of: np.ndarray, limit: int) -> np.ndarray:
    """Indices (ascending) of the rows that get reasons: per as_of date, its `limit` most probable alarms."""
    alarms = np.flatnonzero(probabilities >= threshold)
    ranked = alarms[np.lexsort((-probabilities[alarms], as_of[alarms]))]  # by date, most probable first (stable)
    dates = as_of[ranked]
    rank = np.arange(len(ranked)) - np.searchsorted(dates, dates, side="left")
    return np.sort(ranked[rank < max(limit, 0)])


def reasons_for(model: CellGuardModel, inputs: np.ndarray, values: np.ndarray, explain: np.ndarray,
                rows: int) -> pa.ListArray:
    """Reasons for `rows` rows: top reasons at the indices `explain` (their model inputs and float64 values given in
    that order), null for every other row."""
    picked = top_reasons(feature_contributions(model.booster, inputs, model.missing_as), values, model.feature_names)
    counts = np.zeros(rows, np.int32)
    counts[explain] = np.diff(picked.offsets.to_numpy())
    unexplained = np.ones(rows, bool)
    unexplained[explain] = False
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), picked.flatten(), mask=pa.array(unexplained))


def in_process(loaded: LoadedModel) -> Probabilities:
    """predict_fn on the champion this process loaded: one vectorised call."""
    return lambda rows: predict_fn(rows, loaded.model)


def on_batch_transform(loaded: LoadedModel, run_id: str) -> Probabilities:
    """A SageMaker Batch Transform job of the champion's SageMaker Model, named from the run id."""
    from pipelines.serving.batch_transform import transform_probabilities

    return lambda rows: transform_probabilities(rows, loaded.version, run_id)


def batch_scorer(loaded: LoadedModel, run_id: str | None, settings: Settings | None = None) -> Probabilities:
    """Where this run's rows are scored: CELLGUARD_BATCH_SCORING, `auto` meaning Batch Transform on the aws backend."""
    settings = settings or load_settings()
    if settings.batch_scoring == "transform" or (settings.batch_scoring == "auto" and settings.backend == "aws"):
        return on_batch_transform(loaded, run_id or f"manual-{loaded.version}")
    return in_process(loaded)


def score_windows(windows: WindowMatrix, loaded: LoadedModel, threshold: float, now: datetime,
                  explain_limit: int = EXPLAINED_ALARMS_PER_DATE, clock: StageClock | None = None,
                  probabilities_of: Probabilities | None = None) -> pa.Table:
    """Prediction rows (PREDICTION_SCHEMA) for inference windows, every row scored in one call (in this process
    unless `probabilities_of` says otherwise; reasons always come from the loaded booster)."""
    clock = clock or StageClock()
    probabilities_of = probabilities_of or in_process(loaded)
    model = loaded.model
    if windows.columns != model.feature_names:
        raise ValueError(f"the windows carry {len(windows.columns)} columns, not the model's {model.feature_count} "
                         f"features in its order (build them with columns=model.feature_names)")
    keys, rows = windows.keys, windows.keys.num_rows
    with clock.stage("predict"):
        rows32 = windows.matrix(np.float32)
        probabilities = np.asarray(probabilities_of(rows32), np.float64) if rows else np.zeros(0)
        if probabilities.shape != (rows,):
            raise ValueError(f"scoring {rows:,} windows gave {probabilities.shape[0] if probabilities.ndim else 0:,} "
                             f"probabilities (shape {probabilities.shape})")
    with clock.stage("reasons"):
        as_of_days = pc.cast(keys["as_of"], pa.int32()).to_numpy()
        explain = rows_to_explain(probabilities, threshold, as_of_days, explain_limit)
        reasons = reasons_for(model, rows32[explain], windows.matrix_rows(explain), explain, rows)
    with clock.stage("rows"):
        fingerprints = input_fingerprints(rows32, keys["suspect_cell"])
        days, day_of_row = np.unique(as_of_days, return_inverse=True)  # no date object per row: 100k cost 0.4 s
        prefixes = [f"{SOURCE}:{loaded.version}:{np.datetime64(int(day), 'D')}:" for day in days]
        request_ids = [prefixes[day] + fp for day, fp in zip(day_of_row.tolist(), fingerprints, strict=True)]
        created_at = PREDICTION_SCHEMA.field("created_at").type
        return pa.Table.from_arrays([
            keys["vin"],
            keys["as_of"],
            pa.repeat(pa.scalar(loaded.version, pa.string()), rows),
            pa.repeat(pa.scalar(loaded.feature_set, pa.string()), rows),
            pa.array(probabilities, pa.float64()),
            pa.array(probabilities >= threshold, pa.bool_()),
            pa.repeat(pa.scalar(threshold, pa.float64()), rows),
            keys["suspect_cell"],
            reasons,
            pa.repeat(pa.scalar(SOURCE, pa.string()), rows),
            pa.array(request_ids, pa.string()),
            pa.repeat(pa.scalar(now, created_at), rows),
        ], schema=PREDICTION_SCHEMA)


def _keep_first_created_at(table: pa.Table, store: PredictionEventStore, as_of: date) -> tuple[pa.Table, int]:
    """Rows already in the store keep the created_at stored with them (so a re-run writes identical objects);
    also returns how many rows are new to the store."""
    stored = {(r["vin"], r["model_version"], r["request_id"]): r["created_at"]
              for r in store.predictions_between(as_of, as_of) if r["source"] == SOURCE}
    if not stored:
        return table, table.num_rows
    keys = list(zip(table["vin"].to_pylist(), table["model_version"].to_pylist(), table["request_id"].to_pylist(),
                    strict=True))
    new = sum(1 for key in keys if key not in stored)
    if new == len(keys):
        return table, new
    created = [stored.get(key, made) for key, made in zip(keys, python_values(table["created_at"]), strict=True)]
    index = table.column_names.index("created_at")
    return table.set_column(index, "created_at", pa.array(created, PREDICTION_SCHEMA.field("created_at").type)), new


def score_dates(as_of_dates: Iterable[date | str], lake: Lake | None = None, store: PredictionEventStore | None = None,
                feature_set: str = "full", now: datetime | None = None,
                explain_limit: int = EXPLAINED_ALARMS_PER_DATE, run_id: str | None = None,
                probabilities_of: Probabilities | None = None) -> BatchSummary:
    """Score every vehicle with daily rows in the 14 days before each as_of date and publish the predictions.

    Scoring runs where `batch_scorer` says (Batch Transform on the aws backend, its job named from `run_id`, the
    Airflow run's id in the DAG) unless `probabilities_of` is given."""
    started = time.perf_counter()
    clock = StageClock()
    dates = as_dates(as_of_dates)
    summary = BatchSummary(feature_set=feature_set, requested=[d.isoformat() for d in dates])
    lake = lake or Lake.from_settings()
    champion = registry.champion(lake, feature_set)
    if champion is None:
        summary.message = (f"no champion for feature set {feature_set!r} in {lake.url(registry.CHAMPIONS_PREFIX)}: "
                           f"nothing scored (run bms_training, or `cellguard train --feature-set {feature_set}`)")
        log.warning(summary.message)
        return summary
    if not dates:
        summary.message = "no as_of dates to score"
        return summary
    if store is None:
        from pipelines.storage.event_stores import open_event_store

        store = open_event_store()  # SQL locally, DynamoDB when CELLGUARD_BACKEND=aws
    timed_store = _TimedStore(store, clock)
    now = now or datetime.now(UTC)
    loaded = load_registered(lake, champion.version)
    threshold = float(champion.card["threshold"])
    summary.model_version, summary.threshold = champion.version, threshold

    with clock.stage("read daily"):
        daily = daily_zone.read_daily(lake, dates[0] - timedelta(days=CONTEXT_DAYS), dates[-1] - timedelta(days=1),
                                      columns=daily_columns_for(loaded.model.feature_names), ordered=False)
    with clock.stage("windows"):
        windows = inference_window_matrix(daily, dates, loaded.model.feature_names)
        del daily
    probabilities_of = probabilities_of or batch_scorer(loaded, run_id)
    predictions = score_windows(windows, loaded, threshold, now, explain_limit, clock, probabilities_of)
    del windows
    for as_of in dates:
        with clock.stage("rows"):
            rows = predictions.filter(pc.equal(predictions["as_of"], pa.scalar(as_of, pa.date32())))
        if rows.num_rows == 0:
            summary.skipped.append(as_of.isoformat())
            continue
        rows, new = _keep_first_created_at(rows, timed_store, as_of)
        store_seconds, publish_started = clock.seconds.get("store", 0.0), time.perf_counter()
        summary.keys.append(publish_batch(lake, timed_store, as_of, loaded.version, rows))
        clock.add("lake", time.perf_counter() - publish_started - (clock.seconds.get("store", 0.0) - store_seconds))
        summary.new_in_store += new
        summary.scored.append(as_of.isoformat())
        summary.rows += rows.num_rows
        summary.alarms += int(pc.sum(rows["alarm"].cast(pa.int64())).as_py() or 0)
        summary.explained += rows.num_rows - rows["reasons"].null_count
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.stage_seconds = clock.report(summary.seconds)
    summary.message = (f"{loaded.version}: {summary.rows:,} predictions ({summary.alarms:,} alarms at threshold "
                       f"{threshold:.3f}, {summary.explained:,} with reasons) for as_of "
                       f"{', '.join(summary.scored) or 'none'}"
                       + (f"; skipped {', '.join(summary.skipped)} (no daily rows in their 14 context days)"
                          if summary.skipped else ""))
    log.info(summary.message + "; seconds per stage: "
             + ", ".join(f"{name} {seconds:.3f}" for name, seconds in summary.stage_seconds.items()))
    return summary
