"""Read docker-compose.yaml, its .env example, Dockerfiles and .dockerignore the way Docker Compose and BuildKit do."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

REPO = Path(__file__).resolve().parents[2]

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+other}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>\S?)")


@dataclass(frozen=True)
class Reference:
    """One ${…} in the compose file: the variable, its operator (`:-`, `:?`, … or empty) and the operator's text."""

    name: str
    op: str
    arg: str


def references(text: str) -> Iterator[Reference]:
    """Every variable reference in a string (`$$` is not one)."""
    for match in _VARIABLE.finditer(text):
        if match["name"]:
            yield Reference(match["name"], match["op"] or "", match["arg"] or "")
        elif match.group(0) != "$$":
            raise ValueError(f"{text!r}: write variables as ${{NAME}} (and a literal $ as $$), not {match.group(0)!r}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one string; a required variable unset or empty raises with its message."""

    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if name is None:
            raise ValueError(f"{text!r}: write variables as ${{NAME}} (and a literal $ as $$), not {match.group(0)!r}")
        present, current = name in env, env.get(name, "")
        if op in (":?", "?") and (not present or (op == ":?" and not current)):
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op == ":-":
            return current or arg
        if op == "-":
            return current if present else arg
        if op == ":+":
            return arg if current else ""
        return current

    return _VARIABLE.sub(value, text)


def interpolate_tree(node: object, env: dict[str, str]) -> object:
    """Interpolate every string value of a loaded YAML tree (keys stay as written)."""
    if isinstance(node, dict):
        return {key: interpolate_tree(item, env) for key, item in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    return interpolate(node, env) if isinstance(node, str) else node


def strings_of(node: object) -> Iterator[str]:
    """Every string value in a YAML tree."""
    if isinstance(node, dict):
        for item in node.values():
            yield from strings_of(item)
    elif isinstance(node, list):
        for item in node:
            yield from strings_of(item)
    elif isinstance(node, str):
        yield node


def load_yaml(path: Path) -> dict:
    """A YAML file with anchors and merge keys resolved, as Compose loads it."""
    return yaml.safe_load(path.read_text())


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose .env file (comments and blank lines skipped), in order."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise ValueError(f"{path.name} line {number}: expected NAME=value, got {line!r}")
        values[key] = value
    return values


def environment_of(service: dict) -> dict[str, str]:
    """A service's environment as a mapping (the list form `NAME=value` too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: dict) -> list[tuple[str, int]]:
    """(host port, container port) of each `ports` entry, short or long syntax."""
    result = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result.append((str(entry.get("published", "")), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].rsplit(":", 2)
        host = parts[-2] if len(parts) >= 2 else ""
        result.append((host, int(parts[-1])))
    return result


def command_words(value: object) -> list[str]:
    """A command, entrypoint or healthcheck test as words (the string form split like a shell)."""
    if value is None:
        return []
    return [str(word) for word in value] if isinstance(value, list) else shlex.split(str(value))


@dataclass
class Dockerfile:
    """What a Dockerfile takes from its build context and declares: COPY sources, image paths, ENV, FROM, ENTRYPOINT, CMD."""

    path: Path
    context: Path
    bases: list[str] = field(default_factory=list)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources in the context, absolute destination)
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    def image_files(self) -> dict[str, Path]:
        """Every file the image gets from the context: its path in the image -> its path in the repository."""
        files = {}
        for sources, destination in self.copies:
            into_folder = destination.endswith("/") or len(sources) > 1
            for source in sources:
                local = self.context / source
                if local.is_dir():
                    for path in sorted(p for p in local.rglob("*") if p.is_file()):
                        files[str(PurePosixPath(destination) / path.relative_to(local).as_posix())] = path
                else:
                    target = PurePosixPath(destination) / local.name if into_folder else PurePosixPath(destination)
                    files[str(target)] = local
        return files


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile instruction, continuation lines joined, comments dropped."""
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        instruction, _, arguments = logical.strip().partition(" ")
        yield instruction.upper(), arguments.strip()
        logical = ""


def _exec_form(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def read_dockerfile(path: Path, context: Path) -> Dockerfile:
    """Parse the instructions a test needs; `COPY --from` (another stage) takes nothing from the context."""
    dockerfile = Dockerfile(path=path, context=context)
    workdir = PurePosixPath("/")
    for instruction, arguments in _instructions(path.read_text()):
        if instruction == "FROM":
            dockerfile.bases.append(arguments.split()[0])
        elif instruction == "WORKDIR":
            workdir = workdir / arguments
        elif instruction in ("COPY", "ADD"):
            words = _exec_form(arguments)
            flags = [w for w in words if w.startswith("--")]
            if any(flag.startswith("--from") for flag in flags):
                continue
            *sources, destination = [w for w in words if not w.startswith("--")]
            absolute = str(workdir / destination) + ("/" if destination.endswith("/") else "")
            dockerfile.copies.append((sources, absolute))
        elif instruction == "ENV":
            dockerfile.env.update(dict(word.partition("=")[::2] for word in shlex.split(arguments)))
        elif instruction == "ENTRYPOINT":
            dockerfile.entrypoint = _exec_form(arguments)
        elif instruction == "CMD":
            dockerfile.cmd = _exec_form(arguments)
    return dockerfile


def _dockerignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as a regex over context-relative paths (Go's filepath.Match, plus `**`)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(dockerignore: Path, relative_path: str) -> bool:
    """Whether .dockerignore keeps this path out of the build context: a rule matching the path or a folder above
    it applies, and the last rule that applies wins (`!` lets a path back in)."""
    parts = PurePosixPath(relative_path).parts
    candidates = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    excluded = False
    for line in dockerignore.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        regex = _dockerignore_regex(line.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not line.startswith("!")
    return excluded
