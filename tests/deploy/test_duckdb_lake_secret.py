"""docker/duckdb_lake_secret.py: the S3 secret DuckDB needs to read a lake on MinIO."""

from __future__ import annotations

import duckdb
import pytest

from .docker_scripts import load_docker_script

secret = load_docker_script("duckdb_lake_secret")


def test_minio_lake_gets_a_path_style_secret_without_tls_scoped_to_its_bucket() -> None:
    sql = secret.lake_secret_sql("s3://cellguard/lake", "http://minio:9000", "cellguard-writer", "s3cr'et", "")
    assert sql == ("CREATE OR REPLACE PERSISTENT SECRET cellguard_lake (TYPE s3, KEY_ID 'cellguard-writer', "
                   "SECRET 's3cr''et', REGION 'us-east-1', ENDPOINT 'minio:9000', URL_STYLE 'path', USE_SSL false, "
                   "SCOPE 's3://cellguard')")
    [statement] = duckdb.extract_statements(sql)  # DuckDB's own parser accepts it
    assert statement.type == duckdb.StatementType.CREATE


def test_https_endpoint_keeps_tls_and_the_region() -> None:
    sql = secret.lake_secret_sql("s3://lake", "https://s3.example.org:9443", "k", "s", "eu-west-1")
    assert "ENDPOINT 's3.example.org:9443'" in sql and "USE_SSL true" in sql and "REGION 'eu-west-1'" in sql


@pytest.mark.parametrize("lake_uri, endpoint", [("file:///var/lib/cellguard/lake", "http://minio:9000"),
                                                ("s3://cellguard/lake", "")])
def test_nothing_to_do_for_a_folder_lake_or_aws_s3(lake_uri: str, endpoint: str) -> None:
    assert secret.lake_secret_sql(lake_uri, endpoint, "k", "s", "") is None


def test_bad_endpoint_and_missing_keys_are_named() -> None:
    with pytest.raises(ValueError, match="CELLGUARD_S3_ENDPOINT_URL must be an http:// or https:// URL.*'minio:9000'"):
        secret.lake_secret_sql("s3://cellguard/lake", "minio:9000", "k", "s", "")
    with pytest.raises(ValueError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        secret.lake_secret_sql("s3://cellguard/lake", "http://minio:9000", "", "", "")


def test_main_reports_a_bad_setting_and_skips_a_folder_lake(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CELLGUARD_LAKE_URI", "s3://cellguard/lake")
    monkeypatch.setenv("CELLGUARD_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert secret.main() == 2
    assert "duckdb_lake_secret: the lake s3://cellguard/lake is on http://minio:9000: set AWS_ACCESS_KEY_ID" in \
        capsys.readouterr().err
    monkeypatch.setenv("CELLGUARD_LAKE_URI", "file:///tmp/lake")
    assert secret.main() == 0
