#!/usr/bin/env bash
# The benchmark: installs what is missing, then runs full quarterly syncs against the API
# simulator (`benches/sync/`) and prints the figures of each scenario. Pass scenario names
# to run a few: scripts/bench.sh --scenarios sync-10k-200ms,seed-10k-200ms (see --list).
# Results, plots and worker logs go to target/bench/. A Temporal dev server is started
# when none answers at TEMPORAL_ADDRESS (default 127.0.0.1:7233).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-tools.sh
exec cargo bench --bench sync -- "$@"
