"""Ingest fixtures: settings pointing into tmp_path (Data Docs off) and a temporary lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.storage.lake import Lake


@pytest.fixture(autouse=True)
def cellguard_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every setting points into tmp_path; Data Docs off unless a test turns them on."""
    home = tmp_path / "home"
    monkeypatch.setenv("CELLGUARD_HOME", str(home))
    monkeypatch.setenv("CELLGUARD_LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("CELLGUARD_DATA_DOCS", "0")
    for name in ("CELLGUARD_CATALOG_PATH", "CELLGUARD_MAPPINGS_DIR", "CELLGUARD_MAX_CLOCK_SKEW_HOURS",
                 "CELLGUARD_EARLIEST_TS", "CELLGUARD_INGEST_MAX_OBJECTS", "CELLGUARD_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty local lake under tmp_path (the same one CELLGUARD_LAKE_URI names)."""
    return Lake((tmp_path / "lake").as_uri())
