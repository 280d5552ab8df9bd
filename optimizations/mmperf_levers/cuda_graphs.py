"""torch.compile with ``mode="reduce-overhead"``: the compiled decode step is captured as a
CUDA graph and replayed, removing the per-kernel launch cost that leaves the GPU idle during
decode (the paper's main finding). Needs CUDA and, to be useful, the ``static_cache`` lever."""

from __future__ import annotations

from mmperf_levers.compile import CompileLever

LEVER = CompileLever(name="cuda_graphs", mode="reduce-overhead", needs_cuda=True)
