"""Airflow's metadata database for dag.test(): made ready, and what a DAG run announced in it (asset events)."""

from __future__ import annotations

import subprocess
import sys


def migrate_airflow_db() -> None:
    """`airflow db migrate` for the AIRFLOW_HOME this test runs with (idempotent), failing with its error."""
    migrated = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                              timeout=600)
    assert migrated.returncode == 0, migrated.stderr[-2000:]


def asset_event_extra(asset_name: str, run_id: str) -> dict:
    """The extra of the one event a run emitted for an asset."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                 .filter(AssetModel.name == asset_name, AssetEvent.source_run_id == run_id).one())
        return dict(event.extra)
