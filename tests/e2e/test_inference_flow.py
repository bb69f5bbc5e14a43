"""End to end: simulate → bms_ingest → bms_features → bms_training → bms_batch_inference through Airflow's dag.test().

A small fleet (12 vehicles x 64 days: the fewest days an honest split accepts, and seed 5 puts alarms in every part),
one `full` model, then batch inference for three as_of dates with a real loopback webhook for the alerts.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

# pytest puts tests/ on sys.path, so the serving tests' loopback webhook is `serving.test_alerts`
from serving.test_alerts import webhook_server

from pipelines.simulate import SimulationParams, simulate_fleet
from pipelines.storage.catalog import connect_read_only
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import read_predictions
from pipelines.training import registry

from .airflow_events import asset_event_extra

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
VEHICLES, DAYS = 12, 64
START = dt.date(2026, 1, 1)
LAST_DAY = START + dt.timedelta(days=DAYS - 1)
AS_OF = [(LAST_DAY + dt.timedelta(days=k)).isoformat() for k in (-1, 0, 1)]  # the last: the day after the data


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> dict:
    """One simulated fleet taken through the four DAGs, batch inference twice; every test reads what they left."""
    home = tmp_path_factory.mktemp("inference-flow")
    with pytest.MonkeyPatch.context() as env, webhook_server() as hook:
        env.setenv("CELLGUARD_HOME", str(home))
        for name in ("CELLGUARD_LAKE_URI", "CELLGUARD_CATALOG_PATH", "CELLGUARD_PROMOTION_AP_MARGIN",
                     "CELLGUARD_EVENT_STORE_URL", "CELLGUARD_BACKEND"):
            env.delenv(name, raising=False)
        env.setenv("CELLGUARD_DATA_DOCS", "0")
        env.setenv("CELLGUARD_INGEST_MAX_OBJECTS", "100000")
        env.setenv("CELLGUARD_ALERT_WEBHOOK", hook.url)
        migrated = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                                  timeout=600)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        lake = Lake((home / "lake").as_uri())
        params = SimulationParams(vehicles=VEHICLES, days=DAYS, start_date=START, interval_s=30, seed=5,
                                  fault_fraction=0.5, file_format="parquet")
        simulate_fleet(params, lake)
        runs = {dag_id: _run(dag_id) for dag_id in ("bms_ingest", "bms_features")}
        runs["bms_training"] = _run("bms_training", {"feature_sets": ["full"], "num_round": 30})
        runs["bms_batch_inference"] = _run("bms_batch_inference", {"dates": AS_OF})
        store = EventStore.from_settings()
        after_first = {"store_rows": len(store.predictions_between(START, LAST_DAY + dt.timedelta(days=30))),
                       "objects": {i.key: lake.read_bytes(i.key) for i in lake.list("predictions")},
                       "posts": len(hook.requests)}
        rerun = _run("bms_batch_inference")  # no dates, no event: the day after the newest daily date, again
        yield {"home": home, "lake": lake, "runs": runs, "rerun": rerun, "store": store, "hook": hook,
               "after_first": after_first}


def _run(dag_id: str, conf: dict | None = None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id].test(run_conf=conf)


def test_every_dag_run_succeeds(flow) -> None:
    states = {dag_id: run.state for dag_id, run in flow["runs"].items()}
    assert states == dict.fromkeys(flow["runs"], "success") and flow["rerun"].state == "success"


def test_every_vehicle_is_scored_at_each_as_of_in_the_lake_the_store_and_the_catalog(flow) -> None:
    lake, store = flow["lake"], flow["store"]
    champion = registry.champion(lake, "full")
    table = read_predictions(lake)
    assert sorted({d.isoformat() for d in table["as_of"].to_pylist()}) == AS_OF
    assert table.num_rows == VEHICLES * len(AS_OF)
    assert set(table["model_version"].to_pylist()) == {champion.version}
    assert set(table["source"].to_pylist()) == {"batch"}
    stored = store.predictions_between(dt.date.fromisoformat(AS_OF[0]), dt.date.fromisoformat(AS_OF[-1]))
    assert sorted((r["vin"], r["as_of"], r["request_id"]) for r in stored) == sorted(
        zip(table["vin"].to_pylist(), table["as_of"].to_pylist(), table["request_id"].to_pylist(), strict=True))
    assert all(r["suspect_cell"] is not None for r in stored), "the simulated packs name a suspect cell"
    with connect_read_only(flow["home"] / "catalog.duckdb") as con:
        rows, dates, version = con.execute(
            "select count(*), count(distinct as_of), any_value(model_version) from predictions where source = 'batch'"
        ).fetchone()
    assert (rows, dates, version) == (VEHICLES * len(AS_OF), len(AS_OF), champion.version)


def test_the_predictions_asset_event_carries_the_as_of_dates(flow) -> None:
    run = flow["runs"]["bms_batch_inference"]
    extra = asset_event_extra("predictions", run.run_id)
    assert extra == {"as_of": AS_OF, "model_version": registry.champion(flow["lake"], "full").version,
                     "feature_set": "full", "rows": VEHICLES * len(AS_OF)}


def test_alerts_are_one_episode_per_run_of_alarmed_days_each_posted_once(flow) -> None:
    store, lake = flow["store"], flow["lake"]
    history: dict[str, list[tuple[dt.date, bool]]] = {}
    for row in read_predictions(lake).to_pylist():
        history.setdefault(row["vin"], []).append((row["as_of"], row["alarm"]))
    expected = set()
    for vin, days in history.items():
        days.sort()
        for i, (day, alarm) in enumerate(days):
            if alarm and (i == 0 or not days[i - 1][1]):
                expected.add((vin, day))
    assert expected, "with half the packs faulty, some vehicle alarms at the end of the simulation"
    episodes = store.alerts_between(START, LAST_DAY + dt.timedelta(days=30))
    assert {(a["vin"], a["first_as_of"]) for a in episodes} == expected
    assert all(a["notified_at"] is not None and a["channel"] == "webhook" for a in episodes)
    posted = sorted((r["json"]["cellguard"]["vin"], r["json"]["cellguard"]["first_as_of"])
                    for r in flow["hook"].requests)
    assert posted == sorted((vin, day.isoformat()) for vin, day in expected)


def test_re_running_without_dates_scores_the_day_after_the_newest_data_and_changes_nothing(flow) -> None:
    lake, before = flow["lake"], flow["after_first"]
    assert {i.key: lake.read_bytes(i.key) for i in lake.list("predictions")} == before["objects"]
    assert len(flow["store"].predictions_between(START, LAST_DAY + dt.timedelta(days=30))) == before["store_rows"]
    assert len(flow["hook"].requests) == before["posts"]
