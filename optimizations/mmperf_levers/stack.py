"""The paper's progression of lever sets, each step adding to the one before, and its optimized
baseline (``stack``).

The steps (Lee et al. 2024, the order the paper stacks its levers), each measured against eager:

1. ``attention``: efficient attention (``sdpa``; HSTU: ``hstu_fused_attention``);
2. ``compiled``: + static KV cache + ``torch.compile`` of the decode step (``cuda_graphs``, i.e.
   compile with ``mode="reduce-overhead"``, on CUDA), plus the workload-specific changes the
   paper made so that compile and graphs apply (speech: ``inplace_beam_reorder``,
   ``remove_weight_norm``);
3. ``stack``: + int8 weight-only quantization (the paper's lever 3, compile + quantization): the
   paper's software stack, its "optimized baseline" (3.88x on average), without LayerSkip;
4. ``stack_layerskip``: + LayerSkip self-speculative decoding on top (the paper: ~1.58x more).

A lever that does not apply to a (workload, task, device) is left out of every step (its
``unsupported`` reason says why); a step that adds nothing over the previous one is not
measured twice (``progression`` leaves it out).

``ComposedLever`` runs its levers' ``configure`` steps in order and then their ``apply`` steps
in order, compile last, merging their health metrics. ``LEVER`` (named ``stack``) composes step
3 for whatever it is applied to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmperf_levers import compile as compile_lever
from mmperf_levers import (
    cuda_graphs,
    hstu_fused_attention,
    int8,
    layerskip,
    sdpa,
    speech_inplace_beam_reorder,
    speech_remove_weight_norm,
    static_cache,
)
from mmperf_levers.compile import CompileLever
from mmperf_levers.contract import BuildOptions, Lever, Runner

STEPS = ("attention", "compiled", "stack", "stack_layerskip")

# What each step adds, per workload where the paper used its own levers.
ATTENTION = {"recommender": hstu_fused_attention.LEVER}
ENABLERS = {  # the changes that let compile (and CUDA graphs) apply to a workload's decoder
    "speech": (speech_inplace_beam_reorder.LEVER, speech_remove_weight_norm.LEVER),
}
QUANTIZATION = int8.INT8_WEIGHT_ONLY


def step_additions(step: str, workload: str, device: str) -> list[Lever]:
    """The candidate levers ``step`` adds to the step before it, in the paper's order."""
    if step == "attention":
        return [ATTENTION.get(workload, sdpa.LEVER)]
    if step == "compiled":
        compiler = cuda_graphs.LEVER if device.startswith("cuda") else compile_lever.LEVER
        return [*ENABLERS.get(workload, ()), static_cache.LEVER, compiler]
    if step == "stack":
        return [QUANTIZATION]
    if step == "stack_layerskip":
        return [layerskip.LEVER]
    raise ValueError(f"no progression step {step!r}; the steps are {', '.join(STEPS)}")


def step_levers(step: str, workload: str, task: str, device: str) -> list[Lever]:
    """Every applicable lever of ``step`` and the steps before it, in the paper's order."""
    if step not in STEPS:
        raise ValueError(f"no progression step {step!r}; the steps are {', '.join(STEPS)}")
    levers: list[Lever] = []
    for name in STEPS[: STEPS.index(step) + 1]:
        levers += [
            lever
            for lever in step_additions(name, workload, device)
            if lever.unsupported(workload, task, device) is None
        ]
    return levers


def progression(workload: str, task: str, device: str) -> dict[str, list[Lever]]:
    """step -> its levers, leaving out a step that adds nothing to the one before."""
    out: dict[str, list[Lever]] = {}
    previous: list[Lever] = []
    for step in STEPS:
        levers = step_levers(step, workload, task, device)
        if levers and len(levers) > len(previous):
            out[step] = levers
        previous = levers
    return out


def compatible_levers(workload: str, task: str, device: str) -> list[Lever]:
    """The paper's optimized baseline for a (workload, task, device): step ``stack``."""
    return step_levers("stack", workload, task, device)


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
    """``ComposedLever`` of step ``stack`` for what it is applied to."""

    name: str = "stack"
    lossy: bool = True  # int8 weight-only is part of the stack

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if not compatible_levers(workload, task, device):
            return f"no lever applies to {workload}/{task} on {device}"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        # only the options are known here, not the workload: configure every candidate (a
        # builder ignores the typed groups of other workloads)
        candidates = [lever for step in STEPS[:3] for lever in step_additions(step, "", options.device)]
        candidates += [ATTENTION["recommender"], *ENABLERS["speech"]]
        return ComposedLever(candidates).configure(options)

    def apply(self, runner: Runner) -> dict[str, float]:
        levers = compatible_levers(runner.workload, runner.task, runner.options.device)
        return ComposedLever(levers).apply(runner)


LEVER = StackLever()
