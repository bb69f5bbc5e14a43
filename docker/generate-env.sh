#!/usr/bin/env bash
# Write .env from docker/team-server.env.example with a fresh random value for every empty secret (a name holding
# PASSWORD, SECRET, TOKEN or FERNET_KEY); other values are kept. Refuses to overwrite a file.
# Usage: bash docker/generate-env.sh [OUTPUT]      (default: .env at the repository root)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
example="$root/docker/team-server.env.example"
output=${1:-$root/.env}
if [ -e "$output" ]; then
  echo "generate-env: $output exists; remove it first to start over (its secrets would be lost)" >&2
  exit 1
fi

# Letters and digits only: the values go into connection URLs and shell commands unquoted.
random_text() { LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 40 || true; }
# A Fernet key: 32 random bytes, urlsafe base64.
fernet_key() { head -c 32 /dev/urandom | base64 | tr '+/' '-_'; }

umask 077
while IFS= read -r line || [ -n "$line" ]; do
  name=${line%%=*}
  if [[ $line =~ ^[A-Z0-9_]+=$ ]]; then
    case $name in
      *_FERNET_KEY) line="$name=$(fernet_key)" ;;
      *PASSWORD* | *SECRET* | *TOKEN*) line="$name=$(random_text)" ;;
    esac
  fi
  printf '%s\n' "$line"
done < "$example" > "$output"
echo "generate-env: wrote $output (mode 600); keep it out of version control"
