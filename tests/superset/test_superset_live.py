"""`superset/launch.py start` against a real Superset: the bundle imports, and its charts read the local catalog.

One Superset for the module (creating .venv-superset if needed, migrating, importing: a few minutes on a fresh
machine), on a free loopback port, with CELLGUARD_HOME in a temporary folder holding a lake written by the zones'
own writers and the catalog built over it.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from statistics import mean

import httpx
import pyarrow as pa
import pytest

from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage import predictions_zone
from pipelines.storage.catalog import build_catalog
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake

from .fleet_lake import VINS, FleetFixture, batch_rows, write_fleet
from .launcher import LAUNCH_SCRIPT, REPO, load_launch

pytestmark = pytest.mark.slow

launch = load_launch()
SETUP_TIMEOUT_S = 900  # a fresh machine downloads Superset's wheels first


@dataclass
class RunningSuperset:
    """A started Superset, the folder it was started for, and the admin client."""

    base_url: str
    home: Path
    lake: Lake
    fleet: FleetFixture
    client: httpx.Client
    start_output: str

    def chart_data(self, name: str) -> list[dict]:
        """The rows GET /api/v1/chart/<id>/data/ answers for a chart of the dashboard (its saved query)."""
        charts = self.client.get("/api/v1/dashboard/cellguard-fleet/charts").json()["result"]
        chart_id = next(c["id"] for c in charts if c["slice_name"] == name)
        answer = self.client.get(f"/api/v1/chart/{chart_id}/data/")
        assert answer.status_code == 200, answer.text
        return answer.json()["result"][0]["data"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_launcher(command: str, home: Path, port: int) -> subprocess.CompletedProcess:
    """The launcher as `make superset` runs it, with every CellGuard setting but home and port at its default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLGUARD_")}
    env.update(CELLGUARD_HOME=str(home), CELLGUARD_SUPERSET_PORT=str(port))
    return subprocess.run([sys.executable, str(LAUNCH_SCRIPT), command], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=SETUP_TIMEOUT_S)


def epoch_ms(day: date) -> float:
    """How Superset's chart data sends a date."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000


@pytest.fixture(scope="module")
def superset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSuperset]:
    home = tmp_path_factory.mktemp("superset-home")
    lake = Lake((home / "lake").as_uri())
    fleet = write_fleet(lake, EventStore(f"sqlite:///{home / 'events.sqlite'}"), days=5, switch_after=3)
    build_catalog(lake, home / "catalog.duckdb")
    port = free_port()
    started = run_launcher("start", home, port)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        base_url = f"http://127.0.0.1:{port}"
        client = launch.login(base_url, (home / "superset" / "admin-password").read_text().strip())
        yield RunningSuperset(base_url, home, lake, fleet, client, started.stdout)
        client.close()
    finally:
        stopped = run_launcher("stop", home, port)
        assert stopped.returncode == 0, stopped.stderr


def test_start_prints_the_dashboard_and_the_new_password_once(superset: RunningSuperset) -> None:
    password = (superset.home / "superset" / "admin-password").read_text().strip()
    assert f"dashboard: {superset.base_url}/superset/dashboard/cellguard-fleet/" in superset.start_output
    assert superset.start_output.count(password) == 1
    assert f"catalog:   duckdb:///{superset.home}/catalog.duckdb?access_mode=read_only" in superset.start_output


def test_secrets_live_beside_the_metadata_readable_by_the_owner_only(superset: RunningSuperset) -> None:
    folder = superset.home / "superset"
    for name in ("secret_key", "admin-password"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert (folder / "superset.db").is_file()
    assert len((folder / "secret_key").read_text().strip()) >= 60


def test_dashboard_holds_the_five_charts(superset: RunningSuperset) -> None:
    charts = superset.client.get("/api/v1/dashboard/cellguard-fleet/charts").json()["result"]
    assert sorted(c["slice_name"] for c in charts) == [
        "Alarms and predicted alarms per day", "Alerts: alarm episodes",
        "Cell voltage range trend (daily p95 at rest and under load)", "Fleet risk: vehicles by latest probability",
        "Model versions over time"]


def test_superset_opens_the_catalog_read_only(superset: RunningSuperset) -> None:
    database = superset.client.get("/api/v1/database/").json()["result"]
    assert [d["database_name"] for d in database] == ["CellGuard"]
    answer = superset.client.post("/api/v1/sqllab/execute/", json={
        "database_id": database[0]["id"], "sql": "select current_setting('access_mode') as mode, count(*) as n "
                                                 "from predictions", "runAsync": False, "client_id": "accessmode1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == [{"mode": "read_only", "n": len(superset.fleet.predictions)}]


def test_fleet_risk_lists_each_vehicles_newest_prediction(superset: RunningSuperset) -> None:
    newest: dict[str, dict] = {}
    for row in sorted(superset.fleet.predictions, key=lambda r: (r["as_of"], r["created_at"])):
        newest[row["vin"]] = row
    expected = sorted(newest.values(), key=lambda r: (-r["probability"], r["vin"]))
    rows = superset.chart_data("Fleet risk: vehicles by latest probability")
    assert [(r["vin"], r["as_of"], r["probability"], r["alarm"], r["suspect_cell"], r["model_version"], r["source"])
            for r in rows] == [(r["vin"], epoch_ms(r["as_of"]), r["probability"], r["alarm"], r["suspect_cell"],
                                r["model_version"], r["source"]) for r in expected]
    assert rows[0]["source"] == "api"  # the API's later answer for the same as_of wins


def test_alarms_per_day_counts_bms_alarms_beside_predicted_ones(superset: RunningSuperset) -> None:
    fleet = superset.fleet
    days = sorted({r["dt"] for r in fleet.daily} | {r["as_of"] for r in fleet.predictions})
    expected = [{"dt": epoch_ms(day),
                 "in BMS alarm": sum(r["alarm"] for r in fleet.daily if r["dt"] == day),
                 "predicted to alarm within 14 days": len({r["vin"] for r in fleet.predictions
                                                           if r["as_of"] == day and r["alarm"] and r["source"] == "batch"})}
                for day in days]
    assert superset.chart_data("Alarms and predicted alarms per day") == expected
    assert [row["in BMS alarm"] for row in expected] == [0, 0, 1, 1, 1, 0]


def test_cell_range_trend_is_the_daily_p95_at_rest_and_under_load(superset: RunningSuperset) -> None:
    expected = []
    for day in sorted({r["dt"] for r in superset.fleet.daily}):
        rows = [r for r in superset.fleet.daily if r["dt"] == day]
        rest = [r["cell_range_rest_p95_mv"] for r in rows]
        load = [r["cell_range_load_p95_mv"] for r in rows]
        expected.append({"dt": epoch_ms(day), "worst vehicle at rest": max(rest), "worst vehicle under load": max(load),
                         "fleet mean at rest": mean(rest), "fleet mean under load": mean(load)})
    assert superset.chart_data("Cell voltage range trend (daily p95 at rest and under load)") == expected
    charts = superset.client.get("/api/v1/dashboard/cellguard-fleet/charts").json()["result"]
    params = next(c for c in charts if c["slice_name"].startswith("Cell voltage range"))["form_data"]
    assert [(a["annotationType"], a["value"]) for a in params["annotation_layers"]] == [("FORMULA", "300")]


def test_model_versions_count_predictions_per_day_and_version(superset: RunningSuperset) -> None:
    counts: dict[tuple[date, str], int] = {}
    for row in superset.fleet.predictions:
        counts[row["as_of"], row["model_version"]] = counts.get((row["as_of"], row["model_version"]), 0) + 1
    assert superset.chart_data("Model versions over time") == [
        {"as_of": epoch_ms(day), "model_version": version, "count": n} for (day, version), n in sorted(counts.items())]


def test_alerts_list_the_alarm_episodes_newest_first(superset: RunningSuperset) -> None:
    def stamp(moment: datetime | None) -> float | None:
        return None if moment is None else moment.timestamp() * 1000

    expected = sorted(superset.fleet.alerts, key=lambda a: (-epoch_ms(a["first_as_of"]), a["vin"]))
    rows = superset.chart_data("Alerts: alarm episodes")
    assert rows == [{**a, "first_as_of": epoch_ms(a["first_as_of"]), "created_at": stamp(a["created_at"]),
                     "notified_at": stamp(a["notified_at"])} for a in expected]
    assert [r["channel"] for r in rows] == [None, "webhook"]


def test_a_rebuilt_catalog_is_read_at_once_and_no_handle_is_kept(superset: RunningSuperset) -> None:
    as_of = date(2026, 3, 7)
    rows = batch_rows(as_of, 5, "v3-full")
    predictions_zone.write_batch(superset.lake, as_of, "v3-full", pa.Table.from_pylist(rows, PREDICTION_SCHEMA))
    superset.fleet.predictions.extend(rows)
    build_catalog(superset.lake, superset.home / "catalog.duckdb")  # a new file renamed over the one Superset read

    versions = superset.chart_data("Model versions over time")
    assert versions[-1] == {"as_of": epoch_ms(as_of), "model_version": "v3-full", "count": len(VINS)}
    risk = superset.chart_data("Fleet risk: vehicles by latest probability")
    assert {r["vin"]: r["model_version"] for r in risk} == dict.fromkeys(VINS, "v3-full")

    # After answering, no Superset process holds the catalog open (neither the current file nor a replaced one).
    pids = launch.session_members(int((superset.home / "run" / "superset.pid").read_text()))
    assert len(pids) >= 2  # gunicorn and its worker
    open_files = []
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                open_files.append(os.readlink(fd))
            except OSError:
                continue
    assert not [f for f in open_files if "catalog.duckdb" in f]


def test_starting_again_keeps_the_password_and_reimports(superset: RunningSuperset) -> None:
    port = int(superset.base_url.rsplit(":", 1)[1])
    password = (superset.home / "superset" / "admin-password").read_text().strip()
    again = run_launcher("start", superset.home, port)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "migrating" not in again.stdout and password not in again.stdout
    assert (superset.home / "superset" / "admin-password").read_text().strip() == password
    superset.client.close()
    superset.client = launch.login(superset.base_url, password)
    assert len(superset.client.get("/api/v1/chart/").json()["result"]) == 5  # overwritten, not duplicated
    assert len(superset.chart_data("Fleet risk: vehicles by latest probability")) == len(VINS)


def offline_import(superset: RunningSuperset, archive: Path, username: str = launch.ADMIN) -> subprocess.CompletedProcess:
    """docker/superset_import.py in Superset's virtualenv, against this Superset's metadata database."""
    paths = launch.SupersetPaths(home=superset.home / "superset", run_dir=superset.home / "run")
    return subprocess.run([str(launch.VENV / "bin" / "python"), str(REPO / "docker" / "superset_import.py"),
                           str(archive), username], env=launch.superset_env(paths), capture_output=True, text=True,
                          timeout=300)


def test_the_team_servers_offline_import_replaces_charts_not_only_dashboards(superset: RunningSuperset,
                                                                            tmp_path: Path) -> None:
    """docker/superset-init.sh imports with docker/superset_import.py before Superset starts: run it here with a
    chart of the bundle changed, then with the bundle as it is."""
    import shutil

    import yaml

    def zipped(bundle_dir: Path) -> Path:
        archive = tmp_path / f"{bundle_dir.name}.zip"
        done = subprocess.run([sys.executable, str(REPO / "docker" / "superset_bundle.py"), str(bundle_dir),
                               str(archive), str(superset.home / "catalog.duckdb")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return archive

    def description(name: str) -> str | None:
        charts = superset.client.get("/api/v1/chart/", params={"q": "(page_size:100)"}).json()["result"]
        chart_id = next(c["id"] for c in charts if c["slice_name"] == name)
        return superset.client.get(f"/api/v1/chart/{chart_id}").json()["result"]["description"]

    changed = tmp_path / "changed"
    shutil.copytree(launch.BUNDLE_DIR, changed)
    chart_file = changed / "charts" / "Alerts.yaml"
    chart = yaml.safe_load(chart_file.read_text())
    original = chart.get("description")
    chart["description"] = "changed by a newer bundle"
    chart_file.write_text(yaml.safe_dump(chart, sort_keys=False))

    done = offline_import(superset, zipped(changed))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replacing earlier imports" in done.stdout
    assert description(chart["slice_name"]) == "changed by a newer bundle"
    assert len(superset.client.get("/api/v1/chart/").json()["result"]) == 5  # replaced, not added

    restored = offline_import(superset, zipped(launch.BUNDLE_DIR))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert description(chart["slice_name"]) == original


def test_the_offline_import_refuses_an_unknown_user(superset: RunningSuperset, tmp_path: Path) -> None:
    done = offline_import(superset, tmp_path / "unused.zip", username="nobody")
    assert done.returncode == 1 and "no Superset user 'nobody'" in done.stderr
