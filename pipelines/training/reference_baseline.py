"""The reference solution's recipe, evaluated on the same honest split as CellGuard's model so they sit side by side.

Reference: SageMaker's XGBoost on the 84 raw values (14 days x six daily signals) with -1 for a missing day,
max_depth=7, eta=0.1, gamma=4, min_child_weight=6, subsample=0.8, binary:logistic, 200 rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import xgboost as xgb

from pipelines.features.window_signals import HORIZON_DAYS, feature_columns
from pipelines.training.evaluation import evaluate, train_validation_test_split
from pipelines.training.train import (
    DEFAULT_PARAMS,
    feature_matrix,
    label_vector,
    labelled,
    predict,
    train_booster,
)

REFERENCE_PARAMS: dict[str, object] = {"objective": "binary:logistic", "max_depth": 7, "eta": 0.1, "gamma": 4.0,
                                       "min_child_weight": 6.0, "subsample": 0.8}
REFERENCE_NUM_ROUND = 200
REFERENCE_MISSING_AS = -1.0


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: feature set, booster parameters, rounds and the encoding of a missing day."""

    name: str
    feature_set: str
    params: dict[str, object] = field(default_factory=dict)
    num_round: int = 200
    missing_as: float | None = None
    early_stopping_rounds: int | None = None


REFERENCE = Recipe("reference", "signals6", REFERENCE_PARAMS, REFERENCE_NUM_ROUND, REFERENCE_MISSING_AS)
CELLGUARD_SIGNALS6 = Recipe("cellguard-signals6", "signals6", DEFAULT_PARAMS, 200, None, early_stopping_rounds=20)


@dataclass
class RecipeRun:
    """One recipe trained and measured on one split: the summary, the booster and the scored rows behind it."""

    summary: dict
    booster: xgb.Booster
    validation: pd.DataFrame  # validation windows with `probability`
    test: pd.DataFrame  # test windows with `probability`


def run_recipe(windows: pd.DataFrame, recipe: Recipe, validation_start: date | str, test_start: date | str,
               target_precision: float = 0.5, alarm_days: Mapping[str, Iterable[date | str]] | None = None,
               gap_days: int = HORIZON_DAYS, seed: int = 0, nthread: int | None = None) -> RecipeRun:
    """Train a recipe on the split's train rows, choose the threshold on validation, measure on test."""
    split = train_validation_test_split(labelled(windows), validation_start, test_start, gap_days)
    if split.train.empty or split.validation.empty or split.test.empty:
        raise ValueError(f"split at validation {validation_start} / test {test_start} leaves "
                         f"{len(split.train)} train, {len(split.validation)} validation, {len(split.test)} test rows")
    names = feature_columns(recipe.feature_set)
    params = {**recipe.params, "seed": seed, **({"nthread": nthread} if nthread else {})}

    def matrix(rows: pd.DataFrame):
        return feature_matrix(rows, names, recipe.missing_as)

    booster = train_booster(matrix(split.train), label_vector(split.train), params, recipe.num_round,
                            matrix(split.validation), label_vector(split.validation),
                            recipe.early_stopping_rounds, verbose=False)
    validation = split.validation.assign(probability=predict(booster, matrix(split.validation)))
    test = split.test.assign(probability=predict(booster, matrix(split.test)))
    result = evaluate(validation, test, target_precision, alarm_days)
    summary = {
        "recipe": recipe.name, "feature_set": recipe.feature_set, "features": len(names),
        "missing_as": recipe.missing_as, "params": params, "num_round": recipe.num_round,
        "rounds_kept": booster.num_boosted_rounds(),
        "split": {"train_rows": len(split.train), "validation_rows": len(split.validation),
                  "test_rows": len(split.test), "validation_start": split.validation_start.isoformat(),
                  "test_start": split.test_start.isoformat(), "gap_days": split.gap_days},
        "evaluation": result.to_dict(),
    }
    return RecipeRun(summary, booster, validation, test)


def evaluate_recipe(windows: pd.DataFrame, recipe: Recipe, validation_start: date | str, test_start: date | str,
                    target_precision: float = 0.5, alarm_days: Mapping[str, Iterable[date | str]] | None = None,
                    gap_days: int = HORIZON_DAYS, seed: int = 0, nthread: int | None = None) -> dict:
    """The summary of `run_recipe`: recipe, split sizes and every metric, as plain values."""
    return run_recipe(windows, recipe, validation_start, test_start, target_precision, alarm_days, gap_days, seed,
                      nthread).summary


def reference_baseline(windows: pd.DataFrame, validation_start: date | str, test_start: date | str,
                       target_precision: float = 0.5, alarm_days: Mapping[str, Iterable[date | str]] | None = None,
                       num_round: int = REFERENCE_NUM_ROUND, nthread: int | None = None) -> dict:
    """The reference recipe on the given windows and split (num_round is lowered only to keep tests fast)."""
    recipe = REFERENCE if num_round == REFERENCE_NUM_ROUND else Recipe(
        REFERENCE.name, REFERENCE.feature_set, REFERENCE.params, num_round, REFERENCE.missing_as)
    return evaluate_recipe(windows, recipe, validation_start, test_start, target_precision, alarm_days,
                           nthread=nthread)
