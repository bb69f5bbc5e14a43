"""train_and_register: windows from the daily zone, an honest split, train.py, the reference beside it, the gate."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from pipelines.storage.lake import Lake
from pipelines.training import registry
from pipelines.training.pipeline import TrainingRequest, plan_split, request_from_params, train_and_register

from .daily_builders import FIRST_DAY, write_synthetic_daily

FAST = {"nthread": 1}


@pytest.fixture(scope="module")
def daily_lake(tmp_path_factory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("daily-lake").as_uri())
    write_synthetic_daily(lake)
    return lake


def copy_lake(source: Lake, tmp_path) -> Lake:
    lake = Lake((tmp_path / "lake").as_uri())
    for info in source.list("daily"):
        lake.write_bytes(info.key, source.read_bytes(info.key))
    return lake


def test_the_split_keeps_a_label_horizon_between_its_parts() -> None:
    plan = plan_split(date(2026, 1, 2), date(2026, 3, 18))  # 76 days: 48 usable -> 12-day validation and test
    assert (plan.test_start, plan.last_as_of) == (date(2026, 3, 7), date(2026, 3, 18))
    # validation as_of Feb 9 … Feb 20 (12 days), then 14 days of gap; training as_of ends 14 days before Feb 9
    assert plan.validation_start == date(2026, 2, 9)
    assert (plan.test_start - plan.validation_start).days == 12 + 14


def test_too_few_days_for_an_honest_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs at least 49"):
        plan_split(date(2026, 1, 1), date(2026, 2, 10))


def test_a_run_registers_a_version_with_card_report_and_decision(daily_lake: Lake, tmp_path) -> None:
    lake = copy_lake(daily_lake, tmp_path)
    now = datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
    result = train_and_register(TrainingRequest("full", params=FAST, num_round=40), lake=lake, now=now)

    card = result.card
    assert result.version.startswith("20260401t020000z-full-") and result.champion == result.version
    assert card["split"]["gap_days"] == 14 and card["training_data"]["vehicles"] == 24
    # the last as_of has a complete horizon: the last daily day (day 89) minus 13
    assert card["training_data"]["last_as_of"] == (FIRST_DAY + timedelta(days=89 - 13)).isoformat()
    assert len(card["feature_names"]) == 26 * 14 and card["feature_names"][0] == "total_voltage_lag14"
    # the drift is visible days before the alarm: the model ranks far better than chance on the held-out weeks
    assert card["metrics"]["roc_auc"] > 0.9 and card["metrics"]["average_precision"] > 0.6
    assert card["baseline_metrics"]["average_precision"] is not None
    assert result.decision["promoted"] and "first model for full" in result.decision["reason"]
    stored = json.loads(lake.read_bytes(f"models/bms/{result.version}/decision.json"))
    assert stored["promoted"] is True
    html = lake.read_bytes(f"models/bms/{result.version}/report/index.html").decode()
    assert "reference recipe" in html and result.version in html
    assert result.report_url.endswith(f"models/bms/{result.version}/report/index.html")


def test_a_second_run_is_compared_with_the_champion_on_the_same_test_window(daily_lake: Lake, tmp_path,
                                                                             monkeypatch) -> None:
    lake = copy_lake(daily_lake, tmp_path)
    first = train_and_register(TrainingRequest("signals6", params=FAST, num_round=40, with_baseline=False), lake=lake,
                               now=datetime(2026, 4, 1, tzinfo=UTC))
    monkeypatch.setenv("CELLGUARD_PROMOTION_AP_MARGIN", "0")
    weaker = TrainingRequest("signals6", params={**FAST, "max_depth": 1}, num_round=2, early_stopping_rounds=1,
                             with_baseline=False)
    second = train_and_register(weaker, lake=lake, now=datetime(2026, 4, 2, tzinfo=UTC))

    decision = second.decision
    assert decision["champion"] == first.version and decision["margin"] == 0.0
    assert decision["test_window"] == first.card["decision"]["test_window"]
    assert decision["champion_ap"] == pytest.approx(first.card["metrics"]["average_precision"])
    assert decision["promoted"] == (decision["challenger_ap"] >= decision["champion_ap"])
    assert registry.champion(lake, "signals6").version == (second.version if decision["promoted"] else first.version)
    assert {v.version for v in registry.list_versions(lake, "signals6")} == {first.version, second.version}


def test_no_daily_rows_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="no daily rows"):
        train_and_register(lake=Lake((tmp_path / "empty").as_uri()))


def test_params_from_the_dag_become_a_request() -> None:
    request = request_from_params("full", {"first_as_of": "2026-01-05", "last_as_of": None, "num_round": 50,
                                           "max_depth": 4, "eta": 0.2, "target_precision": 0.6})
    assert (request.first_as_of, request.last_as_of, request.num_round) == (date(2026, 1, 5), None, 50)
    assert request.params == {"max_depth": 4, "eta": 0.2} and request.target_precision == 0.6
