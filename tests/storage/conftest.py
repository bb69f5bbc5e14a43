"""Storage fixtures: settings pointing into tmp_path and a temporary lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.storage.lake import Lake


@pytest.fixture(autouse=True)
def cellguard_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every setting points into tmp_path; Data Docs off."""
    home = tmp_path / "home"
    monkeypatch.setenv("CELLGUARD_HOME", str(home))
    monkeypatch.setenv("CELLGUARD_DATA_DOCS", "0")
    for name in ("CELLGUARD_LAKE_URI", "CELLGUARD_CATALOG_PATH", "CELLGUARD_MAPPINGS_DIR", "CELLGUARD_BACKEND",
                 "CELLGUARD_MAX_CLOCK_SKEW_HOURS", "CELLGUARD_EARLIEST_TS", "CELLGUARD_INGEST_MAX_OBJECTS"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def lake(cellguard_env: Path) -> Lake:
    """The lake the default settings name: $CELLGUARD_HOME/lake."""
    return Lake((cellguard_env / "lake").as_uri())
