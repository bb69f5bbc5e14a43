"""Give DuckDB the S3 credentials of an `s3://` lake on MinIO, as a persistent secret in this container's home.

The catalog's views, the feature queries and Superset read `s3://…` lake paths with DuckDB, which takes S3
settings from its secrets, not from AWS_* variables: every DuckDB connection needs an S3 secret. A persistent
secret (~/.duckdb/stored_secrets) is loaded by every connection this user opens, so the code needs no change.
The container already holds these keys in its environment; the file lives in the container's own filesystem and
goes with it.

Runs at each container start (docker/entrypoint.sh), in the CellGuard and the Superset images alike, so it
reads the environment directly and imports nothing from the cellguard package.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

SECRET_NAME = "cellguard_lake"


def _quoted(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def lake_secret_sql(lake_uri: str, endpoint_url: str, key_id: str, secret: str, region: str) -> str | None:
    """CREATE PERSISTENT SECRET for the lake's bucket on an S3-compatible endpoint; None when there is nothing to do."""
    lake = urlparse(lake_uri)
    if lake.scheme != "s3" or not endpoint_url:
        return None  # a folder lake, or AWS's own S3 (a task role or the standard chain serves that)
    endpoint = urlparse(endpoint_url)
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
        raise ValueError(f"CELLGUARD_S3_ENDPOINT_URL must be an http:// or https:// URL such as http://minio:9000, "
                         f"not {endpoint_url!r}")
    missing = [name for name, value in (("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret)) if not value]
    if missing:
        raise ValueError(f"the lake {lake_uri} is on {endpoint_url}: set {' and '.join(missing)}")
    options = {
        "TYPE": "s3",
        "KEY_ID": _quoted(key_id),
        "SECRET": _quoted(secret),
        "REGION": _quoted(region or "us-east-1"),
        "ENDPOINT": _quoted(endpoint.netloc),
        "URL_STYLE": _quoted("path"),  # MinIO serves buckets as paths, not as virtual hosts
        "USE_SSL": "true" if endpoint.scheme == "https" else "false",
        "SCOPE": _quoted(f"s3://{lake.netloc}"),
    }
    body = ", ".join(f"{key} {value}" for key, value in options.items())
    return f"CREATE OR REPLACE PERSISTENT SECRET {SECRET_NAME} ({body})"


def main() -> int:
    """Create the secret the environment describes, or do nothing for a lake that needs none."""
    environ = os.environ
    try:
        sql = lake_secret_sql(environ.get("CELLGUARD_LAKE_URI", ""), environ.get("CELLGUARD_S3_ENDPOINT_URL", ""),
                              environ.get("AWS_ACCESS_KEY_ID", ""), environ.get("AWS_SECRET_ACCESS_KEY", ""),
                              environ.get("AWS_REGION", "") or environ.get("AWS_DEFAULT_REGION", ""))
    except ValueError as error:
        print(f"duckdb_lake_secret: {error}", file=sys.stderr)
        return 2
    if sql is None:
        return 0
    import duckdb  # only when needed: the check above runs without it

    duckdb.execute(sql)  # needs httpfs, which the images install at build time
    print(f"duckdb_lake_secret: DuckDB reads {environ['CELLGUARD_LAKE_URI']} through "
          f"{environ['CELLGUARD_S3_ENDPOINT_URL']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
