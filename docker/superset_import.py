"""Import a Superset bundle zip into the metadata database, overwriting every asset an earlier import made.

What Superset's `POST /api/v1/assets/import/` does (ImportAssetsCommand: databases, datasets, charts and
dashboards all replaced), without a running server, so the one-shot init container can run it before Superset
starts. `superset import-dashboards` would not do: it overwrites dashboards only and keeps the charts, datasets
and database of the first import, so a changed bundle would never reach an existing team server.

    python superset_import.py BUNDLE_ZIP USERNAME      (SUPERSET_CONFIG_PATH and SUPERSET_HOME as for `superset`)
"""

from __future__ import annotations

import sys
import zipfile


def import_bundle(zip_path: str, username: str) -> int:
    """Import every asset of the zip as `username` (its owner); the number of files imported."""
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.extensions import security_manager
        from superset.utils.core import override_user

        user = security_manager.find_user(username=username)
        if user is None:
            raise SystemExit(f"no Superset user {username!r}: create the admin first (superset fab create-admin)")
        with zipfile.ZipFile(zip_path) as bundle:
            contents = get_contents_from_bundle(bundle)
        with override_user(user):
            ImportAssetsCommand(contents).run()
        return len(contents)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    count = import_bundle(*argv)
    print(f"imported {count} files of {argv[0]} into Superset, replacing earlier imports")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
