"""Fold weight norm out of Seamless' HiFi-GAN vocoder: each convolution then uses a plain
weight instead of recomputing g * v / |v| on every call (what ``remove_weight_norm()`` does
in the paper's fast path). The waveform changes only by float rounding; text is unaffected."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mmperf_levers.contract import BuildOptions, Runner

SPEECH_OUTPUT_TASKS = ("s2st", "t2st")


@dataclass(frozen=True)
class RemoveWeightNormLever:
    name: str = "remove_weight_norm"
    lossy: bool = False  # tokens are exact; the waveform is equal within float tolerance

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if workload != "speech":
            return "only the speech workload has a (HiFi-GAN) vocoder"
        if task not in SPEECH_OUTPUT_TASKS:
            return f"task {task!r} produces text only; the vocoder does not run"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        return replace(options, speech=replace(options.speech, remove_weight_norm=True))

    def apply(self, runner: Runner) -> dict[str, float]:
        return {"weight_norms_folded_count": float(getattr(runner, "weight_norms_folded", 0))}


LEVER = RemoveWeightNormLever()
