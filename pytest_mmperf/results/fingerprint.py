"""Which environment keys make two runs comparable, and the fingerprint that names them.

``COMPARABLE_KEYS`` is the one place that defines comparability: two runs may be compared only
when these keys match, and the fingerprint (the key of a baseline file) is a hash of exactly them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

COMPARABLE_KEYS: tuple[str, ...] = (
    "device",
    "machine",
    "cpu_model",
    "cpu_count",
    "torch_threads",
    "torch_version",
    "transformers_version",
    "cuda_version",
    "gpu_name",
    "gpu_count",
    "gpu_memory_bytes",
    "gpu_power_limit_w",
    "mig_mode",
    # Persistence mode off lets the driver unload between processes: each run then pays
    # initialization and may start at other clocks. Added after the first stored fingerprints.
    "gpu_persistence_mode",
    # what an instruction count depends on (None under the time clock)
    "clock",
    "python",
    "valgrind_version",
    "aslr",
    "python_hash_seed",
    "isa_caps",  # instruction sets capped under the instruction clock (measure.clocks.instructions.ISA_CAPS)
)
# Under the instruction clock: what a count depends on, and nothing it does not, so that a baseline
# travels between machines (docs/instructions.md, "The environment fingerprint", says how each was
# decided). Left out, measured not to move a count: the CPU affinity (taskset), TMPDIR, thread
# placement variables of OpenMP and MKL, the environment's size, the checkout's folder. Left out
# because callgrind's process never sees them: the host CPU's model, vendor and cache sizes (CPUID
# under valgrind answers from valgrind's own table, recorded as guest_cpu) and the core count (one
# intra-op thread). Kept: the versions of everything whose machine code is counted.
INSTRUCTION_KEYS: tuple[str, ...] = (
    "device",
    "machine",
    "clock",
    "torch_threads",
    "torch_version",
    "transformers_version",
    "python",
    "python_build",  # another build of the same Python version executes other machine code
    "system_libraries",  # glibc and libstdc++: their string and memory functions are counted
    "valgrind_version",
    "guest_cpu",  # the CPU that CPUID reports inside valgrind: what MKL, oneDNN and glibc dispatch on
    "aslr",
    "python_hash_seed",
    "python_malloc",  # Python's object allocator: pymalloc's pool bookkeeping is counted, glibc's malloc is not
    "isa_caps",
)
# Keys added to COMPARABLE_KEYS after fingerprints were first stored: hashed only when set, so
# the fingerprints of environments without them (every CPU run) stay what they were.
HASHED_WHEN_SET: frozenset[str] = frozenset({"gpu_persistence_mode", "isa_caps"})


def is_instruction_count(env: Mapping[str, Any]) -> bool:
    return env.get("clock") == "instructions"


def comparable_keys(env: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys that make runs comparable with ``env``: INSTRUCTION_KEYS for instruction counts."""
    return INSTRUCTION_KEYS if is_instruction_count(env) else COMPARABLE_KEYS


def fingerprint(env: Mapping[str, Any]) -> str:
    """A readable, stable id of the comparable keys: ``cpu-2c-1t-<hash>``, ``cuda-h200-<hash>``,
    or ``cpu-1t-instr-<hash>`` for instruction counts (no core count: a count does not depend on it)."""
    if is_instruction_count(env):
        counted = {k: env.get(k) for k in INSTRUCTION_KEYS}
        digest = hashlib.sha256(json.dumps(counted, sort_keys=True, default=str).encode()).hexdigest()
        return f"cpu-{env.get('torch_threads')}t-instr-{digest[:10]}"
    comparable = {
        k: env.get(k) for k in COMPARABLE_KEYS if k not in HASHED_WHEN_SET or env.get(k) is not None
    }
    digest = hashlib.sha256(json.dumps(comparable, sort_keys=True, default=str).encode()).hexdigest()
    if env.get("device") == "cuda":
        name = str(env.get("gpu_name") or "gpu").lower()
        words = [w for w in re.split(r"[^a-z0-9]+", name) if w and w not in ("nvidia", "tesla")]
        label = f"cuda-{'-'.join(words[:2]) or 'gpu'}"
    else:
        label = f"cpu-{env.get('cpu_count')}c-{env.get('torch_threads')}t"
    return f"{label}-{digest[:10]}"


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Comparable keys whose values differ: key -> (value in a, value in b). Two instruction-count
    environments are compared on INSTRUCTION_KEYS; anything else on COMPARABLE_KEYS (where a
    differing ``clock`` shows)."""
    keys = INSTRUCTION_KEYS if is_instruction_count(a) and is_instruction_count(b) else COMPARABLE_KEYS
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}
