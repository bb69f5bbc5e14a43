"""Score the prediction API's items: features from the request or from the lake, one call per feature set.

A reference item (`features` given) is scored by the `signals6` champion on exactly its values; a lake item by the
`full` champion on the window `inference_windows` builds from the daily rows of the 14 days before its date, as
batch inference does. Both name the suspect cell a window carries: the latest one the vehicle's daily rows of
those 14 days name (null when none does). Every item of a feature set goes through `predict_fn` and the feature
contributions in one matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.features.window_signals import CONTEXT_DAYS
from pipelines.features.windows import inference_windows
from pipelines.serving.api_schemas import ApiError, problem
from pipelines.serving.batch_inference import feature_matrix
from pipelines.serving.inference import InvalidInput, predict_fn
from pipelines.serving.model_champions import ChampionModels
from pipelines.serving.model_loading import LoadedModel
from pipelines.serving.reasons import feature_contributions, top_reasons
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake

SOURCE = "api"
REFERENCE_FEATURE_SET = "signals6"  # answers requests that carry the reference's 84 values
LAKE_FEATURE_SET = "full"  # answers requests without features, from the lake's daily rows


@dataclass(frozen=True)
class Item:
    """One checked request item: where it was in the body, what to score, and its request id."""

    loc: tuple[str | int, ...]  # ("body",) or ("body", index): where error messages point
    vin: str
    as_of: date
    features: tuple[float, ...] | None  # the reference values (NaN = missing), or None: from the lake
    request_id: str
    client_request_id: bool  # the client named the id, so it may have been answered before

    @property
    def feature_set(self) -> str:
        """The champion that scores this item."""
        return REFERENCE_FEATURE_SET if self.features is not None else LAKE_FEATURE_SET

    @property
    def key(self) -> tuple[str, date, str, str]:
        """What identifies this item's prediction, whatever model version answers it."""
        return self.vin, self.as_of, self.feature_set, self.request_id


def context_ranges(as_of_dates: Sequence[date]) -> list[tuple[date, date]]:
    """The context days (as_of − 14 … as_of − 1) of every date, merged into as few date ranges as possible."""
    ranges: list[tuple[date, date]] = []
    for as_of in sorted(set(as_of_dates)):
        first, last = as_of - timedelta(days=CONTEXT_DAYS), as_of - timedelta(days=1)
        if ranges and first <= ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], last))
        else:
            ranges.append((first, last))
    return ranges


def context_daily(lake: Lake, items: Sequence[Item]) -> pa.Table:
    """The daily rows of the items' vehicles in the 14 days before each item's date."""
    tables = [daily_zone.read_daily(lake, first, last) for first, last in context_ranges([i.as_of for i in items])]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.filter(pc.is_in(table["vin"], pa.array(sorted({i.vin for i in items}), pa.string())))


def latest_suspects(daily: pa.Table, items: Sequence[Item]) -> dict[tuple[str, date], int]:
    """Per (vin, as_of): the suspect cell of the latest daily row of the 14 days before as_of that names one."""
    named = daily.filter(pc.is_valid(daily["suspect_cell"])).sort_by([("dt", "ascending")])
    history: dict[str, list[tuple[date, int]]] = {}
    for vin, day, cell in zip(*(named[c].to_pylist() for c in ("vin", "dt", "suspect_cell")), strict=True):
        history.setdefault(vin, []).append((day, cell))
    found = {}
    for item in items:
        first, last = item.as_of - timedelta(days=CONTEXT_DAYS), item.as_of - timedelta(days=1)
        cells = [cell for day, cell in history.get(item.vin, ()) if first <= day <= last]
        if cells:
            found[(item.vin, item.as_of)] = cells[-1]
    return found


def item_windows(daily: pa.Table, items: Sequence[Item]) -> tuple[pa.Table | None, dict[tuple[str, date], int]]:
    """The inference windows of the items' vehicles and dates, and the row of each (vin, as_of) that has one."""
    if daily.num_rows == 0 or not items:
        return None, {}
    windows = inference_windows(daily, sorted({i.as_of for i in items}))
    rows = {key: row for row, key in enumerate(zip(windows["vin"].to_pylist(), windows["as_of"].to_pylist(),
                                                    strict=True))}
    return windows, rows


def _champion(champions: ChampionModels, feature_set: str) -> tuple[LoadedModel, float]:
    loaded = champions.get(feature_set)
    if loaded is None:
        raise ApiError(503, [problem(["model", feature_set], champions.unavailable_reason(feature_set),
                                     "model_unavailable")])
    threshold = loaded.card.get("threshold")
    if not isinstance(threshold, int | float):
        raise ApiError(503, [problem(["model", feature_set], f"champion {loaded.version} has no alarm threshold in "
                                                             "its card", "model_unavailable")])
    return loaded, float(threshold)


def score_items(items: Sequence[Item], lake: Lake, champions: ChampionModels,
                now: datetime | None = None) -> list[dict]:
    """One prediction row (PREDICTION_SCHEMA, source "api") per item, in the items' order.

    ApiError: 404 for a lake item whose vehicle has no daily row in its 14 context days, 422 for reference
    values the model cannot take, 503 when a needed champion is not loaded."""
    if not items:
        return []
    now = now or datetime.now(UTC)
    created_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the store keeps milliseconds
    champions_needed = {feature_set: _champion(champions, feature_set)
                        for feature_set in sorted({i.feature_set for i in items})}
    if REFERENCE_FEATURE_SET in champions_needed:  # the request's own fault first, before looking at the lake
        width = champions_needed[REFERENCE_FEATURE_SET][0].model.feature_count
        wrong = [i for i in items if i.features is not None and len(i.features) != width]
        if wrong:
            raise ApiError(422, [problem([*i.loc, "features"], f"holds {len(i.features or ())} values; the "
                                                               f"{REFERENCE_FEATURE_SET} model takes {width} (6 daily "
                                                               "signals × 14 days, oldest day first)", "feature_count")
                                 for i in wrong])
    daily = context_daily(lake, items)
    suspects = latest_suspects(daily, items)
    windows, window_rows = item_windows(daily, [i for i in items if i.features is None])
    unknown = [i for i in items if i.features is None and (i.vin, i.as_of) not in window_rows]
    if unknown:
        raise ApiError(404, [problem([*i.loc, "vin"], f"unknown vehicle {i.vin}: no daily rows in the 14 days "
                                                      f"{i.as_of - timedelta(days=CONTEXT_DAYS)} … "
                                                      f"{i.as_of - timedelta(days=1)} before {i.as_of} to build its "
                                                      "features from (send the 84 reference values in `features`, "
                                                      "or a date after the vehicle's data)", "unknown_vehicle")
                             for i in unknown])

    answers: list[dict | None] = [None] * len(items)
    for feature_set, (loaded, threshold) in champions_needed.items():
        group = [n for n, item in enumerate(items) if item.feature_set == feature_set]
        model = loaded.model
        if feature_set == REFERENCE_FEATURE_SET:
            matrix = np.array([items[n].features for n in group], dtype=np.float64)
        else:
            assert windows is not None  # every lake item has a window, checked above
            picked = windows.take(pa.array([window_rows[(items[n].vin, items[n].as_of)] for n in group], pa.int64()))
            matrix = feature_matrix(picked, model.feature_names)
        try:
            probabilities = predict_fn(matrix, model).astype(np.float64)
        except InvalidInput as error:
            raise ApiError(422, [problem([*items[group[0]].loc, "features"], str(error), "invalid_features")]) from None
        reasons = top_reasons(feature_contributions(model.booster, matrix, model.missing_as), matrix,
                              model.feature_names).to_pylist()
        for n, probability, item_reasons in zip(group, probabilities, reasons, strict=True):
            item = items[n]
            answers[n] = {
                "vin": item.vin, "as_of": item.as_of, "model_version": loaded.version, "feature_set": feature_set,
                "probability": float(probability), "alarm": bool(probability >= threshold), "threshold": threshold,
                "suspect_cell": suspects.get((item.vin, item.as_of)), "reasons": item_reasons, "source": SOURCE,
                "request_id": item.request_id, "created_at": created_at,
            }
    return [answer for answer in answers if answer is not None]
