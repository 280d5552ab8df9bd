"""torch.compile of the runner's per-step function(s) (the decode step, the HSTU stack, ...).

Only the steps are compiled, not the prefill: the step runs hundreds of times with one shape,
which is where launch overhead dominates (the paper's finding); keeping compiled graphs small
also keeps compile time affordable on a CPU. ``dynamic=False``: with a dynamic KV cache every
step has a new shape and recompiles until dynamo's recompile limit, then falls back to eager;
``recompiles_count`` shows it, and the ``static_cache`` lever is what makes compile pay.

Health metrics (measured in ``apply``, which therefore costs two runs of the workload):

* ``compile_ms``: the first run after compiling minus a second, warm run (real time spent
  compiling every compiled step; the second run doubles as warm-up);
* ``graph_breaks_count``: graph breaks dynamo reported while compiling;
* ``recompiles_count``: compiled entries beyond one per compiled step;
* ``compiled_steps_count``: how many functions the runner offered (``step_names``). A runner
  offers only what has fixed shapes: speech offers its decoder step only over the static cache
  (its dynamic beam-search cache grows every step: 134 s of recompiles at tiny scale, no
  speedup), and its HiFi-GAN on speaking tasks once ``remove_weight_norm`` folded it.
"""

from __future__ import annotations

import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch._dynamo

from mmperf_levers.contract import BuildOptions, NullPhases, Runner


def with_own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` with its own code object.

    Dynamo keeps compiled entries, and its recompile limit (8), per code object; the steps of
    every runner built in one process share one code object (they are closures made by the same
    function), so without a copy the ninth compiled runner would silently run eager.
    """
    if not isinstance(fn, types.FunctionType):
        return fn
    copy = types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


def compiled_entries(fn: Callable[..., Any]) -> int:
    """How many compiled variants dynamo holds for ``fn``'s code."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return 0
    return len(torch._dynamo.eval_frame._debug_get_cache_entry_list(code))


def graph_breaks_so_far() -> int:
    return sum(torch._dynamo.utils.counters["graph_break"].values())


def import_inductor_quietly() -> None:
    """Import inductor up front: in torch 2.13 its import chain (torch.utils.mkldnn) warns that
    ``torch.jit.script_method`` is deprecated, which fails projects run with
    ``filterwarnings = error``; the warning is torch's own, not the caller's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated", DeprecationWarning)
        import torch._inductor.compile_fx  # noqa: F401


def timed_run_ms(runner: Runner) -> float:
    start = time.perf_counter()
    runner.run(NullPhases())
    if runner.options.device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000.0


@dataclass(frozen=True)
class CompileLever:
    name: str = "compile"
    mode: str = "default"  # "reduce-overhead" = CUDA graphs
    needs_cuda: bool = False
    lossy: bool = False

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if self.needs_cuda and not device.startswith("cuda"):
            return f"{self.name} captures CUDA graphs; device is {device!r}"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        return options

    def apply(self, runner: Runner) -> dict[str, float]:
        import_inductor_quietly()
        names: tuple[str, ...] = getattr(runner, "step_names", ("step",))
        originals = {name: with_own_code(getattr(runner, name)) for name in names}
        breaks_before = graph_breaks_so_far()
        for name, fn in originals.items():
            setattr(runner, name, torch.compile(fn, mode=self.mode, dynamic=False))
        with warnings.catch_warnings():
            # torchao 0.18's int8 tensors lack a stable hash for AOT autograd's cache; torch
            # warns once and compiles without that cache. Not the caller's to fix.
            warnings.filterwarnings("ignore", ".*_stable_hash_for_caching", UserWarning)
            first_ms = timed_run_ms(runner)
            warm_ms = timed_run_ms(runner)
        recompiles = sum(max(0, compiled_entries(fn) - 1) for fn in originals.values())
        return {
            "compiled_steps_count": float(len(originals)),
            "compile_ms": max(0.0, first_ms - warm_ms),
            "graph_breaks_count": float(graph_breaks_so_far() - breaks_before),
            "recompiles_count": float(recompiles),
        }


LEVER = CompileLever()
