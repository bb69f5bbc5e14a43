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
# The password goes through click's environment variable, never on a command line `ps` shows.
# create-admin prints that the user exists and succeeds when it is there; reset-password keeps it at .env's value.
export FLASK_FAB_CREATE_ADMIN_PASSWORD="$SUPERSET_ADMIN_PASSWORD" FLASK_FAB_RESET_PASSWORD_PASSWORD="$SUPERSET_ADMIN_PASSWORD"
created=$(superset fab create-admin --username "$SUPERSET_ADMIN_USERNAME" \
  --email "$SUPERSET_ADMIN_EMAIL" --firstname CellGuard --lastname Admin)
printf '%s\n' "$created"
if grep -q "already exists" <<<"$created"; then
  superset fab reset-password --username "$SUPERSET_ADMIN_USERNAME"
fi
unset FLASK_FAB_CREATE_ADMIN_PASSWORD FLASK_FAB_RESET_PASSWORD_PASSWORD
superset init
bundle_zip=$(mktemp --suffix=.zip)
python "$here/superset_bundle.py" /app/bundle "$bundle_zip" "$CELLGUARD_CATALOG_PATH"
# Every asset replaced, not only the dashboards (`superset import-dashboards` keeps old charts and datasets).
python "$here/superset_import.py" "$bundle_zip" "$SUPERSET_ADMIN_USERNAME"
rm -f "$bundle_zip"
