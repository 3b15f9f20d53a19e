#!/usr/bin/env bash
# The benchmark: installs what is missing, then runs full quarterly syncs against the API
# simulator (`benches/sync/`) and prints the figures of each scenario. Pass scenario names
# to run a few: scripts/bench.sh --scenarios sync-10k-200ms,seed-10k-200ms (see --list).
# Results, plots and worker logs go to target/bench/. A Temporal dev server is started
# when none answers at TEMPORAL_ADDRESS (default 127.0.0.1:7233). The PostgreSQL rows run
# on a throwaway server (Debian's packages) with its durable defaults (fsync on).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-tools.sh
. scripts/postgres.sh
work=$(mktemp -d -t gradesync-bench.XXXXXX)
trap 'stop_postgres; rm -rf "$work"' EXIT
start_postgres "$work" durable
cargo bench --bench sync -- "$@"
