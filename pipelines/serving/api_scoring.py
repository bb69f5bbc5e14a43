"""Score the prediction API's items: features from the request or from the lake, one call per feature set.

A reference item (`features` given) is scored by the `signals6` champion on exactly its values; a lake item by the
`full` champion on the window `inference_windows` builds from the daily rows of the 14 days before its date, as
batch inference does. Both name the latest suspect cell the vehicle's daily rows of those 14 days name (null when
none does). Both come from `DailyContext`, the API's in-memory copy of what the daily zone says per date. Every item of a feature set goes through `predict_fn` and the feature
contributions in one matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa

from pipelines.features.window_signals import CONTEXT_DAYS
from pipelines.features.windows import feature_matrix
from pipelines.serving.api_schemas import ApiError, problem
from pipelines.serving.daily_context import DailyContext
from pipelines.serving.inference import InvalidInput, predict_fn
from pipelines.serving.model_champions import ChampionModels
from pipelines.serving.model_loading import LoadedModel
from pipelines.serving.reasons import feature_contributions, top_reasons
from pipelines.serving.sagemaker_scoring import EndpointUnavailable

SOURCE = "api"
# (feature set, rows, the loaded champion) → probabilities: in this process (predict_fn) or, on the aws backend,
# the champion's SageMaker endpoint (sagemaker_scoring.EndpointScorer). Reasons come from the loaded booster either way.
Probabilities = Callable[[str, np.ndarray, object], np.ndarray]


def in_process(feature_set: str, matrix: np.ndarray, model: object) -> np.ndarray:
    """predict_fn on the champion this process loaded."""
    return predict_fn(matrix, model)
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


def score_items(items: Sequence[Item], context: DailyContext, champions: ChampionModels,
                now: datetime | None = None, probabilities: Probabilities = in_process) -> list[dict]:
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
    windows = {(i.vin, i.as_of): context.window(i.as_of, i.vin) for i in items if i.features is None}
    unknown = [i for i in items if i.features is None and windows[(i.vin, i.as_of)] is None]
    if unknown:
        raise ApiError(404, [problem([*i.loc, "vin"], f"unknown vehicle {i.vin}: no daily rows in the 14 days "
                                                      f"{i.as_of - timedelta(days=CONTEXT_DAYS)} … "
                                                      f"{i.as_of - timedelta(days=1)} before {i.as_of} to build its "
                                                      "features from (send the 84 reference values in `features`, "
                                                      "or a date after the vehicle's data)", "unknown_vehicle")
                             for i in unknown])

    suspects = {as_of: context.suspects(as_of) for as_of in {i.as_of for i in items}}  # one lookup per date
    answers: list[dict | None] = [None] * len(items)
    for feature_set, (loaded, threshold) in champions_needed.items():
        group = [n for n, item in enumerate(items) if item.feature_set == feature_set]
        model = loaded.model
        if feature_set == REFERENCE_FEATURE_SET:
            matrix = np.array([items[n].features for n in group], dtype=np.float64)
        else:
            picked = pa.concat_tables([windows[(items[n].vin, items[n].as_of)] for n in group])
            matrix = feature_matrix(picked, model.feature_names)
        try:
            scores = probabilities(feature_set, matrix, model).astype(np.float64)
        except InvalidInput as error:
            raise ApiError(422, [problem([*items[group[0]].loc, "features"], str(error), "invalid_features")]) from None
        except EndpointUnavailable as error:
            raise ApiError(503, [problem(["model", feature_set], str(error), "model_unavailable")]) from None
        reasons = top_reasons(feature_contributions(model.booster, matrix, model.missing_as), matrix,
                              model.feature_names).to_pylist()
        for n, probability, item_reasons in zip(group, scores, reasons, strict=True):
            item = items[n]
            answers[n] = {
                "vin": item.vin, "as_of": item.as_of, "model_version": loaded.version, "feature_set": feature_set,
                "probability": float(probability), "alarm": bool(probability >= threshold), "threshold": threshold,
                "suspect_cell": suspects[item.as_of].get(item.vin), "reasons": item_reasons, "source": SOURCE,
                "request_id": item.request_id, "created_at": created_at,
            }
    return [answer for answer in answers if answer is not None]
