#!/usr/bin/env bash
# Pin docker/requirements-server.in against requirements.txt and keep only what requirements.txt does not pin,
# so the image installs both files together and a re-lock of requirements.txt never contradicts this one.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
full=$(mktemp)
trap 'rm -f "$full"' EXIT
"$uv" pip compile --quiet --python-version 3.11 --no-header --no-annotate \
  --constraint requirements.txt docker/requirements-server.in -o "$full"
pinned_in_main=$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/\1/p' requirements.txt | tr 'A-Z_.' 'a-z--')
{
  echo "# Pinned by docker/lock-server-requirements.sh from docker/requirements-server.in, against requirements.txt:"
  echo "# only what requirements.txt does not pin. The image installs both: -r requirements.txt -r this file."
  while IFS= read -r line; do
    name=$(printf '%s' "${line%%==*}" | tr 'A-Z_.' 'a-z--')
    grep -qx "$name" <<<"$pinned_in_main" || printf '%s\n' "$line"
  done < <(grep '==' "$full")
} > docker/requirements-server.txt
echo "wrote docker/requirements-server.txt ($(grep -c '==' docker/requirements-server.txt) pins)"
