"""Settings: defaults, overrides, clear errors, and the README's table kept in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_settings, settings_table_markdown

REPO = Path(__file__).resolve().parents[1]


def test_defaults_derive_from_home(tmp_path, monkeypatch):
    for name in ("CELLGUARD_LAKE_URI", "CELLGUARD_CATALOG_PATH", "CELLGUARD_BACKEND", "CELLGUARD_MAPPINGS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CELLGUARD_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.lake_uri == (tmp_path / "lake").as_uri()
    assert settings.catalog_path == tmp_path / "catalog.duckdb"
    assert (settings.backend, settings.mappings_dir, settings.ingest_max_objects) == ("local", None, 1000)


def test_overrides_are_read_when_loaded_not_at_import(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLGUARD_LAKE_URI", "s3://bucket/prefix")
    monkeypatch.setenv("CELLGUARD_DATA_DOCS", "0")
    monkeypatch.setenv("CELLGUARD_MAX_CLOCK_SKEW_HOURS", "2.5")
    settings = load_settings()
    assert (settings.lake_uri, settings.data_docs, settings.max_clock_skew_hours) == ("s3://bucket/prefix", False, 2.5)


def test_unknown_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CELLGUARD_BACKEND", "azure")
    with pytest.raises(ValueError, match="CELLGUARD_BACKEND must be 'local' or 'aws', not 'azure'"):
        load_settings()


def test_readme_documents_every_setting():
    assert settings_table_markdown() in (REPO / "README.md").read_text()
