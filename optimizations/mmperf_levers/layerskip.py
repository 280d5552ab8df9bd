"""LayerSkip self-speculative decoding (Elhoushi et al. 2024), own implementation.

Draft ``draft_tokens`` tokens with the first ``exit_layer`` layers + final norm + LM head,
verify them with the remaining layers in one pass over the drafts' exit hidden states (the
early layers' KV entries are reused, not recomputed), keep the longest agreeing prefix plus the
full model's next token. Greedy, so the tokens equal plain greedy decoding by construction.
The decode loop is ``mmperf_suites.workloads.decoding.layerskip_decode``, in the workload; the
runner protocol for this lever is the typed build option ``BuildOptions.layerskip``:
``configure`` sets ``draft_tokens`` (and ``exit_layer``), which switches the builder to that
loop; ``apply`` checks it did and takes one probe run.

A random-weight model's early exit predicts nothing (acceptance ~0); build the model with
``layerskip=LayerSkipOptions(trained_factor=0.05)`` (for the baseline too) to make it behave
like a LayerSkip-trained checkpoint: see ``mmperf_suites.workloads.llm``.

Health metrics: ``acceptance_rate`` and ``draft_tokens_count`` of one probe run in ``apply``.
Note each ``tpot`` sample of a speculative run is one draft-verify round (1..K+1 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mmperf_levers.contract import BuildOptions, NullPhases, Runner

SUPPORTED = ("llm", "text_image")


@dataclass(frozen=True)
class LayerSkipLever:
    name: str = "layerskip"
    exit_layer: int | None = None  # None: layers // 2
    draft_tokens: int = 4
    lossy: bool = False

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if workload not in SUPPORTED:
            return f"layerskip is implemented for the decoder-only workloads {SUPPORTED}"
        if workload == "text_image" and task == "t2i":
            return "layerskip here is greedy; text-to-image samples (top-p) under guidance"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        exit_layer = self.exit_layer if self.exit_layer is not None else options.layerskip.exit_layer
        return replace(
            options,
            layerskip=replace(options.layerskip, draft_tokens=self.draft_tokens, exit_layer=exit_layer),
        )

    def apply(self, runner: Runner) -> dict[str, float]:
        if getattr(runner, "layerskip", None) is None:
            raise ValueError(
                f"{runner.workload}/{runner.task} was built without LayerSkip decoding; "
                "was configure() applied before build?"
            )
        runner.run(NullPhases())
        metrics = runner.metrics()
        return {
            "acceptance_rate": metrics["acceptance_rate"],
            "draft_tokens_count": metrics["draft_tokens_count"],
        }


LEVER = LayerSkipLever()
