"""A planted memory regression, as a pytest plugin: every model of the bundled suites keeps
16 MiB more from its first call on (a second copy of something, a cache never freed).

    PYTHONPATH=scripts/plants pytest suites -k "test_llm and eager" --mmperf --mmperf-compare -p keep16mib

Each runner the suites' harness builds gets its ``run`` wrapped: the first call allocates a
16 MiB tensor on the model's device and keeps it on the runner. The per-call peak above each
call's start does not grow (the memory is already held when a call starts) and ``weight_bytes``
counts parameters and buffers only; ``resident_memory_bytes`` sees it.
"""

from __future__ import annotations

from typing import Any

KEPT_BYTES = 16 * 2**20


def pytest_configure(config: Any) -> None:
    from mmperf_suites import harness

    build = harness._build

    def planted_build(module: Any, task: str, options: Any) -> Any:
        runner = build(module, task, options)
        run = runner.run

        def run_and_keep(*args: Any, **kwargs: Any) -> Any:
            if getattr(runner, "_planted", None) is None:
                import torch

                runner._planted = torch.ones(KEPT_BYTES // 4, device=options.device)  # float32
            return run(*args, **kwargs)

        runner.run = run_and_keep
        return runner

    harness._build = planted_build
