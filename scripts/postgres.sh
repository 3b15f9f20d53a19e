#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests and benchmarks: Debian's packages (installed
# when missing), a cluster in a temp dir owned by the `postgres` user (initdb refuses
# root), on a free port of 127.0.0.1, trust auth. Source it, then:
#   start_postgres DIR [durable]   exports GRADESYNC_TEST_POSTGRES_URL (the admin URL);
#                        tests run without fsync, benchmarks pass `durable` to keep it
#   stop_postgres        stops the server; the caller removes DIR
# Each test creates its own database on the server, so tests never share one.

_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

_pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local dir=$1 durable=${2:-} bin port fast=
  if ! bin=$(_pg_bin); then
    echo "postgres.sh: installing PostgreSQL (Debian postgresql)"
    _apt_install postgresql
    bin=$(_pg_bin)
  fi
  mkdir -p "$dir/pg"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir/pg" && chmod 755 "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  _pg_as "$bin/initdb" -D "$dir/pg/data" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 >"$dir/pg/initdb.log" 2>&1 \
    || { cat "$dir/pg/initdb.log"; return 1; }
  [ "$durable" = durable ] || fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  # Sized for a test machine: enough connections for every test binary's pool at once.
  _pg_as "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir/pg \
        -c max_connections=400 -c shared_buffers=256MB $fast" start >/dev/null \
    || { cat "$dir/pg/server.log"; return 1; }
  _PG_DATA="$dir/pg/data"
  _PG_BIN="$bin"
  export GRADESYNC_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "postgres.sh: PostgreSQL $("$bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port"
}

stop_postgres() {
  [ -n "${_PG_DATA:-}" ] || return 0
  _pg_as "$_PG_BIN/pg_ctl" -D "$_PG_DATA" -m immediate stop >/dev/null 2>&1 || true
  _PG_DATA=""
}
