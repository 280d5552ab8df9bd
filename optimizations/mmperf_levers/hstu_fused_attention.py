"""HSTU attention computed jagged and tiled, one computation over the whole batch (only the
(query tile, key tile) pairs of one history on or below the diagonal) instead of padding every
history to the batch's longest and building dense [B, H, N, N] scores: the paper's fused
jagged attention, in torch ops. Same result within float tolerance.

The work lives in the workload (``mmperf_suites.workloads.recommender.fused_attention``); the
runner protocol for this lever is the typed build option
``BuildOptions.recommender.hstu_attention``: ``configure`` sets it, ``apply`` has nothing to do."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mmperf_levers.contract import BuildOptions, Runner


@dataclass(frozen=True)
class HstuFusedAttentionLever:
    name: str = "hstu_fused_attention"
    lossy: bool = False  # the ranking is expected to be identical; scores within tolerance

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if workload != "recommender":
            return "only the recommender workload runs HSTU attention"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        return replace(options, recommender=replace(options.recommender, hstu_attention="fused"))

    def apply(self, runner: Runner) -> dict[str, float]:
        return {}


LEVER = HstuFusedAttentionLever()
