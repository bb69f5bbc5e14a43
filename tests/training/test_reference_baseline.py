"""pipelines/training/reference_baseline.py: the reference recipe on the same split as CellGuard's model."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipelines.training.reference_baseline import (
    CELLGUARD_SIGNALS6,
    REFERENCE,
    Recipe,
    evaluate_recipe,
    reference_baseline,
)

from .builders import FIRST_AS_OF, synthetic_windows

VALIDATION_START, TEST_START = "2026-02-20", "2026-03-20"


@pytest.fixture(scope="module")
def windows():
    return synthetic_windows(vehicles=12, days=100)


def test_reference_recipe_is_the_published_one() -> None:
    assert REFERENCE.params == {"objective": "binary:logistic", "max_depth": 7, "eta": 0.1, "gamma": 4.0,
                                "min_child_weight": 6.0, "subsample": 0.8}
    assert (REFERENCE.feature_set, REFERENCE.num_round, REFERENCE.missing_as) == ("signals6", 200, -1.0)


def test_reference_baseline_on_the_honest_split(windows) -> None:
    result = reference_baseline(windows, VALIDATION_START, TEST_START, target_precision=0.8, num_round=15,
                                nthread=1)
    assert (result["features"], result["missing_as"], result["rounds_kept"]) == (84, -1.0, 15)
    split = result["split"]
    # train: Jan 1 .. Feb 5 (36 days); validation: Feb 20 .. Mar 5 (14); test: Mar 20 .. Mar 28 (labelled)
    assert (split["train_rows"], split["validation_rows"], split["test_rows"]) == (12 * 36, 12 * 14, 12 * 9)
    last_labelled = FIRST_AS_OF + timedelta(days=100 - 1 - 13)
    assert last_labelled == date(2026, 3, 28)
    evaluation = result["evaluation"]
    assert evaluation["windows"] == 12 * 9 and evaluation["roc_auc"] > 0.9
    assert evaluation["threshold"]["target_precision"] == 0.8
    assert evaluation["vehicles"]["vehicles"] == 12 and evaluation["lead_time"] is None


def test_cellguard_recipe_runs_on_the_same_split_for_side_by_side(windows) -> None:
    fast = Recipe(CELLGUARD_SIGNALS6.name, "signals6", CELLGUARD_SIGNALS6.params, num_round=15)
    ours = evaluate_recipe(windows, fast, VALIDATION_START, TEST_START, nthread=1)
    reference = reference_baseline(windows, VALIDATION_START, TEST_START, num_round=15, nthread=1)
    assert ours["split"] == reference["split"] and ours["missing_as"] is None
    assert ours["evaluation"]["roc_auc"] > 0.9


def test_a_split_that_leaves_no_test_rows_is_reported(windows) -> None:
    with pytest.raises(ValueError, match="0 test rows"):
        reference_baseline(windows, VALIDATION_START, "2026-05-01", num_round=2)
