"""Shared serving fixtures: windows and real model archives, trained once per session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

# pytest puts tests/ on sys.path (its folders are packages, it is not), so the training tests' builders are `training.`
from training.builders import synthetic_windows

from .registry_builders import train_archive, with_full_columns


@pytest.fixture(scope="session")
def windows() -> pd.DataFrame:
    """Labelled signals6 windows (about 10% of values missing)."""
    frame = synthetic_windows(vehicles=10, days=60)
    return frame[frame["label"].notna()].reset_index(drop=True)


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory, windows: pd.DataFrame) -> dict[str, bytes]:
    """model.tar.gz bytes: two signals6 models (seeds 1, 2), one trained with missing as -1, one `full`."""
    root: Path = tmp_path_factory.mktemp("archives")
    return {
        "signals6": train_archive(root / "a", windows, seed=1),
        "signals6_b": train_archive(root / "b", windows, seed=2),
        "signals6_minus1": train_archive(root / "c", windows, seed=1, missing_as="-1"),
        "full": train_archive(root / "d", with_full_columns(windows), feature_set="full", seed=1),
    }
