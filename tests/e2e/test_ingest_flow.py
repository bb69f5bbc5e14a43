"""End to end: simulate a small fleet, run bms_ingest through Airflow's dag.test(), check frames, manifest and counts."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from pipelines.ingest.manifest import load_manifest
from pipelines.simulate import SimulationParams, simulate_fleet
from pipelines.storage.lake import Lake

from .airflow_events import asset_event_extra

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory):
    """A migrated SQLite metadata database for this test session (what `make demo` does with `airflow db migrate`)."""
    result = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def fleet_lake(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CELLGUARD_HOME", str(home))
    monkeypatch.setenv("CELLGUARD_DATA_DOCS", "1")
    lake = Lake((home / "lake").as_uri())
    params = SimulationParams(vehicles=4, days=2, start_date=dt.date(2026, 1, 1), interval_s=30, seed=7,
                              fault_fraction=0.5, file_format="mixed")
    summary = simulate_fleet(params, lake)
    # One upload the platform mangled: it must be quarantined whole while the rest goes through.
    lake.write_bytes("landing/simulator/2026-01-02/BROKEN_2026-01-02.csv.gz", b"\x1f\x8b\x08\x00truncated")
    return lake, summary, home


def _run_bms_ingest():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "bms_ingest.py"))
    assert bag.import_errors == {}
    return bag.dags["bms_ingest"].test()


def test_bms_ingest_dag_test_ingests_the_simulated_fleet(airflow_db, fleet_lake):
    lake, simulated, home = fleet_lake
    run = _run_bms_ingest()
    assert run.state == "success"

    manifest = load_manifest(lake)
    landing = [i.key for i in lake.list("landing")]
    assert sorted(manifest) == sorted(landing), "every landing object has a manifest record"
    broken = manifest["landing/simulator/2026-01-02/BROKEN_2026-01-02.csv.gz"]
    assert broken.status == "rejected" and "gzip" in broken.error
    assert lake.exists(f"quarantine/files/{broken.source_id}/BROKEN_2026-01-02.csv.gz")

    for entry in manifest.values():
        assert entry.reconciles(), entry
    rows_in = sum(e.rows_in for e in manifest.values())
    accepted = sum(e.accepted for e in manifest.values())
    duplicates = sum(e.duplicates for e in manifest.values())
    assert rows_in == simulated.frames + simulated.duplicates_written
    assert duplicates >= simulated.duplicates_written

    frames = ds.dataset(lake.path("frames"), format="parquet", partitioning="hive").to_table()
    assert frames.num_rows == accepted
    assert frames.group_by(["vin", "ts"]).aggregate([]).num_rows == frames.num_rows, "no duplicate (vin, ts)"
    assert set(frames["vin"].to_pylist()) == {e.key.split("/")[-1][:17] for e in manifest.values() if e.accepted}
    partition_dates = {str(d) for d in frames["dt"].to_pylist()}
    frame_dates = {t.strftime("%Y-%m-%d") for t in frames["ts"].to_pylist()}
    assert partition_dates == frame_dates, "each frame sits in the partition of its UTC date"

    assert (home / "lake" / "reports" / "data_docs" / "index.html").exists()
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from frames").fetchone()[0] == accepted
        assert con.execute("select sum(rows_in) - sum(accepted) - sum(quarantined) - sum(duplicates) from manifest").fetchone()[0] == 0


def test_bms_ingest_announces_touched_dates_and_is_a_no_op_when_run_again(airflow_db, fleet_lake):
    lake, _, _ = fleet_lake
    run = _run_bms_ingest()
    extra = asset_event_extra("frames", run.run_id)
    assert set(extra["dates"]) >= {"2026-01-01", "2026-01-02"}
    assert extra["rows_in"] == extra["accepted"] + extra["quarantined"] + extra["duplicates"]

    # Nothing is pending any more, so the sensor would wait; running the ingest task's code again changes nothing.
    from pipelines.ingest import ingest_pending, pending_landing_keys

    before = {i.key: (i.size, i.mtime_ns) for i in lake.list("frames")}
    assert pending_landing_keys(lake) == []
    again = ingest_pending(lake=lake)
    assert (again.objects, again.rows_in) == (0, 0)
    assert {i.key: (i.size, i.mtime_ns) for i in lake.list("frames")} == before
