"""End to end: simulate → bms_ingest → bms_features → bms_training through Airflow's dag.test().

The `full` model must beat the reference recipe's average precision on the same simulated time split.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.simulate import SimulationParams, simulate_fleet
from pipelines.storage import daily_zone
from pipelines.storage.lake import Lake
from pipelines.training import registry

from .airflow_events import asset_event_extra

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
VEHICLES, DAYS = 24, 80


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> dict:
    """One simulated fleet taken through the three DAGs; every test reads what they left."""
    home = tmp_path_factory.mktemp("flow")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CELLGUARD_HOME", str(home))
        for name in ("CELLGUARD_LAKE_URI", "CELLGUARD_CATALOG_PATH", "CELLGUARD_PROMOTION_AP_MARGIN"):
            env.delenv(name, raising=False)
        env.setenv("CELLGUARD_DATA_DOCS", "0")
        env.setenv("CELLGUARD_INGEST_MAX_OBJECTS", "100000")
        migrated = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                                  timeout=600)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        lake = Lake((home / "lake").as_uri())
        params = SimulationParams(vehicles=VEHICLES, days=DAYS, start_date=dt.date(2026, 1, 1), interval_s=30, seed=5,
                                  fault_fraction=0.5, file_format="parquet")
        simulated = simulate_fleet(params, lake)
        runs = {dag_id: _run(dag_id) for dag_id in ("bms_ingest", "bms_features", "bms_training")}
        yield {"home": home, "lake": lake, "simulated": simulated, "runs": runs}


def _run(dag_id: str, conf: dict | None = None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id].test(run_conf=conf)


def test_every_dag_run_succeeds(flow) -> None:
    assert {dag_id: run.state for dag_id, run in flow["runs"].items()} == dict.fromkeys(flow["runs"], "success")


def test_features_cover_every_vehicle_day_with_frames(flow) -> None:
    lake = flow["lake"]
    daily = daily_zone.read_daily(lake)
    assert daily_zone.computed_days(lake) == daily_zone.frame_days(lake)
    assert daily.num_rows > VEHICLES * (DAYS - 5)
    assert sum(daily["alarm_frames"].to_pylist()) == flow["simulated"].alarm_frames


def test_bms_features_announces_the_daily_asset_with_its_dates(flow) -> None:
    run = flow["runs"]["bms_features"]
    extra = asset_event_extra("daily", run.run_id)
    assert extra["dates"][0] == "2026-01-01" and len(extra["dates"]) >= DAYS


def test_the_full_model_beats_the_reference_recipe_on_the_same_split(flow) -> None:
    lake = flow["lake"]
    full = registry.champion(lake, "full")
    assert full is not None and registry.champion(lake, "signals6") is not None
    ours, reference = full.card["metrics"], full.card["baseline_metrics"]
    assert ours["positive_windows"] == reference["positive_windows"] > 0, "both measured on the same test windows"
    assert ours["average_precision"] > reference["average_precision"]
    decision = json.loads(lake.read_bytes(f"{full.key}decision.json"))
    assert decision["promoted"] and decision["champion"] is None
    assert lake.exists(f"{full.key}report/index.html") and lake.exists(f"{full.key}report/pr.png")
