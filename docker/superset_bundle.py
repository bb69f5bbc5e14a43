"""Zip superset/bundle/ for `superset import-dashboards`, pointing its DuckDB databases at this container's catalog.

The bundle in the repository names the catalog where a developer's machine keeps it; in the team server the
catalog is $CELLGUARD_CATALOG_PATH on the shared volume. Only the path of a `duckdb:` URI changes: its query
(read-only access and the like) is kept. Runs inside the Superset image: standard library and PyYAML only.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import yaml

ROOT_FOLDER = "cellguard_bundle"  # Superset's importer expects every file below one top folder


def duckdb_uri_for(uri: str, catalog_path: str) -> str:
    """The same duckdb: URI with the catalog path swapped in; any other URI unchanged."""
    if not uri.startswith("duckdb:"):
        return uri
    if not catalog_path.startswith("/"):
        raise ValueError(f"the catalog path must be absolute, not {catalog_path!r}")
    query = uri.partition("?")[2]
    return f"duckdb:///{catalog_path}" + (f"?{query}" if query else "")  # duckdb:////abs/path: three, then the path's


def bundle_files(bundle_dir: Path, catalog_path: str) -> dict[str, bytes]:
    """Every file of the bundle by its name in the zip, database files rewritten for the catalog path."""
    if not (bundle_dir / "metadata.yaml").is_file():
        raise ValueError(f"{bundle_dir} is not a Superset bundle: it has no metadata.yaml")
    files = {}
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(bundle_dir).as_posix()
        content = path.read_bytes()
        if relative.startswith("databases/") and path.suffix in (".yaml", ".yml"):
            database = yaml.safe_load(content)
            database["sqlalchemy_uri"] = duckdb_uri_for(database.get("sqlalchemy_uri", ""), catalog_path)
            content = yaml.safe_dump(database, sort_keys=False, allow_unicode=True).encode()
        files[f"{ROOT_FOLDER}/{relative}"] = content
    return files


def write_bundle_zip(bundle_dir: Path, zip_path: Path, catalog_path: str) -> list[str]:
    """Write the import zip; returns the names inside it."""
    files = bundle_files(bundle_dir, catalog_path)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, content in files.items():
            bundle.writestr(name, content)
    return list(files)


def main(argv: list[str]) -> int:
    """superset_bundle.py BUNDLE_DIR ZIP_PATH CATALOG_PATH"""
    if len(argv) != 3:
        print("usage: superset_bundle.py BUNDLE_DIR ZIP_PATH CATALOG_PATH", file=sys.stderr)
        return 2
    bundle_dir, zip_path, catalog_path = Path(argv[0]), Path(argv[1]), argv[2]
    try:
        names = write_bundle_zip(bundle_dir, zip_path, catalog_path)
    except (ValueError, OSError, yaml.YAMLError) as error:
        print(f"superset_bundle: {error}", file=sys.stderr)
        return 2
    print(f"superset_bundle: {len(names)} files from {bundle_dir} in {zip_path}, catalog {catalog_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
