"""docker/superset_bundle.py: the import zip of superset/bundle/, pointed at the team server's catalog."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from .compose_files import REPO
from .docker_scripts import load_docker_script

bundle = load_docker_script("superset_bundle")
CATALOG = "/var/lib/cellguard/catalog.duckdb"


def _write_bundle(root: Path, uri: str) -> Path:
    (root / "databases").mkdir(parents=True)
    (root / "datasets" / "CellGuard").mkdir(parents=True)
    (root / "metadata.yaml").write_text("version: 1.0.0\ntype: assets\n")
    (root / "databases" / "CellGuard.yaml").write_text(
        f"# the catalog\ndatabase_name: CellGuard\nsqlalchemy_uri: {uri}\nuuid: f8883dcc-ad44-51ce-880b-1998014f858b\n")
    (root / "datasets" / "CellGuard" / "daily.yaml").write_text("table_name: daily\nsql: null\n")
    return root


@pytest.mark.parametrize("uri, expected", [
    ("duckdb:///var/catalog.duckdb?access_mode=read_only", f"duckdb:///{CATALOG}?access_mode=read_only"),
    ("duckdb:////home/dev/cellguard/var/catalog.duckdb", f"duckdb:///{CATALOG}"),
    ("awsathena+rest://athena.eu-west-1.amazonaws.com/cellguard", "awsathena+rest://athena.eu-west-1.amazonaws.com/cellguard"),
])
def test_duckdb_uris_point_at_the_catalog_and_keep_their_query(uri: str, expected: str) -> None:
    assert bundle.duckdb_uri_for(uri, CATALOG) == expected


def test_zip_has_one_top_folder_and_the_rewritten_database(tmp_path: Path) -> None:
    source = _write_bundle(tmp_path / "bundle", "duckdb:///var/catalog.duckdb?access_mode=read_only")
    names = bundle.write_bundle_zip(source, tmp_path / "bundle.zip", CATALOG)
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        assert sorted(archive.namelist()) == sorted(names) == [
            "cellguard_bundle/databases/CellGuard.yaml", "cellguard_bundle/datasets/CellGuard/daily.yaml",
            "cellguard_bundle/metadata.yaml"]
        database = yaml.safe_load(archive.read("cellguard_bundle/databases/CellGuard.yaml"))
        dataset = archive.read("cellguard_bundle/datasets/CellGuard/daily.yaml")
    assert database == {"database_name": "CellGuard", "uuid": "f8883dcc-ad44-51ce-880b-1998014f858b",
                        "sqlalchemy_uri": "duckdb:////var/lib/cellguard/catalog.duckdb?access_mode=read_only"}
    assert dataset == b"table_name: daily\nsql: null\n"


def test_the_repository_bundle_zips_for_the_container(tmp_path: Path) -> None:
    names = bundle.write_bundle_zip(REPO / "superset" / "bundle", tmp_path / "bundle.zip", CATALOG)
    assert "cellguard_bundle/metadata.yaml" in names and any(n.startswith("cellguard_bundle/databases/") for n in names)
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        databases = [yaml.safe_load(archive.read(n)) for n in names if n.startswith("cellguard_bundle/databases/")]
    assert {d["sqlalchemy_uri"].split("?")[0] for d in databases if d["sqlalchemy_uri"].startswith("duckdb:")} == {
        f"duckdb:///{CATALOG}"}


def test_not_a_bundle_and_a_relative_catalog_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert bundle.main([str(tmp_path), str(tmp_path / "b.zip"), CATALOG]) == 2
    assert f"{tmp_path} is not a Superset bundle: it has no metadata.yaml" in capsys.readouterr().err
    source = _write_bundle(tmp_path / "bundle", "duckdb:///var/catalog.duckdb")
    assert bundle.main([str(source), str(tmp_path / "b.zip"), "var/catalog.duckdb"]) == 2
    assert "the catalog path must be absolute, not 'var/catalog.duckdb'" in capsys.readouterr().err
