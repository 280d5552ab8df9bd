"""torch.compile with ``mode="reduce-overhead"``: the compiled decode step is captured as a
CUDA graph and replayed, removing the per-kernel launch cost that leaves the GPU idle during
decode (the paper's main finding). CUDA only.

A CUDA graph replays fixed shapes at fixed addresses. With the growing (dynamic) KV cache every
decode step has a new shape, so dynamo recompiles until its limit and then runs eager: no graph
is ever replayed. This lever therefore *implies* the static KV cache (``configure`` sets
``kv_cache="static"``; builders without a KV cache ignore it), and the suites measure it as the
lever set ``static_cache+cuda_graphs``, the paper's lever 2 on a GPU.

Graph trees (PyTorch's CUDA-graph runtime for ``reduce-overhead``) start a new generation at
every call of a compiled function in inference, and a replay overwrites the previous replay's
outputs. The decode loops (``mmperf_suites.workloads.decoding``) therefore consume each step's
outputs before the next call and copy what they keep (LayerSkip's draft hidden states) into
buffers of their own.

Health metrics, on top of ``compile``'s (measured after compile's two runs, on one more run):

* ``cuda_graphs_recorded_count``: graphs in the graph tree of this device;
* ``cuda_graph_rerecords_count``: unexpected re-recordings (new input addresses or shapes);
* ``cuda_graph_skips_count``: graphs torch refused to capture (``cudagraph_skips`` counter:
  CPU tensors, mutated non-static inputs, ...); those steps ran without graphs;
* ``cuda_graphs_replayed_count``: 1 when the extra run recorded nothing new and skipped nothing
  (every step replayed a captured graph), else 0;
* ``sdpa_<backend>_count`` (flash, efficient, cudnn, math): SDPA calls of that run by backend,
  from the profiler's event names (:func:`sdpa_backend_of`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from mmperf_levers.compile import CompileLever
from mmperf_levers.contract import BuildOptions, NullPhases, Runner

SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")

# Which SDPA implementation an event name belongs to: the aten op dispatched in eager mode, or
# the kernel launched (the only trace a replayed graph leaves). First match wins.
_SDPA_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cudnn", ("_scaled_dot_product_cudnn_attention", "cudnn_generated_fort_native_sdpa", "sdpa_cudnn")),
    ("flash", ("_scaled_dot_product_flash_attention", "flash_fwd", "flash::", "flash_attn")),
    ("efficient", ("_scaled_dot_product_efficient_attention", "fmha_cutlass", "mem_efficient",
                   "attentionkernel")),
    ("math", ("_scaled_dot_product_attention_math",)),
)


def sdpa_backend_of(event_name: str) -> str | None:
    """The SDPA backend an op or kernel name shows, or None for other events.

    ``aten::_scaled_dot_product_flash_attention_for_cpu`` counts as flash (PyTorch's CPU flash
    kernel); the math backend leaves only ``_scaled_dot_product_attention_math`` (then plain
    bmm/softmax kernels).
    """
    name = event_name.lower()
    for backend, markers in _SDPA_MARKERS:
        if any(marker in name for marker in markers):
            return backend
    return None


def sdpa_backend_counts(event_names: Iterable[str]) -> dict[str, float]:
    """``sdpa_<backend>_count`` for every backend (0 where none ran)."""
    counts = dict.fromkeys(SDPA_BACKENDS, 0)
    for name in event_names:
        backend = sdpa_backend_of(name)
        if backend is not None:
            counts[backend] += 1
    return {f"sdpa_{backend}_count": float(n) for backend, n in counts.items()}


def graph_tree_counts(manager: Any) -> tuple[int, int]:
    """(graphs recorded, unexpected re-records) of a graph-tree manager
    (``torch._inductor.cudagraph_trees.CUDAGraphTreeManager``); (0, 0) for None."""
    if manager is None:
        return 0, 0
    recorded = 0
    todo = [node for nodes in manager.roots.values() for node in nodes]
    while todo:
        node = todo.pop()
        recorded += 1
        todo.extend(child for children in node.children.values() for child in children)
    rerecords = sum(sum(per_fn.values()) for per_fn in manager.num_rerecord.values())
    return recorded, rerecords


@dataclass(frozen=True)
class GraphTreeProbe:
    """Reads the graph tree of one CUDA device and torch's cudagraph skip counter."""

    device_index: int

    def read(self) -> tuple[int, int, int]:
        """(graphs recorded, re-records, skips so far)."""
        import torch._dynamo.utils
        from torch._inductor import cudagraph_trees

        manager = cudagraph_trees.get_manager(self.device_index, create_if_none_exists=False)
        recorded, rerecords = graph_tree_counts(manager)
        skips = int(torch._dynamo.utils.counters["inductor"]["cudagraph_skips"])
        return recorded, rerecords, skips


def replay_health(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, float]:
    """Health metrics from two :meth:`GraphTreeProbe.read` results around one warm run."""
    recorded, rerecords, skips = after
    replayed = recorded > 0 and after[0] == before[0] and after[2] == before[2]
    return {
        "cuda_graphs_recorded_count": float(recorded),
        "cuda_graph_rerecords_count": float(rerecords),
        "cuda_graph_skips_count": float(skips - before[2]),
        "cuda_graphs_replayed_count": 1.0 if replayed else 0.0,
    }


def profiled_event_names(runner: Runner) -> list[str]:
    """Names of every op and kernel of one run of ``runner`` under torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if runner.options.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        runner.run(NullPhases())
        if runner.options.device.startswith("cuda"):
            torch.cuda.synchronize()
    return [event.name for event in prof.events()]


@dataclass(frozen=True)
class CudaGraphsLever(CompileLever):
    name: str = "cuda_graphs"
    mode: str = "reduce-overhead"
    needs_cuda: bool = True

    def configure(self, options: BuildOptions) -> BuildOptions:
        return replace(options, kv_cache="static")

    def apply(self, runner: Runner) -> dict[str, float]:
        import torch

        health = super().apply(runner)
        probe = GraphTreeProbe(torch.cuda.current_device())
        before = probe.read()
        names = profiled_event_names(runner)  # the extra warm run, also naming the SDPA kernels
        health.update(replay_health(before, probe.read()))
        health.update(sdpa_backend_counts(names))
        return health


LEVER = CudaGraphsLever()
