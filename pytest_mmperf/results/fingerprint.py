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
# Keys added to COMPARABLE_KEYS after fingerprints were first stored: hashed only when set, so
# the fingerprints of environments without them (every CPU run) stay what they were.
HASHED_WHEN_SET: frozenset[str] = frozenset({"gpu_persistence_mode", "isa_caps"})


def fingerprint(env: Mapping[str, Any]) -> str:
    """A readable, stable id of the comparable keys: ``cpu-2c-<hash>`` or ``cuda-h200-<hash>``."""
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
    if env.get("clock") == "instructions":
        label += "-instr"
    return f"{label}-{digest[:10]}"


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Comparable keys whose values differ: key -> (value in a, value in b)."""
    return {k: (a.get(k), b.get(k)) for k in COMPARABLE_KEYS if a.get(k) != b.get(k)}
