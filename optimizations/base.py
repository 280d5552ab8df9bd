"""The one interface every lever implements.

A lever is applied in two steps around the build of a workload::

    options = lever.configure(options)      # before build: attention kind, cache kind, ...
    runner = workload.build(task, options)
    health = lever.apply(runner)            # after build: compile, quantize, swap decoder ...

``unsupported(workload, task, device)`` says why a lever does not apply (the benchmark is
skipped with that reason), or None when it does.
"""

from __future__ import annotations

from typing import Protocol

from suites.workloads.base import BuildOptions, Runner


class Lever(Protocol):
    name: str  # the name in the results document's "optimizations" list
    lossy: bool  # lossy levers get a teacher-forced quality check, lossless ones exact tokens

    def unsupported(self, workload: str, task: str, device: str) -> str | None: ...

    def configure(self, options: BuildOptions) -> BuildOptions: ...

    def apply(self, runner: Runner) -> dict[str, float]:
        """Change the built runner in place; return health metrics (name -> value), e.g.
        ``{"compile_ms": 2100.0, "graph_breaks_count": 0}`` or ``{"quantized_layers_count": 28}``."""
        ...
