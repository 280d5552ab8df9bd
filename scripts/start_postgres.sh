#!/usr/bin/env bash
# A local PostgreSQL server for the history store's tests, idempotently: installs Debian's
# postgresql when missing (needs root), starts its cluster, creates role mmperf and database
# mmperf_test, and prints the URL for MMPERF_TEST_POSTGRES_URL as the LAST line of stdout:
#   export MMPERF_TEST_POSTGRES_URL="$(bash scripts/start_postgres.sh | tail -n 1)"
# Progress goes to stderr. The password is a fixed test one: the server listens on 127.0.0.1 only.
set -euo pipefail
PASSWORD="${MMPERF_PG_PASSWORD:-mmperf-test-only}"
PORT="${MMPERF_PG_PORT:-5432}"

log() { echo "start_postgres: $*" >&2; }

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
fi

major="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
if ! pg_lsclusters -h 2>/dev/null | awk -v v="$major" '$1 == v && $2 == "main"' | grep -q .; then
  log "creating cluster $major/main"
  pg_createcluster "$major" main --port "$PORT" >&2
fi
if ! pg_lsclusters -h | awk -v v="$major" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  log "starting cluster $major/main"
  pg_ctlcluster "$major" main start >&2
fi
port="$(pg_lsclusters -h | awk -v v="$major" '$1 == v && $2 == "main" {print $3}')"

psql_admin() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -qtAX $*"; }

for _ in $(seq 1 30); do
  if su postgres -c "pg_isready -q -h 127.0.0.1 -p $port"; then break; fi
  sleep 1
done

if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname = 'mmperf'\"")" != 1 ]; then
  log "creating role mmperf"
  psql_admin "-c \"CREATE ROLE mmperf LOGIN PASSWORD '$PASSWORD'\"" >&2
else
  psql_admin "-c \"ALTER ROLE mmperf LOGIN PASSWORD '$PASSWORD'\"" >&2
fi
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = 'mmperf_test'\"")" != 1 ]; then
  log "creating database mmperf_test"
  psql_admin "-c \"CREATE DATABASE mmperf_test OWNER mmperf\"" >&2
fi

echo "postgresql+psycopg://mmperf:${PASSWORD}@127.0.0.1:${port}/mmperf_test"
