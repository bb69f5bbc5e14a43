"""superset/launch.py loaded by path: that folder is not a package (it would shadow Superset's own in its venv)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
LAUNCH_SCRIPT = REPO / "superset" / "launch.py"
BUNDLE_DIR = REPO / "superset" / "bundle"


def load_launch() -> ModuleType:
    """The launcher as a module (registered once, so its dataclasses resolve their module)."""
    name = "cellguard_superset_launch"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LAUNCH_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
