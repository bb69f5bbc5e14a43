"""`make superset`: Superset on loopback, in its own virtualenv, reading the CellGuard catalog, the bundle imported.

    python superset/launch.py start    venv, SECRET_KEY, metadata DB, admin, roles, start, import (each step idempotent)
    python superset/launch.py stop     stop it (`make superset-down`)
    python superset/launch.py bundle --out FILE    the bundle as a ZIP with this machine's catalog URI filled in

Superset's pins clash with Airflow's, so it gets `.venv-superset` (from superset/requirements.txt, with uv) and this
script, run by the project's own Python, drives it through its CLI and REST API. Everything Superset keeps lives in
$CELLGUARD_HOME/superset: metadata DB, SECRET_KEY and the admin password (both generated once, mode 600). The
server runs in its own session with its pid in $CELLGUARD_HOME/run/superset.pid, like `make serve`'s servers.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import yaml

from pipelines.config import Settings, load_settings
from pipelines.storage.catalog import refresh_local_catalog

REPO = Path(__file__).resolve().parents[1]
SUPERSET_DIR = REPO / "superset"
BUNDLE_DIR = SUPERSET_DIR / "bundle"
REQUIREMENTS = SUPERSET_DIR / "requirements.txt"
VENV = REPO / ".venv-superset"
ADMIN = "admin"
DATABASE_FILE = "databases/CellGuard.yaml"
DASHBOARD_SLUG = "cellguard-fleet"
START_SECONDS = 180.0  # loading Superset takes ~20 s alone; much longer while other work shares the 2 cores
STOP_SECONDS = 20.0


@dataclass(frozen=True)
class SupersetPaths:
    """Where this Superset keeps its state, its logs and its pid."""

    home: Path  # $CELLGUARD_HOME/superset
    run_dir: Path  # $CELLGUARD_HOME/run

    @property
    def secret_key(self) -> Path:
        return self.home / "secret_key"

    @property
    def admin_password(self) -> Path:
        return self.home / "admin-password"

    @property
    def metadata_db(self) -> Path:
        return self.home / "superset.db"

    @property
    def provisioned(self) -> Path:
        return self.home / "provisioned"

    @property
    def setup_log(self) -> Path:
        return self.home / "setup.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "superset.pid"

    @property
    def server_log(self) -> Path:
        return self.run_dir / "superset.log"

    @classmethod
    def from_settings(cls, settings: Settings) -> SupersetPaths:
        """The folders CELLGUARD_HOME implies."""
        return cls(home=settings.home / "superset", run_dir=settings.home / "run")


def superset_port() -> int:
    """CELLGUARD_SUPERSET_PORT (default 8088)."""
    return load_settings().superset_port


# ---------------------------------------------------------------------------------------------- the bundle


def catalog_uri(settings: Settings) -> str:
    """The SQLAlchemy URI of the catalog Superset reads: the local DuckDB file read-only, or Athena on AWS."""
    if settings.backend == "aws":
        return athena_uri(settings)
    path = str(settings.catalog_path)
    if "?" in path:  # SQLAlchemy 1.4 ends the database path at the first '?' and does not unquote it
        raise ValueError(f"CELLGUARD_CATALOG_PATH {path!r} contains '?', which a database URI cannot carry")
    # Read-only: DuckDB allows one writer per file, and the DAGs replace the file (rename) rather than write it.
    return f"duckdb:///{path}?access_mode=read_only"


def athena_uri(settings: Settings) -> str:
    """PyAthena's URI for the Glue database; no credentials in it (PyAthena uses the standard AWS chain)."""
    region = settings.aws_region
    if region is None:
        import boto3

        region = boto3.Session().region_name
    if not region:
        raise ValueError("CELLGUARD_BACKEND=aws needs a region for Athena: set CELLGUARD_AWS_REGION (or AWS_REGION)")
    if not settings.athena_output:
        raise ValueError("CELLGUARD_BACKEND=aws needs CELLGUARD_ATHENA_OUTPUT (s3://bucket/prefix/) for Athena's "
                         "query results when the lake is not on S3")
    query = {"s3_staging_dir": settings.athena_output, "work_group": settings.athena_workgroup}
    if settings.aws_endpoint_url:
        query["endpoint_url"] = settings.aws_endpoint_url
    return f"awsathena+rest://@athena.{region}.amazonaws.com:443/{settings.glue_database}?{urlencode(query)}"


# What Superset's importer requires of each kind of file (its ImportV1*Schema), checked here so that a broken
# bundle is named file by file: Superset's assets API answers any invalid bundle with a bare 500.
REQUIRED_FIELDS = {
    "databases": ("database_name", "sqlalchemy_uri", "uuid", "version"),
    "datasets": ("table_name", "uuid", "version", "database_uuid"),
    "charts": ("slice_name", "viz_type", "uuid", "version", "dataset_uuid"),
    "dashboards": ("dashboard_title", "uuid", "version"),
}


def bundle_problems(bundle_dir: Path = BUNDLE_DIR) -> list[str]:
    """Why Superset would refuse the bundle: unreadable files, missing fields, references to nothing."""
    problems: list[str] = []
    docs: dict[str, dict] = {}
    for path in sorted(bundle_dir.rglob("*.yaml")):
        name = path.relative_to(bundle_dir).as_posix()
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            problems.append(f"{name}: not YAML ({error})")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{name}: holds {type(doc).__name__}, not a mapping")
            continue
        docs[name] = doc
    if docs.get("metadata.yaml", {}).get("type") != "assets":
        problems.append("metadata.yaml: missing, or its type is not 'assets'")
    if DATABASE_FILE not in docs:
        problems.append(f"{DATABASE_FILE}: missing (the catalog database)")
    uuids: dict[str, dict[str, str]] = {kind: {} for kind in REQUIRED_FIELDS}  # kind -> uuid -> file
    for name, doc in docs.items():
        kind = name.split("/")[0]
        if kind not in REQUIRED_FIELDS:
            continue
        problems += [f"{name}: {field} is missing" for field in REQUIRED_FIELDS[kind] if doc.get(field) in (None, "")]
        uuid = doc.get("uuid")
        if uuid in uuids[kind]:
            problems.append(f"{name}: uuid {uuid} is {uuids[kind][uuid]}'s already")
        elif uuid:
            uuids[kind][uuid] = name
        if kind == "charts" and doc.get("query_context") is not None:
            try:
                json.loads(doc["query_context"])
            except (TypeError, ValueError):
                problems.append(f"{name}: query_context is not JSON")
    references = [("datasets", "database_uuid", "databases"), ("charts", "dataset_uuid", "datasets")]
    for kind, field, target in references:
        for name in (n for n in docs if n.startswith(f"{kind}/")):
            wanted = docs[name].get(field)
            if wanted and wanted not in uuids[target]:
                problems.append(f"{name}: {field} {wanted} is no file in {target}/")
    for name in (n for n in docs if n.startswith("dashboards/")):
        for item in (docs[name].get("position") or {}).values():
            chart = item.get("meta", {}).get("uuid") if isinstance(item, dict) and item.get("type") == "CHART" else None
            if chart and chart not in uuids["charts"]:
                problems.append(f"{name}: position places chart {chart}, which is no file in charts/")
    return problems


def bundle_zip(database_uri: str, bundle_dir: Path = BUNDLE_DIR) -> bytes:
    """The bundle's YAML as the ZIP Superset imports, with the catalog database pointed at database_uri."""
    problems = bundle_problems(bundle_dir)
    if problems:
        raise ValueError(f"{bundle_dir} cannot be imported:\n  " + "\n  ".join(problems))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(bundle_dir.rglob("*.yaml")):
            name = path.relative_to(bundle_dir).as_posix()
            text = path.read_text()
            if name == DATABASE_FILE:
                database = yaml.safe_load(text)
                database["sqlalchemy_uri"] = database_uri
                text = yaml.safe_dump(database, sort_keys=False)
            archive.writestr(f"cellguard/{name}", text)  # Superset expects one top-level folder
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- setup steps


def _write_secret(path: Path, value: str) -> None:
    """Create a file only its owner can read; an existing file is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")


def requirements_digest() -> str:
    """What the virtualenv and the provisioning were made from."""
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_venv() -> Path:
    """.venv-superset holding exactly superset/requirements.txt, synced only when that file changed."""
    marker = VENV / ".installed"
    digest = requirements_digest()
    if marker.is_file() and marker.read_text().strip() == digest:
        return VENV
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        raise FileNotFoundError(f"{uv} is missing: run `make setup` first (it installs uv into .venv)")
    print(f"installing Superset into {VENV.name} from {REQUIREMENTS.relative_to(REPO)} ...", flush=True)
    if not (VENV / "bin" / "python").is_file():
        # The project's own interpreter (3.11): uv must not look for, or download, another one.
        subprocess.run([str(uv), "venv", "--quiet", "--no-python-downloads", "--python", sys.executable, str(VENV)],
                       check=True)
    subprocess.run([str(uv), "pip", "sync", "--quiet", "--python", str(VENV / "bin" / "python"), str(REQUIREMENTS)],
                   check=True)
    marker.write_text(digest + "\n")
    return VENV


def superset_env(paths: SupersetPaths) -> dict[str, str]:
    """The environment Superset's commands and server run with."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the project's import paths are not Superset's
    env.update(SUPERSET_HOME=str(paths.home), SUPERSET_CONFIG_PATH=str(SUPERSET_DIR / "superset_config.py"),
               PYTHONUNBUFFERED="1")
    return env


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def run_superset(paths: SupersetPaths, *args: str, extra_env: dict[str, str] | None = None) -> str:
    """One `superset …` command, its output appended to setup.log and returned; a failure shows the output's end."""
    env = superset_env(paths) | (extra_env or {})
    done = subprocess.run([str(VENV / "bin" / "superset"), *args], env=env, cwd=paths.home, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    with paths.setup_log.open("a") as log:
        log.write(f"\n$ superset {' '.join(args)}\n{output}")
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise RuntimeError(f"`superset {' '.join(args)}` failed (exit {done.returncode}; all of it in "
                           f"{paths.setup_log}):\n{tail}")
    return output


def ensure_admin(paths: SupersetPaths, fresh: bool) -> str | None:
    """The admin user with the password kept in admin-password (generated once); returns it only when new."""
    if paths.admin_password.is_file() and not fresh:
        return None
    new = not paths.admin_password.is_file()
    password = secrets.token_urlsafe(18) if new else paths.admin_password.read_text().strip()
    # Through the environment (click's FLASK_* variables), never on a command line that `ps` shows.
    secret_env = {"FLASK_FAB_CREATE_ADMIN_PASSWORD": password, "FLASK_FAB_RESET_PASSWORD_PASSWORD": password}
    created = run_superset(paths, "fab", "create-admin", "--username", ADMIN, "--firstname", "CellGuard",
                           "--lastname", "Admin", "--email", "admin@cellguard.invalid", extra_env=secret_env)
    if "already exists" in created:  # create-admin leaves an existing user as it is (and exits 0)
        run_superset(paths, "fab", "reset-password", "--username", ADMIN, extra_env=secret_env)
    if new:
        _write_secret(paths.admin_password, password)
    return password if new else None


def provision(paths: SupersetPaths) -> str | None:
    """SECRET_KEY, metadata DB, admin and roles; returns the admin password when it was just generated."""
    paths.home.mkdir(parents=True, exist_ok=True)
    if not paths.secret_key.is_file():
        _write_secret(paths.secret_key, secrets.token_urlsafe(48))
    digest = requirements_digest()
    # Migrations and permissions change only with Superset's version: skipped while the stamp matches.
    fresh = not (paths.metadata_db.is_file() and paths.provisioned.is_file()
                 and paths.provisioned.read_text().strip() == digest)
    if fresh:
        print("migrating Superset's metadata database ...", flush=True)
        run_superset(paths, "db", "upgrade")
    password = ensure_admin(paths, fresh)
    if fresh:
        print("creating Superset's roles and permissions ...", flush=True)
        run_superset(paths, "init")
        paths.provisioned.write_text(digest + "\n")
    return password


# ---------------------------------------------------------------------------------------------- server


def session_members(session_id: int) -> list[int]:
    """Live processes of a session (zombies waiting for their parent left out): gunicorn and its workers."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rpartition(")")[2].split()  # state, ppid, pgrp, session, ...
        except OSError:  # it ended while we looked
            continue
        if fields and fields[0] != "Z" and int(fields[3]) == session_id:
            members.append(int(stat_file.parent.name))
    return members


def _signal_session(session_id: int, signum: int) -> None:
    for pid in session_members(session_id):
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signum)


def stop(paths: SupersetPaths) -> bool:
    """Stop the server's session: TERM, up to 20 s to finish requests, then KILL. False if it was not running."""
    if not paths.pid_file.is_file():
        return False
    text = paths.pid_file.read_text().strip()
    paths.pid_file.unlink()
    if not text.isdigit() or not session_members(int(text)):
        return False
    session_id = int(text)
    _signal_session(session_id, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while session_members(session_id) and time.monotonic() < deadline:
        time.sleep(0.25)
    if session_members(session_id):
        _signal_session(session_id, signal.SIGKILL)
        print(f"  superset did not stop within {STOP_SECONDS:.0f} s: killed")
    return True


def start(paths: SupersetPaths, port: int) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:port in a session of its own (pid file = session id), returned once /health answers."""
    stop(paths)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    command = [str(VENV / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
               "--worker-class", "gthread", "--threads", "8", "--timeout", "120", "--graceful-timeout", "15",
               "--limit-request-line", "0", "--limit-request-field_size", "0", "superset.app:create_app()"]
    with paths.server_log.open("w") as log:
        server = subprocess.Popen(command, env=superset_env(paths), cwd=paths.home, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    paths.pid_file.write_text(f"{server.pid}\n")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", server, paths)
    except (RuntimeError, TimeoutError):
        stop(paths)  # leave nothing half-started behind
        raise
    return server


def wait_until_healthy(url: str, server: subprocess.Popen, paths: SupersetPaths) -> None:
    """Return once url answers 200; fail at once if the server exits, or after START_SECONDS."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"Superset exited with {server.returncode} while starting; end of "
                               f"{paths.server_log}:\n{_tail(paths.server_log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {START_SECONDS:.0f} s; end of {paths.server_log}:\n"
                               f"{_tail(paths.server_log)}")
        time.sleep(1)


# ---------------------------------------------------------------------------------------------- REST API


def login(base_url: str, password: str) -> httpx.Client:
    """A client logged in as the admin, sending the bearer token and the CSRF token Superset's POSTs need."""
    client = httpx.Client(base_url=base_url, timeout=120)
    answer = client.post("/api/v1/security/login", json={"username": ADMIN, "password": password,
                                                         "provider": "db", "refresh": False})
    if answer.status_code != 200:
        client.close()
        raise RuntimeError(f"Superset login as {ADMIN!r} failed ({answer.status_code}): {answer.text[:300]}")
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    csrf = client.get("/api/v1/security/csrf_token/")
    csrf.raise_for_status()
    client.headers.update({"X-CSRFToken": csrf.json()["result"], "Referer": base_url})
    return client


def import_bundle(client: httpx.Client, archive: bytes) -> None:
    """Import every asset of the bundle, overwriting what an earlier import made (Superset's assets API)."""
    answer = client.post("/api/v1/assets/import/", files={"bundle": ("cellguard.zip", archive, "application/zip")},
                         data={"passwords": "{}"})
    if answer.status_code != 200:
        raise RuntimeError(f"importing the bundle failed ({answer.status_code}): {_reason(answer)}")


def _reason(answer: httpx.Response) -> str:
    """Superset's JSON error as it is, or the title of its HTML error page."""
    try:
        return json.dumps(answer.json())[:2000]
    except ValueError:
        title = re.search(r"<title>(.*?)</title>", answer.text, re.DOTALL)
        return title.group(1).strip() if title else answer.text[:300]


def dashboard_url(client: httpx.Client, base_url: str) -> str:
    """Where the imported dashboard opens."""
    answer = client.get(f"/api/v1/dashboard/{DASHBOARD_SLUG}")
    answer.raise_for_status()
    return f"{base_url}{answer.json()['result']['url']}"


# ---------------------------------------------------------------------------------------------- commands


def start_command(settings: Settings) -> None:
    """Everything `make superset` does, then what to open and how to log in."""
    paths = SupersetPaths.from_settings(settings)
    port = superset_port()
    uri = catalog_uri(settings)
    if settings.backend == "local" and not settings.catalog_path.is_file():
        refresh_local_catalog()  # views over whatever the lake holds, so that the connection opens
        print(f"no catalog at {settings.catalog_path} yet: built one over the lake (charts stay empty or fail "
              "until the DAGs have written daily rows and predictions)")
    ensure_venv()
    new_password = provision(paths)
    if new_password:
        print(f"Superset admin password (shown once; kept in {paths.admin_password}, mode 600): {new_password}")
    server = start(paths, port)
    base_url = f"http://127.0.0.1:{port}"
    client = login(base_url, paths.admin_password.read_text().strip())
    try:
        import_bundle(client, bundle_zip(uri))
        url = dashboard_url(client, base_url)
    except RuntimeError as error:
        raise RuntimeError(f"{error}\nend of {paths.server_log}:\n{_tail(paths.server_log)}") from None
    finally:
        client.close()
    print(f"Superset on {base_url} (pid {server.pid}, log {paths.server_log}); `make superset-down` stops it")
    print(f"  dashboard: {url}")
    print(f"  catalog:   {uri}")
    print(f"  login:     {ADMIN}, password in {paths.admin_password}")


def main(argv: list[str] | None = None) -> int:
    """Run one command; a problem the user can fix is one line on stderr and exit status 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="create the venv if needed, provision, start Superset, import the bundle")
    commands.add_parser("stop", help="stop the Superset server")
    bundle = commands.add_parser("bundle", help="write the bundle ZIP with this machine's catalog URI")
    bundle.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "start":
            start_command(settings)
        elif args.command == "stop":
            print("stopped superset" if stop(SupersetPaths.from_settings(settings)) else "superset was not running")
        else:
            args.out.write_bytes(bundle_zip(catalog_uri(settings)))
            print(f"wrote {args.out} (catalog {catalog_uri(settings)})")
    except (ValueError, RuntimeError, TimeoutError, FileNotFoundError, subprocess.CalledProcessError,
            httpx.HTTPError) as error:
        print(f"superset: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
