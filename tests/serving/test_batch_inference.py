"""batch_inference.py on a lake with synthetic daily rows and a champion trained by the real training pipeline."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

# pytest puts tests/ on sys.path (its folders are packages, it is not), so the training tests' builders are `training.`
from features.builders import VIN_A, VIN_B, VIN_C, daily_row, daily_table
from training.daily_builders import FIRST_DAY, write_synthetic_daily

from pipelines.features.window_signals import feature_columns
from pipelines.features.windows import (
    KEY_COLUMNS,
    feature_matrix,
    inference_window_matrix,
    inference_windows,
    select_feature_set,
)
from pipelines.schema import CELL_DAILY_SCHEMA, DAILY_SCHEMA, PREDICTION_SCHEMA
from pipelines.serving.alerts import Notifier, raise_alerts
from pipelines.serving.batch_inference import (
    EXPLAINED_ALARMS_PER_DATE,
    STAGES,
    as_of_dates_for,
    batch_scorer,
    input_fingerprints,
    latest_as_of,
    rows_to_explain,
    score_dates,
)
from pipelines.serving.model_loading import load_registered
from pipelines.serving.reasons import feature_contributions, top_reasons
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
    alarmed = [r for r in rows if r["alarm"]]
    assert len(alarmed) < EXPLAINED_ALARMS_PER_DATE and summary.explained == summary.alarms
    for r in alarmed:
        contributions = [reason["contribution"] for reason in r["reasons"]]
        assert 1 <= len(r["reasons"]) <= 3 and contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions) and {reason["feature"] for reason in r["reasons"]} <= names
    assert all(r["reasons"] is None for r in rows if not r["alarm"]), "reasons explain alarms only"
    assert all(r["reasons"] is None for r in store.predictions_between(AS_OF[0], AS_OF[-1]) if not r["alarm"])
    assert set(summary.stage_seconds) == {*STAGES, "other"}
    assert sum(summary.stage_seconds.values()) == pytest.approx(summary.seconds, abs=0.01)


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


def test_a_given_scorer_scores_every_window_and_the_reasons_still_come_from_the_loaded_booster(lake, store) -> None:
    seen: list[np.ndarray] = []

    def constant(rows: np.ndarray) -> np.ndarray:
        seen.append(rows)
        return np.full(len(rows), 0.75, np.float32)

    summary = score_dates(AS_OF, lake=lake, store=store, now=NOW, probabilities_of=constant)

    (rows,) = seen  # one call for every window of every date
    assert rows.dtype == np.float32 and len(rows) == summary.rows == VEHICLES * len(AS_OF)
    got = read_predictions(lake)
    assert set(got["probability"].to_pylist()) == {0.75} and all(got["alarm"].to_pylist())
    assert summary.explained == summary.rows  # every row alarms, fewer than 1,000 per date: all explained


def test_a_scorer_answering_the_wrong_number_of_rows_is_an_error_before_anything_is_written(lake, store) -> None:
    with pytest.raises(ValueError, match=r"scoring 72 windows gave 71 probabilities"):
        score_dates(AS_OF, lake=lake, store=store, now=NOW, probabilities_of=lambda rows: np.zeros(len(rows) - 1))
    assert lake_objects(lake) == {} and store.predictions_between(AS_OF[0], AS_OF[-1]) == []


@pytest.mark.parametrize(("backend", "choice", "where"), [
    ("local", "auto", "in_process"), ("aws", "auto", "on_batch_transform"), ("aws", "in-process", "in_process"),
    ("local", "transform", "on_batch_transform")])
def test_batch_scoring_setting_chooses_where_windows_are_scored(lake, monkeypatch, backend, choice, where) -> None:
    from pipelines.config import load_settings

    monkeypatch.setenv("CELLGUARD_BACKEND", backend)
    monkeypatch.setenv("CELLGUARD_BATCH_SCORING", choice)
    loaded = load_registered(lake, registry.champion(lake, "full").version)
    assert batch_scorer(loaded, "run-1", load_settings()).__qualname__.startswith(where)


def test_an_unknown_batch_scoring_setting_is_a_clear_error(monkeypatch) -> None:
    from pipelines.config import load_settings

    monkeypatch.setenv("CELLGUARD_BATCH_SCORING", "gpu")
    with pytest.raises(ValueError, match="CELLGUARD_BATCH_SCORING must be auto, transform or in-process, not 'gpu'"):
        load_settings()


def test_reasons_are_the_ones_the_api_computes_for_the_most_probable_alarms_of_each_date(lake, store) -> None:
    summary = score_dates(AS_OF, lake=lake, store=store, now=NOW, explain_limit=2)
    got = read_predictions(lake).to_pylist()
    champion = registry.champion(lake, "full")
    model = load_registered(lake, champion.version).model
    windows = select_feature_set(inference_windows(daily_zone.read_daily(lake), AS_OF), "full")  # the SQL's
    matrix = feature_matrix(windows, model.feature_names)
    expected = top_reasons(feature_contributions(model.booster, matrix, model.missing_as), matrix,
                           model.feature_names).to_pylist()
    by_key = {(vin, day): n for n, (vin, day) in enumerate(zip(windows["vin"].to_pylist(),
                                                              windows["as_of"].to_pylist(), strict=True))}
    explained = 0
    for day in AS_OF:
        alarms = sorted((r for r in got if r["as_of"] == day and r["alarm"]), key=lambda r: -r["probability"])
        assert len(alarms) > 2, "the test needs more alarms on each date than the limit"
        for rank, r in enumerate(alarms):
            if rank < 2:
                assert r["reasons"] == expected[by_key[(r["vin"], day)]] and r["reasons"]
                explained += 1
            else:
                assert r["reasons"] is None, (rank, r["probability"])
    assert summary.explained == explained == 2 * len(AS_OF)


def test_rows_to_explain_takes_each_dates_most_probable_alarms_ties_by_row_order() -> None:
    probabilities = np.array([0.9, 0.2, 0.7, 0.7, 0.95, 0.6, 0.8])
    as_of = np.array([1, 1, 1, 1, 2, 2, 2])
    assert rows_to_explain(probabilities, 0.5, as_of, 2).tolist() == [0, 2, 4, 6]  # 3 ties 2 and loses
    assert rows_to_explain(probabilities, 0.5, as_of, 10).tolist() == [0, 2, 3, 4, 5, 6]
    assert rows_to_explain(probabilities, 0.99, as_of, 10).tolist() == []
    assert rows_to_explain(probabilities, 0.5, as_of, 0).tolist() == []


def test_request_ids_hash_the_float32_features_and_suspect_cell_as_earlier_runs_did() -> None:
    import hashlib

    other_nan = np.array([0x7FF8400000000000], np.uint64).view(np.float64)[0]  # a NaN whose float32 bits differ
    matrix = np.array([[1.5, np.nan, -0.0], [1.5, other_nan, -0.0], [1.5, np.nan, 0.0], [3.0, 2.0, 1.0]])
    cells = pa.array([7, 7, 7, None], pa.int32())
    # The definition earlier runs stored their request ids with: keys stay the same across this change.
    earlier = [hashlib.blake2b(np.where(np.isnan(row), np.nan, row).astype(np.float32).tobytes()
                               + (-1 if cell is None else cell).to_bytes(8, "little", signed=True),
                               digest_size=6).hexdigest() for row, cell in zip(matrix, cells.to_pylist(), strict=True)]
    assert input_fingerprints(matrix, cells) == earlier
    assert input_fingerprints(matrix.astype(np.float32), cells) == earlier
    assert earlier[0] == earlier[1] and len(set(earlier)) == 3  # any NaN is one value; -0.0 and 0.0 differ in bits


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
    nothing = score_dates([beyond], lake=lake, store=store, now=NOW)  # no daily row in the range read at all
    assert (nothing.scored, nothing.skipped, nothing.rows, nothing.keys) == ([], [beyond.isoformat()], 0, [])
    assert summary.rows == VEHICLES and "skipped" in summary.message


def test_without_a_champion_nothing_is_scored_and_the_summary_says_why(lake, store) -> None:
    lake.delete(registry.champion_key("full"))
    summary = score_dates(AS_OF, lake=lake, store=store, now=NOW)
    assert summary.model_version is None and summary.scored == [] and summary.rows == 0
    assert "no champion for feature set 'full'" in summary.message and "bms_training" in summary.message
    assert lake_objects(lake) == {} and store.predictions_between(AS_OF[0], AS_OF[-1]) == []


def test_scored_alarms_become_one_episode_per_vehicle_until_it_is_quiet_for_three_days(lake, store) -> None:
    dates = [LAST_DAY - timedelta(days=k) for k in range(5, -1, -1)]
    score_dates(dates, lake=lake, store=store, now=NOW)
    for day in dates:  # one alerts run per day, as the DAG does
        raise_alerts([day], store=store, notifier=Notifier(), now=NOW, quiet_days=3)
    alarmed = {}
    for row in read_predictions(lake).to_pylist():
        alarmed.setdefault(row["vin"], []).append((row["as_of"], row["alarm"]))
    expected = []
    for vin, history in sorted(alarmed.items()):
        flags = [alarm for _, alarm in sorted(history)]
        starts = [dates[i] for i, flag in enumerate(flags) if flag and not any(flags[max(0, i - 3):i])]
        expected += [(vin, start) for start in starts]
    got = [(a["vin"], a["first_as_of"]) for a in store.alerts_between(dates[0], dates[-1])]
    assert sorted(got) == sorted(expected) and got
    assert any(sum(flag for _, flag in h) >= 3 for h in alarmed.values()), "some vehicle alarms 3+ days running"


# ------------------------------------------------------------------ the numpy windows the batch scores are the SQL's


HAND_BUILT = daily_table([
    daily_row(VIN_A, "2026-01-31", total_voltage=300.0),  # before every context
    daily_row(VIN_A, "2026-02-01", total_voltage=301.0, suspect_cell=2, cell_range_p95_mv=40.0),
    daily_row(VIN_A, "2026-02-13", total_voltage=None, suspect_cell=4, alarm=True),  # a null value: NaN
    daily_row(VIN_A, "2026-02-14", total_voltage=314.0, suspect_cell=None, alarm=None),  # no cell named that day
    daily_row(VIN_B, "2026-02-10", total_voltage=410.0, suspect_cell=7, frame_count=8_000),
    daily_row(VIN_B, "2026-02-15", suspect_cell=None),
    daily_row(VIN_C, "2026-02-15", suspect_cell=None),  # no context for 02-15; a window without any suspect after
])


def assert_same_windows(daily: pa.Table, as_of: list, columns: list[str]) -> None:
    sql = inference_windows(daily, as_of)
    arrays = inference_window_matrix(daily, as_of, columns)
    assert arrays.keys.equals(sql.select(KEY_COLUMNS)), (arrays.keys.to_pylist()[:3], sql.select(KEY_COLUMNS).to_pylist()[:3])
    expected = feature_matrix(sql, columns)
    np.testing.assert_array_equal(arrays.matrix(), expected)
    np.testing.assert_array_equal(arrays.matrix(np.float32), expected.astype(np.float32))
    some = np.arange(0, len(expected), 2)
    np.testing.assert_array_equal(arrays.matrix_rows(some), expected[some])
    assert arrays.columns == tuple(columns) and arrays.matrix().dtype == np.float64


@pytest.mark.parametrize("feature_set", ["full", "signals6"])
def test_numpy_windows_equal_the_sql_windows_on_hand_built_rows(feature_set) -> None:
    as_of = ["2026-02-15", "2026-02-16", "2026-02-28", "2026-03-30"]  # the last has no context day at all
    assert_same_windows(HAND_BUILT, as_of, feature_columns(feature_set))
    assert_same_windows(HAND_BUILT, as_of, feature_columns(feature_set)[::-1])  # any column order
    unsorted = pa.concat_tables([HAND_BUILT.slice(3), HAND_BUILT.slice(0, 3)])  # two chunks, rows in any order
    assert_same_windows(unsorted, as_of, feature_columns(feature_set))
    keys = inference_window_matrix(HAND_BUILT, as_of, feature_columns(feature_set)).keys.to_pylist()
    assert [(k["vin"], str(k["as_of"]), k["context_days"], k["suspect_cell"]) for k in keys][:3] == [
        (VIN_B, "2026-02-15", 1, 7), (VIN_B, "2026-02-16", 2, 7), (VIN_B, "2026-02-28", 1, None)]


def test_numpy_windows_equal_the_sql_windows_on_the_lakes_rows(lake) -> None:
    daily = daily_zone.read_daily(lake)
    columns = list(registry.champion(lake, "full").card["feature_names"])  # what the model reads, not all 392
    assert_same_windows(daily, AS_OF + [FIRST_DAY + timedelta(days=20)], columns)


def test_numpy_windows_refuse_duplicate_days_and_unknown_columns_and_allow_nothing_to_do() -> None:
    twice = pa.concat_tables([HAND_BUILT, HAND_BUILT.slice(4, 1)])
    with pytest.raises(ValueError, match=f"not unique on \\(vin, dt\\): {VIN_B} 2026-02-10"):
        inference_window_matrix(twice, ["2026-02-15"], feature_columns("signals6"))
    with pytest.raises(ValueError, match="not window features.*'total_voltage_lag15'"):
        inference_window_matrix(HAND_BUILT, ["2026-02-15"], ["total_voltage_lag15"])
    with pytest.raises(ValueError, match="lack column"):
        inference_window_matrix(HAND_BUILT.drop_columns(["total_current"]), ["2026-02-15"], feature_columns("signals6"))
    for daily, as_of in ((HAND_BUILT.slice(0, 0), ["2026-02-15"]), (HAND_BUILT, []), (HAND_BUILT, ["2030-01-01"])):
        empty = inference_window_matrix(daily, as_of, feature_columns("signals6"))
        assert empty.keys.num_rows == 0 and empty.keys.column_names == KEY_COLUMNS and empty.matrix().shape == (0, 84)
