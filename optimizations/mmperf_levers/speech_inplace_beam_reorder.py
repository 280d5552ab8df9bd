"""Beam-search KV-cache reorder in place (the paper's Seamless fix): self-attention K/V are
gathered and written back with ``copy_`` into their own storage, and the cross-attention cache,
identical across one utterance's beams, is not reordered at all (see
``mmperf_suites.workloads.speech.InPlaceReorderCache``). Outputs are identical."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mmperf_levers.contract import BuildOptions, Runner


@dataclass(frozen=True)
class InplaceBeamReorderLever:
    name: str = "inplace_beam_reorder"
    lossy: bool = False

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if workload != "speech":
            return "only the speech workload decodes with beam search"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        return replace(options, speech=replace(options.speech, inplace_beam_reorder=True))

    def apply(self, runner: Runner) -> dict[str, float]:
        return {}


LEVER = InplaceBeamReorderLever()
