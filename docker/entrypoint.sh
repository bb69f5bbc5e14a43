#!/usr/bin/env bash
# Entry point of the CellGuard and Superset images: give DuckDB the lake's S3 secret, then run the command.
set -euo pipefail
python "$(dirname "${BASH_SOURCE[0]}")/duckdb_lake_secret.py"
exec "$@"
