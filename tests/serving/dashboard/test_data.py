"""pipelines/serving/dashboard/data.py: the views put together, on an empty lake and on a broken champion pointer."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.serving.api_schemas import ApiError
from pipelines.serving.dashboard.data import DashboardData
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.training import registry

from .builders import DRIFTING, write_daily, write_predictions


@pytest.fixture
def store(tmp_path: Path):
    store = EventStore(f"sqlite:///{tmp_path / 'events.sqlite'}")
    yield store
    store.close()


def test_an_empty_lake_gives_empty_views_not_errors(tmp_path: Path, store: EventStore) -> None:
    data = DashboardData(Lake((tmp_path / "lake").as_uri()), lambda: store)
    fleet = data.fleet("full", None, "probability", True, "", "all", 1, 50)
    assert (fleet["as_of"], fleet["rows"], fleet["matching"], fleet["feature_sets"], fleet["as_of_dates"]) == (
        None, [], 0, [], [])
    assert data.timeline("full", 90)["dates"] == [] and data.models() == {"models": [], "problems": []}
    with pytest.raises(ApiError) as refused:
        data.vehicle(DRIFTING, "full", 60)
    assert refused.value.status == 404 and refused.value.problems[0]["msg"] == f"no predictions and no daily rows for {DRIFTING}"


def test_a_champion_pointer_to_a_missing_version_is_reported_not_raised(tmp_path: Path, store: EventStore) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    write_daily(lake)
    write_predictions(lake, store)
    lake.write_bytes(registry.champion_key("full"), registry.json_bytes({"feature_set": "full",
                                                                         "version": "20260101t000000z-full-deadbeef"}))
    models = DashboardData(lake, lambda: store).models()
    assert models["models"] == []
    assert models["problems"][0]["feature_set"] == "full"
    assert "model version 20260101t000000z-full-deadbeef is not registered" in models["problems"][0]["problem"]
