"""Batch inference: score every vehicle at some as_of dates with the feature set's champion, publish the predictions.

Which as_of dates (what `bms_batch_inference` scores for a `daily` event that touched dates D1 … Dn):
a window for as_of A reads the days A−14 … A−1, so the day after the newest data is the prediction date.
Each touched date D is scored as as_of D+1: a normal daily run touches yesterday and so scores today; a run
that recomputed late data for D (bms_features also recomputes the six dates after it) re-scores D+1 … D+7,
the most recent predictions it changed. Older predictions it feeds (as_of up to D+14) are history and are left
alone: re-score them by hand with explicit as_of dates if needed. An as_of date whose 14 context days hold no
daily row is skipped (nothing to score).

Rows: `source="batch"`, the champion's version and card threshold (alarm when probability >= threshold), the
window's `suspect_cell`, the top-3 reasons (`reasons.py`), and a deterministic
`request_id = batch:<model_version>:<as_of>:<inputs>` where <inputs> is a hash of the row's feature values and
suspect cell. Re-running the same dates with the same champion and the same daily rows gives the same keys:
the event store adds nothing, each row keeps its first `created_at`, and the batch object
`predictions/dt=<as_of>/batch-<model_version>.parquet` is replaced by the same bytes. If late data changed a
vehicle's window, its new prediction is a new key (the store keeps both, `created_at` orders them) and the
batch object holds the current one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.features.daily import as_dates
from pipelines.features.window_signals import CONTEXT_DAYS
from pipelines.features.windows import inference_windows, select_feature_set
from pipelines.schema import PREDICTION_SCHEMA
from pipelines.serving.inference import predict_fn
from pipelines.serving.model_loading import LoadedModel, load_registered
from pipelines.serving.reasons import feature_contributions, top_reasons
from pipelines.storage import daily_zone
from pipelines.storage.event_store import PredictionEventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import publish_batch
from pipelines.training import registry

log = logging.getLogger(__name__)

SOURCE = "batch"


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
    keys: list[str] = field(default_factory=list)  # lake objects written
    message: str = ""
    seconds: float = 0.0

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


def feature_matrix(windows: pa.Table, feature_names: Iterable[str]) -> np.ndarray:
    """The windows' features in the model's column order as float64 (null → NaN)."""
    names = list(feature_names)
    present = set(windows.column_names)  # the property builds a new list on every access
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(f"the windows lack {len(missing)} feature(s) the model needs, e.g. {missing[:3]}")
    if windows.num_rows == 0:
        return np.zeros((0, len(names)), dtype=np.float64)
    return np.column_stack([pc.cast(windows[n], pa.float64()).to_numpy(zero_copy_only=False) for n in names])


def input_fingerprints(matrix: np.ndarray, suspect_cells: pa.ChunkedArray | pa.Array) -> list[str]:
    """12 hex characters per row identifying what the row was scored from (its float32 features and suspect cell)."""
    rows = np.ascontiguousarray(np.where(np.isnan(matrix), np.nan, matrix).astype(np.float32))  # one NaN bit pattern
    cells = np.asarray(pc.fill_null(pc.cast(suspect_cells, pa.int64()), -1).to_numpy(zero_copy_only=False), np.int64)
    return [hashlib.blake2b(row.tobytes() + int(cell).to_bytes(8, "little", signed=True), digest_size=6).hexdigest()
            for row, cell in zip(rows, cells, strict=True)]


def score_windows(windows: pa.Table, loaded: LoadedModel, threshold: float, now: datetime) -> pa.Table:
    """Prediction rows (PREDICTION_SCHEMA) for inference windows, every row scored in one call."""
    model = loaded.model
    matrix = feature_matrix(windows, model.feature_names)
    probabilities = predict_fn(matrix, model).astype(np.float64) if len(matrix) else np.zeros(0)
    contributions = feature_contributions(model.booster, matrix, model.missing_as)
    reasons = top_reasons(contributions, matrix, model.feature_names)
    fingerprints = input_fingerprints(matrix, windows["suspect_cell"])
    as_of = windows["as_of"].to_pylist()
    request_ids = [f"{SOURCE}:{loaded.version}:{day.isoformat()}:{fp}" for day, fp in zip(as_of, fingerprints,
                                                                                          strict=True)]
    rows = windows.num_rows
    return pa.Table.from_arrays([
        pc.cast(windows["vin"], pa.string()),
        pc.cast(windows["as_of"], pa.date32()),
        pa.array([loaded.version] * rows, pa.string()),
        pa.array([loaded.feature_set] * rows, pa.string()),
        pa.array(probabilities, pa.float64()),
        pa.array(probabilities >= threshold, pa.bool_()),
        pa.array(np.full(rows, threshold), pa.float64()),
        pc.cast(windows["suspect_cell"], pa.int32()),
        reasons,
        pa.array([SOURCE] * rows, pa.string()),
        pa.array(request_ids, pa.string()),
        pa.array([now] * rows, PREDICTION_SCHEMA.field("created_at").type),
    ], schema=PREDICTION_SCHEMA)


def _keep_first_created_at(table: pa.Table, store: PredictionEventStore, as_of: date) -> tuple[pa.Table, int]:
    """Rows already in the store keep the created_at stored with them (so a re-run writes identical objects);
    also returns how many rows are new to the store."""
    stored = {(r["vin"], r["model_version"], r["request_id"]): r["created_at"]
              for r in store.predictions_between(as_of, as_of) if r["source"] == SOURCE}
    keys = list(zip(table["vin"].to_pylist(), table["model_version"].to_pylist(), table["request_id"].to_pylist(),
                    strict=True))
    new = sum(1 for key in keys if key not in stored)
    if new == len(keys):
        return table, new
    created = [stored.get(key, made) for key, made in zip(keys, table["created_at"].to_pylist(), strict=True)]
    index = table.column_names.index("created_at")
    return table.set_column(index, "created_at", pa.array(created, PREDICTION_SCHEMA.field("created_at").type)), new


def score_dates(as_of_dates: Iterable[date | str], lake: Lake | None = None, store: PredictionEventStore | None = None,
                feature_set: str = "full", now: datetime | None = None) -> BatchSummary:
    """Score every vehicle with daily rows in the 14 days before each as_of date and publish the predictions."""
    started = time.perf_counter()
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
        from pipelines.storage.event_store import EventStore

        store = EventStore.from_settings()
    now = now or datetime.now(UTC)
    loaded = load_registered(lake, champion.version)
    threshold = float(champion.card["threshold"])
    summary.model_version, summary.threshold = champion.version, threshold

    daily = daily_zone.read_daily(lake, dates[0] - timedelta(days=CONTEXT_DAYS), dates[-1] - timedelta(days=1))
    windows = select_feature_set(inference_windows(daily, dates), feature_set) if daily.num_rows else None
    predictions = score_windows(windows, loaded, threshold, now) if windows is not None else None
    for as_of in dates:
        rows = (predictions.filter(pc.equal(predictions["as_of"], pa.scalar(as_of, pa.date32())))
                if predictions is not None else PREDICTION_SCHEMA.empty_table())
        if rows.num_rows == 0:
            summary.skipped.append(as_of.isoformat())
            continue
        rows, new = _keep_first_created_at(rows, store, as_of)
        summary.keys.append(publish_batch(lake, store, as_of, loaded.version, rows))
        summary.new_in_store += new
        summary.scored.append(as_of.isoformat())
        summary.rows += rows.num_rows
        summary.alarms += int(pc.sum(rows["alarm"].cast(pa.int64())).as_py() or 0)
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.message = (f"{loaded.version}: {summary.rows:,} predictions ({summary.alarms:,} alarms at threshold "
                       f"{threshold:.3f}) for as_of {', '.join(summary.scored) or 'none'}"
                       + (f"; skipped {', '.join(summary.skipped)} (no daily rows in their 14 context days)"
                          if summary.skipped else ""))
    log.info(summary.message)
    return summary

