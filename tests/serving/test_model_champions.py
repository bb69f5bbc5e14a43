"""pipelines/serving/model_champions.py and model_loading.py: champions from a real registry in a real lake."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from pipelines.features.window_signals import feature_columns
from pipelines.serving.inference import predict_fn
from pipelines.serving.model_champions import ChampionModels, ChampionWatcher, Swap
from pipelines.serving.model_loading import load_registered
from pipelines.storage.lake import Lake
from pipelines.training import registry
from pipelines.training.train import feature_matrix

from .live_server import wait_until
from .registry_builders import promote


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake((tmp_path / "lake").as_uri())


def test_load_registered_unpacks_and_checks_against_the_card(lake, archives) -> None:
    version = promote(lake, archives["signals6"])
    loaded = load_registered(lake, version)
    assert (loaded.version, loaded.feature_set, loaded.card["version"]) == (version, "signals6", version)
    assert loaded.model.feature_names == tuple(feature_columns("signals6"))


def test_refresh_loads_the_champion_once_then_swaps_when_the_pointer_moves(lake, archives, windows) -> None:
    champions = ChampionModels(lake, ["signals6", "full"])
    assert champions.refresh() == [] and champions.get("signals6") is None
    assert champions.unavailable_reason("signals6") == "no champion for signals6: run bms_training"

    first = promote(lake, archives["signals6"])
    assert champions.refresh() == [Swap("signals6", None, first)]
    in_flight = champions.get("signals6")  # what a request running during the swap holds
    assert champions.refresh() == [] and champions.get("signals6") is in_flight

    second = promote(lake, archives["signals6_b"], minutes=5)
    assert champions.refresh() == [Swap("signals6", first, second)]
    assert champions.get("signals6").version == second and champions.get("full") is None
    # The request that started before the swap still scores with its own model, which stays intact.
    matrix = feature_matrix(windows.iloc[:10], feature_columns("signals6"))
    old, new = predict_fn(matrix, in_flight.model), predict_fn(matrix, champions.get("signals6").model)
    assert in_flight.version == first and not np.array_equal(old, new)


def test_a_champion_that_cannot_load_keeps_the_current_one_and_says_why(lake, archives) -> None:
    first = promote(lake, archives["signals6"])
    champions = ChampionModels(lake, ["signals6"])
    champions.refresh()
    missing = "20260601t130000z-signals6-deadbeef"
    lake.write_bytes(registry.champion_key("signals6"), json.dumps({"version": missing}).encode())
    assert champions.refresh() == [] and champions.get("signals6").version == first

    empty = ChampionModels(lake, ["signals6"])
    empty.refresh()
    reason = empty.unavailable_reason("signals6")
    assert reason.startswith("champion of signals6 could not be loaded: model version " + missing)


def test_watcher_polls_until_stopped(lake, archives) -> None:
    champions = ChampionModels(lake, ["signals6"])
    watcher = ChampionWatcher(champions, interval_s=0.05)
    watcher.start()
    try:
        version = promote(lake, archives["signals6"])
        wait_until(lambda: champions.get("signals6") is not None, "the watcher to load the champion")
        assert champions.get("signals6").version == version
    finally:
        started = time.monotonic()
        watcher.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match="must be more than 0 seconds"):
        ChampionWatcher(champions, interval_s=0)
