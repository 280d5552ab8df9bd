"""Efficient attention: ``torch.nn.functional.scaled_dot_product_attention`` (flash/memory-
efficient kernels where the device has them) instead of transformers' eager matmul-softmax."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mmperf_levers.contract import BuildOptions, Runner

# HSTU's attention is SiLU(q k^T + bias) / N, with no softmax: SDPA cannot express it; the
# recommender has its own fused-attention lever instead.
UNSUPPORTED = {"recommender": "HSTU attention has no softmax; SDPA does not apply (see hstu_*)"}


@dataclass(frozen=True)
class SdpaLever:
    name: str = "sdpa"
    lossy: bool = False

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        return UNSUPPORTED.get(workload)

    def configure(self, options: BuildOptions) -> BuildOptions:
        return replace(options, attention="sdpa")

    def apply(self, runner: Runner) -> dict[str, float]:
        return {}


LEVER = SdpaLever()
