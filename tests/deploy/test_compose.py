"""docker-compose.yaml: valid against the Compose Specification, and every file, port and variable it names is real.

No Docker engine runs here, so nothing is started: the checks are those `docker compose config` and a first
`docker compose up` would fail on, plus the ones they would not (a variable no program reads, a port nothing
listens on, a COPY source that .dockerignore keeps out).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet

from pipelines.config import SETTINGS_DOC, load_settings

from .compose_files import (
    REPO,
    Dockerfile,
    command_words,
    dockerignore_excludes,
    environment_of,
    interpolate,
    interpolate_tree,
    load_yaml,
    published_ports,
    read_dockerfile,
    read_env_file,
    references,
    strings_of,
)

COMPOSE_FILE = REPO / "docker-compose.yaml"
SCHEMA_FILE = Path(__file__).parent / "compose_spec" / "compose-spec.json"
ENV_EXAMPLE = REPO / "docker" / "team-server.env.example"
GENERATE_ENV = REPO / "docker" / "generate-env.sh"
DOCKERIGNORE = REPO / ".dockerignore"

# Variables that are neither CellGuard nor Airflow settings, and the program that reads each. Any other name must
# be read by a script the service runs (its command, its image's entry point, a mounted init script).
THIRD_PARTY_VARIABLES = {
    "AWS_ACCESS_KEY_ID": "AWS SDKs, pyarrow's S3 filesystem (the lake), docker/duckdb_lake_secret.py",
    "AWS_SECRET_ACCESS_KEY": "AWS SDKs, pyarrow's S3 filesystem (the lake), docker/duckdb_lake_secret.py",
    "AWS_REGION": "AWS SDKs, pyarrow's S3 filesystem",
    "AWS_DEFAULT_REGION": "boto3",
    "PGPASSWORD": "libpq (psycopg), the event store's password",
    "POSTGRES_USER": "the postgres image",
    "POSTGRES_DB": "the postgres image",
    "POSTGRES_PASSWORD": "the postgres image",
    "MINIO_ROOT_USER": "the minio image",
    "MINIO_ROOT_PASSWORD": "the minio image",
    "PYTHONPATH": "Python",
    "PYTHONDONTWRITEBYTECODE": "Python",
    "PYTHONUNBUFFERED": "Python",
    "GX_ANALYTICS_ENABLED": "Great Expectations",
    "AIRFLOW_HOME": "Airflow",
    "SUPERSET_CONFIG_PATH": "Superset",
    "SUPERSET_HOME": "superset/superset_config.py",
}

# The Python package each SQLAlchemy driver in a connection URL needs in the image.
DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg", "asyncpg": "asyncpg"}
URL = re.compile(r"\b(?P<scheme>https?|postgresql(?:\+(?P<driver>\w+))?)://(?:[^@/\s]*@)?(?P<host>[\w.-]+)(?::(?P<port>\d+))?")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET")


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def generated_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """.env as docker/generate-env.sh writes it from the example."""
    path = tmp_path_factory.mktemp("team-server") / ".env"
    subprocess.run(["bash", str(GENERATE_ENV), str(path)], check=True, capture_output=True, text=True, timeout=30)
    return path, read_env_file(path)


@pytest.fixture(scope="module")
def compose(raw_compose: dict, generated_env: tuple[Path, dict[str, str]]) -> dict:
    """The compose file as `docker compose` sees it with a generated .env."""
    return interpolate_tree(raw_compose, generated_env[1])


@pytest.fixture(scope="module")
def dockerfiles(compose: dict) -> dict[str, Dockerfile]:
    """Each built service's Dockerfile, parsed."""
    parsed = {}
    for name, service in compose["services"].items():
        if "build" in service:
            context = REPO / service["build"]["context"]
            parsed[name] = read_dockerfile(context / service["build"].get("dockerfile", "Dockerfile"), context)
    return parsed


def _bind_mounts(service: dict) -> dict[str, Path]:
    """Bind mounts of a service: path in the container -> path in the repository."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = REPO / volume["source"]
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = REPO / source
    return mounts


def _service_scripts(service: dict, dockerfile: Dockerfile | None) -> list[Path]:
    """The repository files a service runs: scripts named by its command or entry point, and mounted files."""
    in_container = {**(dockerfile.image_files() if dockerfile else {}), **_bind_mounts(service)}
    words = command_words(service.get("command")) + command_words(service.get("entrypoint"))
    if dockerfile:
        words += dockerfile.entrypoint + dockerfile.cmd
    scripts = [in_container[word] for word in words if word in in_container]
    return scripts + list(_bind_mounts(service).values())


def _listening_ports(service: dict, dockerfile: Dockerfile | None) -> set[int]:
    """Ports the service's own command, healthcheck or *_PORT settings name: what it listens on."""
    words = command_words(service.get("command")) or (dockerfile.cmd if dockerfile else [])
    text = " ".join(words + command_words((service.get("healthcheck") or {}).get("test")))
    ports = {int(port) for port in re.findall(r"(?::|--port[ =])(\d{2,5})\b", text)}
    ports |= {int(value) for key, value in environment_of(service).items() if key.endswith("_PORT") and value.isdigit()}
    return ports


def _airflow_options() -> dict[str, dict[str, dict]]:
    """Airflow's config template (section -> option -> description), read without importing Airflow."""
    package = Path(next(iter(importlib.util.find_spec("airflow").submodule_search_locations)))
    template = yaml.load((package / "config_templates" / "config.yml").read_text(), Loader=yaml.CSafeLoader)
    return {section: body.get("options", {}) for section, body in template.items()}


def _pins(files: list[Path]) -> dict[str, str]:
    """name -> version of every `name==version` line in these requirement files (names normalised)."""
    pins = {}
    for path in files:
        for line in path.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line)
            if match:
                pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


# ----------------------------------------------------------------------------------------- the helpers themselves


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${UNSET:-d} ${EMPTY-d} ${UNSET-d} $${HOSTNAME} ${SET:+y}", env) == \
        "x d d  d ${HOSTNAME} y"
    with pytest.raises(ValueError, match="EMPTY is missing a value: set it"):
        interpolate("${EMPTY:?set it}", env)
    with pytest.raises(ValueError, match=r"write variables as \$\{NAME\}"):
        interpolate("$SET", env)


def test_dockerignore_matching(tmp_path: Path) -> None:
    ignore = tmp_path / ".dockerignore"
    ignore.write_text("# comment\n.env\n**/__pycache__\nvar\ntests\n!tests/keep.txt\n")
    assert dockerignore_excludes(ignore, ".env") and dockerignore_excludes(ignore, "var/lake/x.parquet")
    assert dockerignore_excludes(ignore, "pipelines/ingest/__pycache__/x.pyc")
    assert dockerignore_excludes(ignore, "tests/deploy/test_compose.py")
    assert not dockerignore_excludes(ignore, "tests/keep.txt")
    assert not dockerignore_excludes(ignore, "pipelines/cli.py") and not dockerignore_excludes(ignore, "docker/.env.example")


# --------------------------------------------------------------------------------------------------- the schema


def test_compose_file_matches_the_compose_specification(compose: dict) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_schema_rejects_what_compose_rejects(compose: dict) -> None:
    """The schema is really applied: a misspelt key and a wrong type fail it."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["depends_onn"] = ["postgres"]
    broken["services"]["postgres"]["volumes"] = "postgres-data:/var/lib/postgresql/data"
    messages = sorted(e.message for e in validator.iter_errors(broken))
    assert messages == ["'depends_onn' does not match any of the regexes: '^x-'",
                        "'postgres-data:/var/lib/postgresql/data' is not of type 'array'"]


# ------------------------------------------------------------------------------------- the .env file and secrets


def test_every_variable_is_in_the_env_example_with_the_same_default(raw_compose: dict, env_example: dict) -> None:
    used = {}
    for text in strings_of(raw_compose):
        for ref in references(text):
            used.setdefault(ref.name, set()).add(ref)
    assert sorted(used.keys() - env_example.keys()) == [], "add these to docker/team-server.env.example"
    assert sorted(env_example.keys() - used.keys()) == [], "docker-compose.yaml does not use these"
    for name, refs in used.items():
        defaults = {ref.arg for ref in refs if ref.op in (":-", "-")}
        assert defaults <= {env_example[name]}, f"{name}: compose defaults {defaults} vs the example's {env_example[name]!r}"


def test_secrets_are_required_and_never_committed(raw_compose: dict, env_example: dict) -> None:
    required = {ref.name for text in strings_of(raw_compose) for ref in references(text) if ref.op == ":?"}
    secrets = {name for name in env_example if SECRET_NAME.search(name)}
    assert required == secrets, "every secret, and only secrets, stops `docker compose up` when missing"
    assert {name: value for name, value in env_example.items() if SECRET_NAME.search(name) and value} == {}
    with pytest.raises(ValueError, match="required variable .* is missing a value: set .* in .env"):
        interpolate_tree(raw_compose, env_example)


def test_generate_env_fills_every_secret_with_a_usable_value(generated_env: tuple[Path, dict], env_example: dict,
                                                              isolate_settings, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path, env = generated_env
    assert list(env) == list(env_example) and path.stat().st_mode & 0o777 == 0o600
    for name, value in env_example.items():
        if SECRET_NAME.search(name):
            assert len(env[name]) >= 40 or name == "AIRFLOW_FERNET_KEY", name
        else:
            assert env[name] == value, f"{name} is not a secret: kept as the example has it"
    Fernet(env["AIRFLOW_FERNET_KEY"].encode())  # raises unless 32 bytes of urlsafe base64
    secrets = [env[name] for name in env if SECRET_NAME.search(name)]
    assert len(set(secrets)) == len(secrets), "each secret is drawn anew"
    isolate_settings(tmp_path)
    monkeypatch.setenv("CELLGUARD_API_TOKEN", env["CELLGUARD_API_TOKEN"])
    assert load_settings().api_token.reveal() == env["CELLGUARD_API_TOKEN"]


def test_generate_env_never_overwrites(generated_env: tuple[Path, dict]) -> None:
    path, _ = generated_env
    before = path.read_text()
    result = subprocess.run(["bash", str(GENERATE_ENV), str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "exists" in result.stderr and path.read_text() == before


def test_env_file_stays_out_of_images() -> None:
    assert dockerignore_excludes(DOCKERIGNORE, ".env")


# -------------------------------------------------------------------------------------- files the stack names


def test_build_contexts_dockerfiles_and_mounted_files_exist(compose: dict) -> None:
    missing = []
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = REPO / build["context"]
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            missing += [f"{name}: {p}" for p in (context, dockerfile) if not p.exists()]
        missing += [f"{name}: {p}" for p in _bind_mounts(service).values() if not p.exists()]
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str | dict) else env_files:
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            missing += [f"{name}: {REPO / path}"] if not (REPO / path).exists() else []
    assert missing == []


def test_every_file_the_images_copy_exists_and_reaches_the_build(dockerfiles: dict[str, Dockerfile]) -> None:
    """Superset's files come from superset/ (its own requirements, config and bundle): the images need them all."""
    missing, ignored = set(), set()
    for dockerfile in dockerfiles.values():
        for sources, _ in dockerfile.copies:
            for source in sources:
                relative = (dockerfile.context / source).relative_to(REPO).as_posix()
                if not (dockerfile.context / source).exists():
                    missing.add(relative)
                elif dockerignore_excludes(DOCKERIGNORE, relative):
                    ignored.add(relative)
    assert sorted(missing) == [], "the images COPY these: they must be in the repository"
    assert sorted(ignored) == [], ".dockerignore keeps these out of the build context"


def test_scripts_the_services_run_are_in_their_images_and_parse(compose: dict, dockerfiles: dict) -> None:
    scripts = set()
    for name, service in compose["services"].items():
        dockerfile = dockerfiles.get(name)
        files = {**(dockerfile.image_files() if dockerfile else {}), **_bind_mounts(service)}
        words = command_words(service.get("command")) + command_words(service.get("entrypoint"))
        words += dockerfile.entrypoint if dockerfile else []
        named = [w for w in words if w.startswith("/") and w.endswith((".sh", ".py"))]
        assert [w for w in named if w not in files] == [], f"{name} runs files its container does not have"
        scripts |= {files[w] for w in named} | {p for p in _bind_mounts(service).values() if p.suffix == ".sh"}
    scripts |= set((REPO / "docker").glob("*.sh"))
    for script in sorted(scripts):
        shell = "bash" if "bash" in script.read_text().splitlines()[0] else "sh"
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_named_volumes_are_declared(compose: dict) -> None:
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes") or []
            if isinstance(v, str) and not v.startswith((".", "/"))}
    assert used == set(compose["volumes"])


def test_images_are_pinned(compose: dict, dockerfiles: dict[str, Dockerfile]) -> None:
    pulled = [s["image"] for s in compose["services"].values() if "build" not in s]
    bases = [base for dockerfile in dockerfiles.values() for base in dockerfile.bases]
    assert [image for image in pulled + bases if ":" not in image or image.endswith(":latest")] == []


# ---------------------------------------------------------------------------------------------------- variables


def test_every_variable_is_a_real_setting_or_read_by_someone(compose: dict, dockerfiles: dict) -> None:
    airflow = _airflow_options()
    problems = []
    for name, service in compose["services"].items():
        dockerfile = dockerfiles.get(name)
        env = {**(dockerfile.env if dockerfile else {}), **environment_of(service)}
        script_text = "\n".join(path.read_text() for path in _service_scripts(service, dockerfile))
        for variable, value in env.items():
            if variable.startswith("CELLGUARD_"):
                if variable not in SETTINGS_DOC:
                    problems.append(f"{name}: {variable} is not a setting in pipelines/config.py")
            elif variable.startswith("AIRFLOW__"):
                section, _, option = variable[len("AIRFLOW__"):].lower().partition("__")
                spec = airflow.get(section, {}).get(option)
                if spec is None:
                    problems.append(f"{name}: {variable} is not an option of Airflow's config template")
                elif spec.get("type") == "boolean" and value not in ("True", "False"):
                    problems.append(f"{name}: {variable}={value!r} is a boolean option: True or False")
            elif variable not in THIRD_PARTY_VARIABLES and f"${variable}" not in script_text:
                problems.append(f"{name}: {variable} is read by no script it runs and is no known program's")
    assert problems == []


def test_cellguard_services_load_their_settings(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each container's CELLGUARD_* environment passes pipelines/config.py's own checks."""
    for name, service in compose["services"].items():
        env = environment_of(service)
        if not any(variable.startswith("CELLGUARD_") for variable in env):
            continue
        for variable in SETTINGS_DOC:
            monkeypatch.delenv(variable, raising=False)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        settings = load_settings()
        assert settings.lake_uri.startswith("s3://") and settings.s3_endpoint_url == "http://minio:9000", name
        if "serve-api" in command_words(service.get("command")):
            assert settings.api_token is not None, "the API's token comes from .env, not a new one at each start"


def test_auth_manager_and_database_drivers_are_installed(compose: dict, dockerfiles: dict[str, Dockerfile]) -> None:
    for name, service in compose["services"].items():
        dockerfile = dockerfiles.get(name)
        if dockerfile is None:
            continue
        requirements = [dockerfile.context / s for sources, _ in dockerfile.copies for s in sources
                        if re.fullmatch(r"requirements.*\.txt", Path(s).name)]
        pins = _pins(requirements)
        env = environment_of(service)
        needed = set()
        auth_manager = env.get("AIRFLOW__CORE__AUTH_MANAGER", "")
        if auth_manager.startswith("airflow.providers."):
            needed.add("apache-airflow-providers-" + auth_manager.split(".")[2].replace("_", "-"))
        for value in env.values():
            for match in URL.finditer(value):
                if match["driver"]:
                    needed.add(DRIVER_PACKAGES[match["driver"]])
        if env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").startswith("postgresql"):
            needed.add("asyncpg")  # airflow.settings derives its async engine's URL as postgresql+asyncpg
        assert sorted(needed - pins.keys()) == [], f"{name}: pin these in {[str(r) for r in requirements]}"


def test_server_requirements_never_contradict_requirements_txt() -> None:
    server = _pins([REPO / "docker" / "requirements-server.txt"])
    main = _pins([REPO / "requirements.txt"])
    declared = [re.split(r"[\[<>=~ ]", line)[0].lower() for line in
                (REPO / "docker" / "requirements-server.in").read_text().splitlines() if line and not line.startswith("#")]
    assert sorted(server.keys() & main.keys()) == [], "pinned in both: the two locks could disagree"
    assert [name for name in declared if name not in server and name not in main] == []
    unpinned = [line for line in (REPO / "docker" / "requirements-server.txt").read_text().splitlines()
                if line and not line.startswith("#") and "==" not in line]
    assert unpinned == []


# -------------------------------------------------------------------------------------------------------- ports


def test_host_ports_do_not_collide(compose: dict) -> None:
    host_ports = [host for service in compose["services"].values() for host, _ in published_ports(service)]
    assert host_ports and [port for port, n in Counter(host_ports).items() if n > 1] == []


def test_published_ports_are_the_ones_each_service_listens_on(compose: dict, dockerfiles: dict) -> None:
    wrong = {}
    for name, service in compose["services"].items():
        listening = _listening_ports(service, dockerfiles.get(name))
        for _, container_port in published_ports(service):
            if container_port not in listening:
                wrong[name] = (container_port, sorted(listening))
    assert wrong == {}


def test_urls_between_services_name_a_service_and_its_port(compose: dict, dockerfiles: dict) -> None:
    services = compose["services"]
    wrong = []
    for name, service in services.items():
        for variable, value in environment_of(service).items():
            for match in URL.finditer(value):
                host, port = match["host"], match["port"]
                if host not in services:
                    wrong.append(f"{name}: {variable} names {host}, not a service of this stack")
                elif port and int(port) not in _listening_ports(services[host], dockerfiles.get(host)):
                    wrong.append(f"{name}: {variable} expects {host} on port {port}")
    assert wrong == []


# ------------------------------------------------------------------------------------------------ start order


def test_start_order_conditions_can_be_met(compose: dict) -> None:
    services = compose["services"]
    problems = []
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            condition = rule.get("condition") if isinstance(rule, dict) else "service_started"
            if target not in services:
                problems.append(f"{name} waits for {target}, which is not a service")
            elif condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name} waits for {target} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and services[target].get("restart", "no") != "no":
                problems.append(f"{name} waits for {target} to complete; its restart policy starts it again")
        if service.get("restart", "no") != "no" and "healthcheck" not in service:
            problems.append(f"{name} runs for good without a healthcheck")
    assert problems == []


def test_the_stack_has_every_service_of_the_team_server(compose: dict) -> None:
    commands = {name: " ".join(command_words(s.get("command"))) for name, s in compose["services"].items()}
    for expected in ("airflow api-server", "airflow scheduler", "airflow dag-processor", "airflow triggerer",
                     "cellguard serve-model", "cellguard serve-api"):
        assert any(command.startswith(expected) for command in commands.values()), expected
    images = " ".join(s.get("image", "") for s in compose["services"].values())
    assert "postgres:" in images and "minio/minio:" in images and "minio/mc:" in images
    assert compose["services"]["superset"]["build"]["dockerfile"] == "docker/superset.Dockerfile"
    assert compose["services"]["airflow-init"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"}, "minio-init": {"condition": "service_completed_successfully"}}
