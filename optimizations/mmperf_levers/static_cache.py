"""Static KV cache: preallocated to prompt + new tokens, written in place, so every decode step
has the same shapes and buffer addresses (what torch.compile and CUDA graphs need)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mmperf_levers.contract import BuildOptions, Runner

# The workloads whose builders read ``kv_cache``; one line to add one.
SUPPORTED = ("llm", "text_image", "speech")
REASONS = {
    "recommender": "HSTU runs no autoregressive decode, so there is no KV cache",
}


@dataclass(frozen=True)
class StaticCacheLever:
    name: str = "static_cache"
    lossy: bool = False

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if workload in SUPPORTED:
            return None
        return REASONS.get(workload, f"workload {workload!r} has no static KV cache")

    def configure(self, options: BuildOptions) -> BuildOptions:
        return replace(options, kv_cache="static")

    def apply(self, runner: Runner) -> dict[str, float]:
        return {}


LEVER = StaticCacheLever()
