"""Real models in a real lake for the serving tests: train.py on synthetic windows, registered and promoted."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.features.window_signals import SIGNALS6, feature_columns
from pipelines.storage.lake import Lake
from pipelines.training import registry
from pipelines.training.train import main as train_main

FAST = ["--num_round", "15", "--max_depth", "3", "--eta", "0.3", "--nthread", "1", "--verbose", "false"]
T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
TEST_WINDOW = {"start": date(2026, 4, 1), "end": date(2026, 4, 30)}


def with_full_columns(windows: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """signals6 windows plus noise for every other `full` feature, so a `full` model can be trained."""
    rng = np.random.default_rng(seed)
    extra = [c for c in feature_columns("full") if not c.startswith(SIGNALS6)]
    noise = pd.DataFrame(rng.standard_normal((len(windows), len(extra))), columns=extra, index=windows.index)
    return pd.concat([windows, noise], axis=1)


def train_archive(folder: Path, windows: pd.DataFrame, feature_set: str = "signals6", seed: int = 0,
                  missing_as: str | None = None) -> bytes:
    """The model.tar.gz `train.py` writes for these windows (a few shallow rounds)."""
    channel = folder / "train"
    channel.mkdir(parents=True)
    windows.to_parquet(channel / "windows.parquet", index=False)
    extra = ["--missing-as", missing_as] if missing_as is not None else []
    train_main(["--train", str(channel), "--model-dir", str(folder / "model"), "--feature-set", feature_set,
                "--seed", str(seed), *extra, *FAST])
    return (folder / "model" / "model.tar.gz").read_bytes()


def promote(lake: Lake, archive: bytes, feature_set: str = "signals6", minutes: int = 0,
            average_precision: float = 0.8) -> str:
    """Register an archive as a new version and record the gate's decision (promoted: AP not lower); its id."""
    at = T0 + timedelta(minutes=minutes)
    version = registry.new_version_id(at, feature_set, hashlib.sha256(archive).hexdigest())
    card = registry.model_card(
        version=version, feature_set=feature_set, feature_names=feature_columns(feature_set),
        training_data={"vehicles": 12}, split={"test_start": TEST_WINDOW["start"]},
        metrics={"average_precision": average_precision}, baseline_metrics=None, threshold=0.5,
        target_precision=0.5, params={"max_depth": 3}, created_at=at)
    registry.register(lake, version, archive, card)
    pointer = registry.champion_pointer(lake, feature_set)
    decision = registry.decide(feature_set, version, average_precision, pointer["version"] if pointer else None,
                               pointer["average_precision"] if pointer else None, 0.02, TEST_WINDOW, at)
    registry.record_decision(lake, decision)
    assert decision.promoted, decision.reason
    return version
