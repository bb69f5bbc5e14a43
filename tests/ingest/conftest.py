"""Ingest fixtures: settings pointing into tmp_path (Data Docs off) and a temporary lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.storage.lake import Lake


@pytest.fixture(autouse=True)
def cellguard_env(tmp_path: Path, isolate_settings) -> Path:
    """Every setting points into tmp_path; Data Docs off unless a test turns them on."""
    return isolate_settings(tmp_path / "home", lake_uri=(tmp_path / "lake").as_uri())


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty local lake under tmp_path (the same one CELLGUARD_LAKE_URI names)."""
    return Lake((tmp_path / "lake").as_uri())
