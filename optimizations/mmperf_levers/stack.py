"""The paper's optimized baseline: every compatible lever, composed in the paper's order.

Order (Lee et al. 2024, section on the optimization stack): efficient attention (``sdpa``),
static KV cache, ``torch.compile`` (``cuda_graphs`` on CUDA), int8 weight-only quantization,
LayerSkip. ``compatible_levers`` picks the ones that apply to a (workload, task, device);
``ComposedLever`` runs their ``configure`` steps in order and then their ``apply`` steps in
order (compile last), merging their health metrics (prefixed by the lever's name where two would collide).

``LEVER`` (named ``stack``) composes for whatever it is applied to. Its ``configure`` sees only
the options, not the workload, so it configures every candidate lever; a builder ignores the
options it does not read (e.g. the recommender ignores ``attention``). ``apply`` applies only
the levers compatible with the built runner. Where that is not good enough, build the exact
composition with ``ComposedLever(compatible_levers(workload, task, device))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmperf_levers import compile as compile_lever
from mmperf_levers import cuda_graphs, int8, layerskip, sdpa, static_cache
from mmperf_levers.compile import CompileLever
from mmperf_levers.contract import BuildOptions, Lever, Runner


def paper_order(device: str) -> list[Lever]:
    """The stack's candidate levers, in the paper's order, for ``device``."""
    compiler = cuda_graphs.LEVER if device.startswith("cuda") else compile_lever.LEVER
    return [
        sdpa.LEVER,
        static_cache.LEVER,
        compiler,
        int8.INT8_WEIGHT_ONLY,
        layerskip.LEVER,
    ]


def compatible_levers(workload: str, task: str, device: str) -> list[Lever]:
    return [
        lever
        for lever in paper_order(device)
        if lever.unsupported(workload, task, device) is None
        and not (device == "cpu" and lever is int8.INT8_WEIGHT_ONLY)
    ]


# Why the CPU stack leaves out int8 weight-only: the paper's stack targets memory-bound GPU
# decode, where int8 weights halve the bytes moved; torchao's int8 CPU path dequantizes per call
# and ran at 0.61-0.87x of fp32 on every workload here (tiny scale, 1 thread, scripts/bench). The lever itself
# is still measured on its own everywhere.


@dataclass(frozen=True)
class ComposedLever:
    levers: Sequence[Lever]
    name: str = "stack"

    @property
    def lossy(self) -> bool:
        return any(lever.lossy for lever in self.levers)

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        reasons = [lever.unsupported(workload, task, device) for lever in self.levers]
        if all(reasons):
            return "no lever of the stack applies: " + "; ".join(str(r) for r in reasons)
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        for lever in self.levers:
            options = lever.configure(options)
        return options

    def apply(self, runner: Runner) -> dict[str, float]:
        """Apply in the given order, except that compiling comes last: a compiled step must see
        the model it will run (quantized weights, LayerSkip's draft/verify steps), or it would
        compile twice; compile's warm-up runs then also warm everything else."""
        health: dict[str, float] = {}
        ordered = sorted(self.levers, key=lambda lever: isinstance(lever, CompileLever))
        for lever in ordered:
            for key, value in lever.apply(runner).items():
                health[f"{lever.name}_{key}" if key in health else key] = value
        return health


@dataclass(frozen=True)
class StackLever:
    """``ComposedLever`` of the levers compatible with what it is applied to."""

    name: str = "stack"
    lossy: bool = True  # int8 weight-only is part of the stack

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if not compatible_levers(workload, task, device):
            return f"no lever applies to {workload}/{task} on {device}"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        return ComposedLever(paper_order(options.device)).configure(options)

    def apply(self, runner: Runner) -> dict[str, float]:
        levers = compatible_levers(runner.workload, runner.task, runner.options.device)
        return ComposedLever(levers).apply(runner)


LEVER = StackLever()
