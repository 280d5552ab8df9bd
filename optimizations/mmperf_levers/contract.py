"""The contract between the bundled suites and the levers: the only module both import.

A workload (``mmperf_suites.workloads``) builds a :class:`Runner` from :class:`BuildOptions`; a
lever (``mmperf_levers``) edits the options before the build (``configure``) and the built runner
after it (``apply``)::

    options = lever.configure(options)      # before build: attention kind, cache kind, ...
    runner = workload.build(task, options)
    health = lever.apply(runner)            # after build: compile, quantize, swap decoder ...

``unsupported(workload, task, device)`` says why a lever does not apply (the benchmark is skipped
with that reason), or None when it does. This module imports neither workloads nor levers.

A workload module exposes ``WORKLOAD``, ``TASKS``, ``SCALES`` (``tiny``, ``small``, ``paper``),
``build(task, options) -> Runner`` (random weights, seeded, offline) and
``describe(task, scale) -> ModelFacts`` (on the meta device, so paper shapes are described anywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol


class PhaseRecorder(Protocol):
    """Marks named phases inside one measured call (the ``mmperf`` fixture implements it).

    ``with phases.phase("ttft"): ...`` records one sample of ``ttft_ms``; a phase entered many
    times in one call (each decode step) records one sample each time.
    """

    def phase(self, name: str) -> AbstractContextManager[None]: ...


class NullPhases:
    """A recorder that records nothing: for warm-up, quality runs and scripts."""

    def phase(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()


@dataclass(frozen=True)
class LayerSkipOptions:
    """How a decoder-only workload (llm, text_image) is built for LayerSkip.

    ``trained_factor`` shapes the model for every lever set, eager included: layers at and after
    the exit layer add only this fraction of their usual output to the residual stream, so the
    early exit agrees with the full model as in a LayerSkip-trained checkpoint (1.0: the model
    as built). ``draft_tokens`` > 0 turns self-speculative decoding on (the ``layerskip`` lever
    sets it); 0 decodes plainly.
    """

    trained_factor: float = 1.0
    exit_layer: int | None = None  # None: layers // 2
    draft_tokens: int = 0


@dataclass(frozen=True)
class SpeechOptions:
    """Knobs only the speech workload reads."""

    inplace_beam_reorder: bool = False  # beam KV reorder with copy_ into its own storage
    remove_weight_norm: bool = False  # fold weight norm out of the vocoder
    init_std: float | None = None  # None: the scale's; tests use a large one for varied beams


@dataclass(frozen=True)
class RecommenderOptions:
    """Knobs only the recommender (HSTU) reads."""

    hstu_attention: str = "naive"  # "naive" (padded einsum) | "fused" (one graph over the jagged batch)


@dataclass(frozen=True)
class PretrainedOptions:
    """Trained weights instead of random ones (the llm workload reads it; levers ignore it).

    ``kind`` "hf" loads the Hugging Face folder ``path``; "gguf" converts the file ``path`` once
    into ``cache_dir`` (keyed by its sha256) and loads that. ``prompts``: a JSONL file of the
    user's prompts, or None for the scale's HumanEval subset; ``max_new_tokens``: the cap per
    answer (None: the scale's), decoding also stops at EOS and at the end of the code block.
    """

    label: str  # the model's name in benchmark ids
    kind: str  # "hf" | "gguf"
    path: str
    cache_dir: str
    prompts: str | None = None
    max_new_tokens: int | None = None
    problems: int | None = None  # the first N prompts only (None: all of the scale's)
    random_weights: bool = False  # the source's config and tokenizer with seeded random weights


@dataclass(frozen=True)
class BuildOptions:
    """Everything a builder needs; levers edit it with ``dataclasses.replace``.

    Fields every workload reads sit at the top; what one workload alone reads sits in that
    workload's typed group (``speech``, ``recommender``) or in ``layerskip`` (the decoder-only
    workloads), so a typo is an error, not a key nobody reads.
    """

    scale: str = "tiny"
    device: str = "cpu"
    dtype: str = "float32"  # "float32" on CPU, "float16"/"bfloat16" on CUDA
    seed: int = 0
    batch_size: int = 1
    attention: str = "eager"  # "eager" | "sdpa"  (transformers' attn_implementation)
    kv_cache: str = "dynamic"  # "dynamic" | "static" (preallocated, fixed shapes)
    layerskip: LayerSkipOptions = LayerSkipOptions()
    speech: SpeechOptions = SpeechOptions()
    recommender: RecommenderOptions = RecommenderOptions()
    pretrained: PretrainedOptions | None = None  # None: random weights from the scale's config


@dataclass(frozen=True)
class ModelFacts:
    """Static facts of a built (or meta-device) model, for reports and the roofline."""

    parameters: int
    weight_bytes: int
    flops_per_token: float  # forward FLOPs for one token (2 * matmul parameters, plus attention)
    layers: int
    hidden_size: int
    kv_cache_bytes_per_token: int = 0  # all layers, K and V, one sequence


@dataclass
class Output:
    """What one inference produced, for quality checks and drift fingerprints."""

    tokens: list[list[int]] | None = None  # generated ids, one list per batch item
    ranking: list[list[int]] | None = None  # recommender: top candidates per user, best first
    scores: Any = None  # optional tensor (e.g. ranking scores) for lossy comparisons
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"waveform_samples": 16000}


class Runner(Protocol):
    """A built workload ready to run; the object levers act on."""

    workload: str
    task: str
    options: BuildOptions
    facts: ModelFacts
    model: Any  # the torch.nn.Module levers quantize
    step: Callable[..., Any]  # the per-step forward levers compile (decode step, HSTU stack, ...)

    def run(self, phases: PhaseRecorder) -> Output:
        """One full inference over the fixed, seeded inputs, marking phases."""
        ...

    def teacher_forced_logits(self, tokens: list[list[int]]) -> Any:
        """Logits of the model on the given sequences (prompt + reference continuation),
        shape [batch, len, vocab]; None where the workload has no token output."""
        ...

    def metrics(self) -> dict[str, float]:
        """Static per-run numbers the harness records (e.g. ``kv_cache_bytes``,
        ``prompt_tokens``, ``new_tokens``, layerskip ``acceptance_rate``)."""
        ...


class Lever(Protocol):
    name: str  # the name in the results document's "optimizations" list
    lossy: bool  # lossy levers get a teacher-forced quality check, lossless ones exact tokens

    def unsupported(self, workload: str, task: str, device: str) -> str | None: ...

    def configure(self, options: BuildOptions) -> BuildOptions: ...

    def apply(self, runner: Runner) -> dict[str, float]:
        """Change the built runner in place; return health metrics (name -> value), e.g.
        ``{"compile_ms": 2100.0, "graph_breaks_count": 0}`` or ``{"quantized_layers_count": 28}``."""
        ...
