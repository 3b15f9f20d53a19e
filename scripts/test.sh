#!/usr/bin/env bash
# The test command: installs what is missing, starts one Temporal dev server for the whole
# suite (each test gets its own task queue, store and simulator port), runs the workspace's
# tests with nextest on the embedded SQLite store, then starts a throwaway PostgreSQL
# server (Debian's packages) and runs the store and end-to-end tests again on it, and stops
# both servers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-tools.sh
. scripts/postgres.sh

work=$(mktemp -d -t gradesync-test.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# gradesync's search attributes, as `gradesync setup` registers them (workflows/src/search_attributes.rs).
temporal server start-dev --headless --ip 127.0.0.1 --port "$port" \
  --search-attribute GradesyncQuarter=Keyword --search-attribute GradesyncPhase=Keyword \
  --search-attribute GradesyncVerdict=Keyword --search-attribute GradesyncRecordsSynced=Int \
  --search-attribute GradesyncRecordsOwed=Int \
  --db-filename "$work/temporal.db" --log-level error >"$work/temporal.log" 2>&1 &
server=$!
trap 'stop_postgres; kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 150); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done
export TEMPORAL_ADDRESS="127.0.0.1:$port"
echo "test.sh: Temporal dev server on $TEMPORAL_ADDRESS"

profile=default
[ -n "${CI:-}" ] && profile=ci
# The PostgreSQL-only tests (several workers on one server) wait for the second pass.
cargo nextest run --workspace --profile "$profile" -E 'not test(/^postgres::/)' "$@"

echo "test.sh: the store and end-to-end tests again, on PostgreSQL"
start_postgres "$work"
cargo nextest run --workspace --profile "$profile" \
  -E 'binary(store) | binary(plan) | binary(rate_gate) | (binary(e2e) - test(/^temporal_tls::/))' "$@"
