"""superset/launch.py without Superset: the catalog URI for each backend, the import ZIP, settings, stopping."""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from pipelines.config import load_settings

from .launcher import BUNDLE_DIR, load_launch

launch = load_launch()


@pytest.fixture
def local_settings(tmp_path: Path, isolate_settings):
    isolate_settings(tmp_path / "home")
    return load_settings()


def test_bundle_zip_points_the_database_at_this_machines_catalog(local_settings) -> None:
    uri = launch.catalog_uri(local_settings)
    assert uri == f"duckdb:///{local_settings.home}/catalog.duckdb?access_mode=read_only"
    archive = zipfile.ZipFile(io.BytesIO(launch.bundle_zip(uri)))
    names = sorted(archive.namelist())
    assert names == sorted(f"cellguard/{p.relative_to(BUNDLE_DIR).as_posix()}" for p in BUNDLE_DIR.rglob("*.yaml"))
    database = yaml.safe_load(archive.read("cellguard/databases/CellGuard.yaml"))
    assert database["sqlalchemy_uri"] == uri
    assert database["uuid"] == yaml.safe_load((BUNDLE_DIR / "databases" / "CellGuard.yaml").read_text())["uuid"]
    chart = "cellguard/charts/Fleet_risk.yaml"
    assert archive.read(chart).decode() == (BUNDLE_DIR / "charts" / "Fleet_risk.yaml").read_text()


def test_a_catalog_path_with_a_question_mark_is_refused(local_settings, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("CELLGUARD_CATALOG_PATH", str(tmp_path / "what?.duckdb"))
    with pytest.raises(ValueError, match=r"CELLGUARD_CATALOG_PATH .*what\?\.duckdb.* contains '\?'"):
        launch.catalog_uri(load_settings())


def test_athena_uri_comes_from_the_aws_settings_without_credentials(local_settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLGUARD_BACKEND", "aws")
    monkeypatch.setenv("CELLGUARD_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("CELLGUARD_LAKE_URI", "s3://fleet-lake/cellguard")
    monkeypatch.setenv("CELLGUARD_GLUE_DATABASE", "cellguard_prod")
    monkeypatch.setenv("CELLGUARD_ATHENA_WORKGROUP", "analysts")
    assert launch.catalog_uri(load_settings()) == (
        "awsathena+rest://@athena.eu-west-1.amazonaws.com:443/cellguard_prod?"
        "s3_staging_dir=s3%3A%2F%2Ffleet-lake%2Fcellguard%2F_athena%2F&work_group=analysts")
    monkeypatch.setenv("CELLGUARD_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    assert launch.catalog_uri(load_settings()).endswith("&endpoint_url=http%3A%2F%2F127.0.0.1%3A5000")


def test_athena_without_a_region_says_which_setting_to_set(local_settings, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "CELLGUARD_AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("CELLGUARD_BACKEND", "aws")
    monkeypatch.setenv("CELLGUARD_LAKE_URI", "s3://fleet-lake/cellguard")
    with pytest.raises(ValueError, match="set CELLGUARD_AWS_REGION"):
        launch.catalog_uri(load_settings())


@pytest.mark.parametrize("port", ["0", "65536", "http", "80a"])
def test_a_bad_port_names_the_setting(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("CELLGUARD_SUPERSET_PORT", port)
    with pytest.raises(ValueError, match=f"CELLGUARD_SUPERSET_PORT must be a port number .* not '{port}'"):
        launch.superset_port()


def test_port_defaults_to_8088(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELLGUARD_SUPERSET_PORT", raising=False)
    assert launch.superset_port() == 8088


def test_secrets_are_written_once_for_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "superset" / "secret_key"
    launch._write_secret(path, "first")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        launch._write_secret(path, "second")
    assert path.read_text() == "first\n"


def test_stop_ends_the_whole_session_and_forgets_the_pid(tmp_path: Path) -> None:
    paths = launch.SupersetPaths(home=tmp_path / "superset", run_dir=tmp_path / "run")
    paths.run_dir.mkdir()
    # A stand-in server with a child of its own, in its own session, as start() makes gunicorn and its worker.
    server = subprocess.Popen(["bash", "-c", "sleep 60 & wait"], start_new_session=True)
    paths.pid_file.write_text(f"{server.pid}\n")
    deadline = time.monotonic() + 10
    while len(launch.session_members(server.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # until bash has started its child, as gunicorn has its worker long before a stop
    assert len(launch.session_members(server.pid)) == 2
    started = time.monotonic()
    assert launch.stop(paths) is True
    server.wait(timeout=5)
    assert time.monotonic() - started < launch.STOP_SECONDS
    assert not paths.pid_file.exists()
    assert launch.session_members(server.pid) == []
    assert launch.stop(paths) is False


def test_stop_ignores_a_pid_file_of_a_process_long_gone(tmp_path: Path) -> None:
    paths = launch.SupersetPaths(home=tmp_path / "superset", run_dir=tmp_path / "run")
    paths.run_dir.mkdir()
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    paths.pid_file.write_text(f"{gone.pid}\n")
    assert launch.stop(paths) is False
    assert not paths.pid_file.exists()


def test_bundle_command_writes_the_zip_for_this_machine(local_settings, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cellguard-superset.zip"
    assert launch.main(["bundle", "--out", str(out)]) == 0
    database = yaml.safe_load(zipfile.ZipFile(out).read("cellguard/databases/CellGuard.yaml"))
    assert database["sqlalchemy_uri"] == launch.catalog_uri(local_settings)
    assert str(out) in capsys.readouterr().out


def test_a_bad_setting_is_one_line_and_exit_status_1(local_settings, monkeypatch: pytest.MonkeyPatch,
                                                     capsys) -> None:
    monkeypatch.setenv("CELLGUARD_SUPERSET_PORT", "eighty")
    assert launch.main(["start"]) == 1
    assert capsys.readouterr().err == (
        "superset: CELLGUARD_SUPERSET_PORT must be a port number between 1 and 65535, not 'eighty'\n")
    assert not (local_settings.home / "superset").exists()  # failed before touching anything


def test_the_repository_bundle_has_no_problem() -> None:
    assert launch.bundle_problems() == []


def test_a_broken_bundle_is_refused_file_by_file(tmp_path: Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(BUNDLE_DIR, broken)

    def edit(name: str, change) -> None:
        path = broken / name
        doc = yaml.safe_load(path.read_text())
        change(doc)
        path.write_text(yaml.safe_dump(doc))

    edit("charts/Alerts.yaml", lambda d: d.pop("slice_name"))
    edit("charts/Fleet_risk.yaml", lambda d: d.update(query_context="{not json"))
    edit("datasets/CellGuard/daily.yaml", lambda d: d.update(database_uuid="00000000-0000-4000-8000-000000000000"))
    edit("datasets/CellGuard/alerts.yaml", lambda d: d.update(uuid="63fef808-df65-5d52-a1cd-d86cc488fd99"))
    (broken / "charts" / "Model_versions.yaml").unlink()
    with pytest.raises(ValueError) as refused:
        launch.bundle_zip("duckdb:///x.duckdb", broken)
    assert str(refused.value).splitlines() == [
        f"{broken} cannot be imported:",
        "  charts/Alerts.yaml: slice_name is missing",
        "  charts/Fleet_risk.yaml: query_context is not JSON",
        "  datasets/CellGuard/daily.yaml: uuid 63fef808-df65-5d52-a1cd-d86cc488fd99 is "
        "datasets/CellGuard/alerts.yaml's already",
        "  datasets/CellGuard/daily.yaml: database_uuid 00000000-0000-4000-8000-000000000000 is no file in databases/",
        "  charts/Alerts.yaml: dataset_uuid 2d998600-ee66-5703-b183-0366d7a2162e is no file in datasets/",
        "  dashboards/CellGuard_fleet.yaml: position places chart 758a8477-24ef-5ac1-b43f-250f74313812, which is "
        "no file in charts/",
    ]
