"""Storage fixtures: settings pointing into tmp_path and a temporary lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.storage.lake import Lake


@pytest.fixture(autouse=True)
def cellguard_env(tmp_path: Path, isolate_settings) -> Path:
    """Every setting points into tmp_path; Data Docs off."""
    return isolate_settings(tmp_path / "home")


@pytest.fixture
def lake(cellguard_env: Path) -> Lake:
    """The lake the default settings name: $CELLGUARD_HOME/lake."""
    return Lake((cellguard_env / "lake").as_uri())
