"""Superset's configuration for CellGuard: metadata and secrets under $SUPERSET_HOME, never in the repository.

Superset loads this file through SUPERSET_CONFIG_PATH, which superset/launch.py sets together with SUPERSET_HOME
($CELLGUARD_HOME/superset). It runs inside .venv-superset, so it imports nothing from the cellguard package.
"""

from __future__ import annotations

import os
from pathlib import Path

_HOME = os.environ.get("SUPERSET_HOME", "").strip()
if not _HOME:
    raise RuntimeError("SUPERSET_HOME is not set: start Superset with `make superset` (superset/launch.py), "
                       "which points it at $CELLGUARD_HOME/superset")
SUPERSET_HOME = Path(_HOME)
_SECRET_KEY_FILE = SUPERSET_HOME / "secret_key"
if not _SECRET_KEY_FILE.is_file():
    raise RuntimeError(f"{_SECRET_KEY_FILE} does not exist: `make superset` generates it once (mode 600)")

# Signs sessions and encrypts stored database credentials: generated once, kept beside the metadata DB.
SECRET_KEY = _SECRET_KEY_FILE.read_text().strip()
DATA_DIR = str(SUPERSET_HOME)
SQLALCHEMY_DATABASE_URI = f"sqlite:///{SUPERSET_HOME / 'superset.db'}?check_same_thread=false"

# Charts read the catalog on every request: the DAGs rebuild it and its views read the lake as it is now.
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

# One process on loopback: login rate limits can live in memory (no Redis).
RATELIMIT_STORAGE_URI = "memory://"

# Nothing leaves the machine: the page may load only from this server, so no telemetry pixel (Superset's default
# allows scarf.sh), map tiles or web fonts from elsewhere. The dashboard's charts need none of them.
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}

