"""A planted output drift, as a pytest plugin: every model of the bundled suites has its weights
nudged after it is built, so what it generates changes while its speed and memory do not.

    PYTHONPATH=scripts/plants pytest suites -k "test_llm and eager" --mmperf --mmperf-compare -p drift

Each runner the suites' harness builds gets every floating-point parameter of each of its
``torch.nn.Module`` attributes moved by 5% of that parameter's own standard deviation (seeded
noise, the same in every process), the kind of change a wrong weight conversion or a changed
initialisation makes. The gate sees it as output drift against a baseline of the unplanted code,
on any machine: outputs are not timed.
"""

from __future__ import annotations

from typing import Any

RELATIVE_NOISE = 0.05


def pytest_configure(config: Any) -> None:
    from mmperf_suites import harness

    build = harness._build

    def planted_build(module: Any, task: str, options: Any) -> Any:
        import torch

        runner = build(module, task, options)
        generator = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for value in list(vars(runner).values()):
                if not isinstance(value, torch.nn.Module):
                    continue
                for param in value.parameters():
                    if param.is_floating_point() and param.numel() > 1:
                        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
                        scale = float(param.float().std()) * RELATIVE_NOISE
                        param.add_((noise * scale).to(device=param.device, dtype=param.dtype))
        return runner

    harness._build = planted_build
