"""Import a Python script of docker/ (not a package: the images run them as files)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from .compose_files import REPO


def load_docker_script(name: str) -> ModuleType:
    """docker/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"docker_{name}", REPO / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
