#!/usr/bin/env bash
# One-shot before Airflow starts: migrate the metadata database (FAB's tables too), create the admin user,
# and write the catalog so the API and Superset find it before the first ingest.
set -euo pipefail
airflow db migrate
# Prints "already exists" and succeeds when the user is there: safe at every `docker compose up`.
airflow users create --role Admin --username "$AIRFLOW_ADMIN_USERNAME" --password "$AIRFLOW_ADMIN_PASSWORD" \
  --email "$AIRFLOW_ADMIN_EMAIL" --firstname CellGuard --lastname Admin
cellguard catalog
