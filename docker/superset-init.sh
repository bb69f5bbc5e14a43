#!/usr/bin/env bash
# One-shot before Superset starts (idempotent): its secret key file, metadata database, admin user and roles,
# then the CellGuard bundle (database, datasets, charts, dashboards), re-imported over what is there.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
# superset_config.py reads the key from this file; .env stays the one place it is set.
umask 077
printf '%s\n' "$SUPERSET_SECRET_KEY" > "$SUPERSET_HOME/secret_key"
umask 022
superset db upgrade
# Prints that the user exists and succeeds when it is there.
superset fab create-admin --username "$SUPERSET_ADMIN_USERNAME" --password "$SUPERSET_ADMIN_PASSWORD" \
  --email "$SUPERSET_ADMIN_EMAIL" --firstname CellGuard --lastname Admin
superset init
bundle_zip=$(mktemp --suffix=.zip)
python "$here/superset_bundle.py" /app/bundle "$bundle_zip" "$CELLGUARD_CATALOG_PATH"
superset import-dashboards --path "$bundle_zip" --username "$SUPERSET_ADMIN_USERNAME"
rm -f "$bundle_zip"
