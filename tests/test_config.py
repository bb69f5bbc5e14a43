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


def test_aws_settings_defaults(tmp_path, isolate_settings):
    isolate_settings(tmp_path)
    settings = load_settings()
    assert (settings.aws_region, settings.aws_endpoint_url, settings.s3_endpoint_url) == (None, None, None)
    assert (settings.glue_database, settings.athena_workgroup, settings.dynamodb_table_prefix) == (
        "cellguard", "primary", "cellguard-")
    assert settings.athena_output is None  # a folder lake has no S3 location to default to


def test_aws_settings_overrides(tmp_path, isolate_settings, monkeypatch):
    isolate_settings(tmp_path, lake_uri="s3://fleet-lake/cellguard/")
    monkeypatch.setenv("CELLGUARD_AWS_REGION", "eu-central-1")
    monkeypatch.setenv("CELLGUARD_AWS_ENDPOINT_URL", "http://127.0.0.1:5000/")
    monkeypatch.setenv("CELLGUARD_GLUE_DATABASE", "fleet_eu")
    monkeypatch.setenv("CELLGUARD_ATHENA_WORKGROUP", "analysts-v3")
    monkeypatch.setenv("CELLGUARD_DYNAMODB_TABLE_PREFIX", "fleet-eu.")
    settings = load_settings()
    assert (settings.aws_region, settings.aws_endpoint_url, settings.glue_database, settings.athena_workgroup,
            settings.dynamodb_table_prefix) == ("eu-central-1", "http://127.0.0.1:5000", "fleet_eu", "analysts-v3", "fleet-eu.")
    assert settings.athena_output == "s3://fleet-lake/cellguard/_athena/"
    assert settings.s3_endpoint_url == "http://127.0.0.1:5000"  # S3 follows the generic endpoint ...
    monkeypatch.setenv("CELLGUARD_S3_ENDPOINT_URL", "https://minio.internal:9000")
    monkeypatch.setenv("CELLGUARD_ATHENA_OUTPUT", "s3://athena-results/cellguard")
    settings = load_settings()
    assert settings.s3_endpoint_url == "https://minio.internal:9000"  # ... unless S3 has its own
    assert settings.aws_endpoint_url == "http://127.0.0.1:5000"
    assert settings.athena_output == "s3://athena-results/cellguard/"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CELLGUARD_AWS_ENDPOINT_URL", "127.0.0.1:5000", "CELLGUARD_AWS_ENDPOINT_URL must be an http:// or https:// URL"),
    ("CELLGUARD_S3_ENDPOINT_URL", "http://minio/bucket", "CELLGUARD_S3_ENDPOINT_URL must be an http:// or https:// URL"),
    ("CELLGUARD_AWS_REGION", "Ireland", "CELLGUARD_AWS_REGION must be an AWS region name such as eu-west-1, not 'Ireland'"),
    ("CELLGUARD_GLUE_DATABASE", "Fleet-DB", "CELLGUARD_GLUE_DATABASE must be 1-255 lowercase letters, digits or _"),
    ("CELLGUARD_ATHENA_WORKGROUP", "my workgroup", "CELLGUARD_ATHENA_WORKGROUP must be 1-128 of"),
    ("CELLGUARD_ATHENA_OUTPUT", "/tmp/results", "CELLGUARD_ATHENA_OUTPUT must be an s3://bucket/prefix/ location"),
    ("CELLGUARD_DYNAMODB_TABLE_PREFIX", "cell guard", "CELLGUARD_DYNAMODB_TABLE_PREFIX must be at most 200 of"),
])
def test_aws_setting_errors_name_the_setting_and_value(tmp_path, isolate_settings, monkeypatch, name, value, message):
    isolate_settings(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message) as error:
        load_settings()
    assert repr(value) in str(error.value)


def test_api_access_log_is_off_unless_asked_for(tmp_path, isolate_settings, monkeypatch):
    isolate_settings(tmp_path)
    assert load_settings().api_access_log is False
    monkeypatch.setenv("CELLGUARD_API_ACCESS_LOG", "1")
    assert load_settings().api_access_log is True
