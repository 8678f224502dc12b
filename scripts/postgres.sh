#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on a free loopback port for the test suite.
# Usage: source scripts/postgres.sh   (exports AIRLOCK_TEST_POSTGRES_URL; stop with pg_stop)
# It leaves `set -euo pipefail` on in the caller: scripts/test relies on pipefail.
# Finds initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin, installing postgresql-15 when absent.
set -euo pipefail

pg_bin() {
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  local d; d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ]; then echo "$d"; return; fi
  echo "postgres: installing postgresql-15 (apt-get)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15) >&2
  ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1
}

PG_BIN=$(pg_bin)
PG_DIR=$(mktemp -d /tmp/airlock-pg.XXXXXX)
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() {
  # initdb refuses to run as root: run the server as the `postgres` user when we are root.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown -R postgres "$PG_DIR"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
chmod 755 "$PG_DIR"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U airlock --auth=trust -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=300 -c fsync=off" start >/dev/null
export AIRLOCK_TEST_POSTGRES_URL="postgres://airlock@127.0.0.1:$PG_PORT/postgres"
export PG_DIR PG_BIN
pg_stop() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
echo "postgres: throwaway server on 127.0.0.1:$PG_PORT ($PG_DIR)" >&2

