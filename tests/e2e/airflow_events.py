"""What a DAG run announced: the extra of the asset event it emitted, read from Airflow's metadata database."""

from __future__ import annotations


def asset_event_extra(asset_name: str, run_id: str) -> dict:
    """The extra of the one event a run emitted for an asset."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                 .filter(AssetModel.name == asset_name, AssetEvent.source_run_id == run_id).one())
        return dict(event.extra)
