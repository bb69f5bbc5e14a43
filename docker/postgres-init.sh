#!/usr/bin/env bash
# Runs once, when the postgres volume is first initialised: the event store's own role and database beside
# Airflow's (POSTGRES_USER owns the airflow database).
set -euo pipefail
psql --variable=ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=password="$EVENT_STORE_DB_PASSWORD" <<'SQL'
create role cellguard login password :'password';
create database cellguard owner cellguard;
SQL
