#!/usr/bin/env bash
# The demo command: installs what is missing to build and run it (protoc, the Temporal CLI;
# nothing of the test tools), builds gradesync, and runs a full quarterly sync on this
# machine (dev server with the Web UI on :8233, SQLite, the API simulator).
# Extra arguments go to `gradesync demo` (e.g. --schools 50 --records-per-school 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/build-tools.sh
cargo build --release --bin gradesync
exec target/release/gradesync demo "$@"
