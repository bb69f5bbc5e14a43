"""batch_inference.py on a lake with synthetic daily rows and a champion trained by the real training pipeline."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

# pytest puts tests/ on sys.path (its folders are packages, it is not), so the training tests' builders are `training.`
from training.daily_builders import FIRST_DAY, write_synthetic_daily

from pipelines.features.windows import inference_windows, select_feature_set
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA, PREDICTION_SCHEMA
from pipelines.serving.alerts import Notifier, raise_alerts
from pipelines.serving.batch_inference import as_of_dates_for, latest_as_of, score_dates
from pipelines.storage import daily_zone
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import read_predictions
from pipelines.training import registry, train
from pipelines.training.pipeline import TrainingRequest, train_and_register

VEHICLES, DAYS = 24, 90
LAST_DAY = FIRST_DAY + timedelta(days=DAYS - 1)
AS_OF = [LAST_DAY - timedelta(days=2), LAST_DAY - timedelta(days=1), LAST_DAY]
NOW = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)


def suspect_of(vin: str) -> int:
    """The synthetic suspect cell of a vehicle (its number + 1)."""
    return int(vin[-3:]) + 1


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake folder with 24 vehicles x 90 synthetic days (with suspect cells) and a trained `full` champion."""
    root = tmp_path_factory.mktemp("batch") / "lake"
    lake = Lake(root.as_uri())
    with pytest.MonkeyPatch.context() as env:
        env.delenv("CELLGUARD_PROMOTION_AP_MARGIN", raising=False)
        env.setenv("CELLGUARD_HOME", str(root.parent / "home"))
        write_synthetic_daily(lake, vehicles=VEHICLES, days=DAYS)
        for day in daily_zone.days_between(FIRST_DAY, LAST_DAY):
            rows = daily_zone.read_daily(lake, day, day)
            cells = pa.array([suspect_of(v) for v in rows["vin"].to_pylist()], pa.int32())
            rows = rows.set_column(rows.column_names.index("suspect_cell"), "suspect_cell", cells)
            daily_zone.write_computed(lake, day, rows.cast(DAILY_SCHEMA), CELL_DAILY_SCHEMA.empty_table())
        train_and_register(TrainingRequest("full", params={"nthread": 1}, num_round=30), lake=lake)
    assert registry.champion(lake, "full") is not None
    return root


@pytest.fixture
def lake(prepared: Path, tmp_path: Path) -> Lake:
    """A copy of the prepared lake, so every test starts without predictions."""
    shutil.copytree(prepared, tmp_path / "lake")
    return Lake((tmp_path / "lake").as_uri())


@pytest.fixture
def store(tmp_path: Path):
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    yield store
    store.close()


def lake_objects(lake: Lake) -> dict[str, bytes]:
    return {info.key: lake.read_bytes(info.key) for info in lake.list("predictions")}


def test_every_vehicle_is_scored_at_each_as_of_into_the_lake_and_the_store(lake, store) -> None:
    champion = registry.champion(lake, "full")
    summary = score_dates(AS_OF, lake=lake, store=store, now=NOW)
    assert (summary.scored, summary.skipped) == ([d.isoformat() for d in AS_OF], [])
    assert summary.model_version == champion.version and summary.threshold == champion.card["threshold"]
    assert summary.rows == summary.new_in_store == VEHICLES * len(AS_OF)
    assert summary.keys == [f"predictions/dt={d}/batch-{champion.version}.parquet" for d in AS_OF]

    table = read_predictions(lake)
    assert table.schema == PREDICTION_SCHEMA and table.num_rows == VEHICLES * len(AS_OF)
    assert len(store.predictions_between(AS_OF[0], AS_OF[-1])) == VEHICLES * len(AS_OF)
    rows = table.to_pylist()
    assert {r["source"] for r in rows} == {"batch"} and {r["feature_set"] for r in rows} == {"full"}
    assert {r["model_version"] for r in rows} == {champion.version}
    assert all(r["alarm"] == (r["probability"] >= r["threshold"]) for r in rows)
    assert all(r["suspect_cell"] == suspect_of(r["vin"]) for r in rows)
    assert all(r["created_at"] == NOW for r in rows)
    assert all(r["request_id"].startswith(f"batch:{champion.version}:{r['as_of']}:") for r in rows)
    assert len({(r["vin"], r["request_id"]) for r in rows}) == len(rows)
    assert summary.alarms == sum(r["alarm"] for r in rows) > 0, "faulty synthetic vehicles alarm near the end"
    names = set(champion.card["feature_names"])
    for r in rows:
        contributions = [reason["contribution"] for reason in r["reasons"]]
        assert len(r["reasons"]) <= 3 and contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions) and {reason["feature"] for reason in r["reasons"]} <= names
    alarmed = [r for r in rows if r["alarm"]]
    assert all(r["reasons"] for r in alarmed), "an alarm always has a feature pushing towards it"


def test_probabilities_equal_train_predict_on_the_same_windows(lake, store) -> None:
    score_dates(AS_OF, lake=lake, store=store, now=NOW)
    champion = registry.champion(lake, "full")
    archive, _ = registry.load_version(lake, champion.version)
    folder = Path(lake.root) / "unpacked"
    folder.mkdir()
    (folder / train.ARCHIVE_FILE).write_bytes(archive)
    booster, metadata = train.load_booster(folder)
    windows = select_feature_set(inference_windows(daily_zone.read_daily(lake), AS_OF), "full").to_pandas()
    windows = windows.sort_values(["as_of", "vin"]).reset_index(drop=True)
    expected = train.predict(booster, train.feature_matrix(windows, metadata["feature_names"]))
    got = read_predictions(lake).to_pandas().sort_values(["as_of", "vin"]).reset_index(drop=True)
    assert list(got["vin"]) == list(windows["vin"])
    np.testing.assert_allclose(got["probability"].to_numpy(), expected.astype(np.float64), rtol=1e-6)
    first_reason = got["reasons"].iloc[int(np.argmax(expected))][0]
    column = windows[first_reason["feature"]].iloc[int(np.argmax(expected))]
    assert first_reason["value"] == (None if np.isnan(column) else pytest.approx(column))


def test_re_running_the_same_dates_changes_no_object_and_adds_nothing_to_the_store(lake, store) -> None:
    first = score_dates(AS_OF, lake=lake, store=store, now=NOW)
    before = lake_objects(lake)
    again = score_dates(AS_OF, lake=lake, store=store, now=NOW + timedelta(days=1))
    assert lake_objects(lake) == before and len(before) == len(AS_OF)
    assert again.new_in_store == 0 and again.rows == first.rows
    assert len(store.predictions_between(AS_OF[0], AS_OF[-1])) == VEHICLES * len(AS_OF)
    assert {r["created_at"] for r in read_predictions(lake).to_pylist()} == {NOW}


def test_late_data_gives_a_vehicle_a_new_prediction_and_the_batch_object_holds_the_current_one(lake, store) -> None:
    as_of = AS_OF[-1]
    score_dates([as_of], lake=lake, store=store, now=NOW)
    day = as_of - timedelta(days=1)
    rows = daily_zone.read_daily(lake, day, day)
    vin = rows["vin"][0].as_py()
    changed = rows.set_column(rows.column_names.index("cell_range_rest_max_mv"), "cell_range_rest_max_mv",
                              pa.array([500.0] + rows["cell_range_rest_max_mv"].to_pylist()[1:], pa.float64()))
    daily_zone.write_computed(lake, day, changed, CELL_DAILY_SCHEMA.empty_table())
    later = NOW + timedelta(hours=6)
    summary = score_dates(as_of_dates_for([day]), lake=lake, store=store, now=later)
    assert summary.scored == [as_of.isoformat()] and summary.new_in_store == 1
    stored = [r for r in store.predictions_between(as_of, as_of) if r["vin"] == vin]
    assert [r["created_at"] for r in stored] == [NOW, later]
    current = [r for r in read_predictions(lake, as_of, as_of).to_pylist() if r["vin"] == vin]
    assert len(current) == 1 and current[0]["request_id"] == stored[-1]["request_id"]
    assert read_predictions(lake, as_of, as_of).num_rows == VEHICLES


def test_as_of_is_the_day_after_each_touched_date_and_dates_without_context_are_skipped(lake, store) -> None:
    assert as_of_dates_for(["2026-03-02", date(2026, 2, 27), "2026-03-02"]) == [date(2026, 2, 28), date(2026, 3, 3)]
    assert latest_as_of(lake) == LAST_DAY + timedelta(days=1)
    assert latest_as_of(Lake((Path(lake.root).parent / "empty").as_uri())) is None
    beyond = LAST_DAY + timedelta(days=15)  # its 14 context days are all after the data
    summary = score_dates([FIRST_DAY, LAST_DAY + timedelta(days=1), beyond], lake=lake, store=store, now=NOW)
    assert summary.scored == [(LAST_DAY + timedelta(days=1)).isoformat()]
    assert summary.skipped == [FIRST_DAY.isoformat(), beyond.isoformat()]
    assert summary.rows == VEHICLES and "skipped" in summary.message


def test_without_a_champion_nothing_is_scored_and_the_summary_says_why(lake, store) -> None:
    lake.delete(registry.champion_key("full"))
    summary = score_dates(AS_OF, lake=lake, store=store, now=NOW)
    assert summary.model_version is None and summary.scored == [] and summary.rows == 0
    assert "no champion for feature set 'full'" in summary.message and "bms_training" in summary.message
    assert lake_objects(lake) == {} and store.predictions_between(AS_OF[0], AS_OF[-1]) == []


def test_scored_alarms_become_one_episode_per_vehicle_over_consecutive_days(lake, store) -> None:
    dates = [LAST_DAY - timedelta(days=k) for k in range(5, -1, -1)]
    score_dates(dates, lake=lake, store=store, now=NOW)
    for day in dates:  # one alerts run per day, as the DAG does
        raise_alerts([day], store=store, notifier=Notifier(), now=NOW)
    alarmed = {}
    for row in read_predictions(lake).to_pylist():
        alarmed.setdefault(row["vin"], []).append((row["as_of"], row["alarm"]))
    expected = []
    for vin, history in sorted(alarmed.items()):
        flags = [alarm for _, alarm in sorted(history)]
        starts = [dates[i] for i, flag in enumerate(flags) if flag and (i == 0 or not flags[i - 1])]
        expected += [(vin, start) for start in starts]
    got = [(a["vin"], a["first_as_of"]) for a in store.alerts_between(dates[0], dates[-1])]
    assert sorted(got) == sorted(expected) and got
    assert any(sum(flag for _, flag in h) >= 3 for h in alarmed.values()), "some vehicle alarms 3+ days running"
