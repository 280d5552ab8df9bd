"""Types every workload builder and every lever share.

A workload module (``llm``, ``speech``, ``text_image``, ``recommender``) exposes

* ``WORKLOAD: str`` and ``TASKS: tuple[str, ...]``;
* ``SCALES: dict[str, <Config dataclass>]`` with the keys ``tiny``, ``small`` and ``paper``;
* ``build(task, options: BuildOptions) -> Runner``: the model with random weights, seeded, offline;
* ``describe(task, scale) -> ModelFacts``: parameter count, weight bytes, FLOPs per token, built on
  the meta device, so that the ``paper`` shapes are described on any machine.

Levers (``optimizations/``) change a workload in two places: ``configure`` edits the
``BuildOptions`` before the model is built (attention implementation, cache kind), ``apply``
edits the built ``Runner`` (compile its step function, quantize its linears, swap its decoder).
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
class BuildOptions:
    """Everything a builder needs; levers edit it with ``dataclasses.replace``."""

    scale: str = "tiny"
    device: str = "cpu"
    dtype: str = "float32"  # "float32" on CPU, "float16"/"bfloat16" on CUDA
    seed: int = 0
    batch_size: int = 1
    attention: str = "eager"  # "eager" | "sdpa"  (transformers' attn_implementation)
    kv_cache: str = "dynamic"  # "dynamic" | "static" (preallocated, fixed shapes)
    # workload-specific knobs, read only by the workloads they concern:
    inplace_beam_reorder: bool = False  # speech: beam KV reorder with index_copy_ instead of index_select
    remove_weight_norm: bool = False  # speech: fold weight norm out of the vocoder
    hstu_attention: str = "naive"  # recommender: "naive" (padded einsum) | "fused" (jagged, blocked)
    extra: tuple[tuple[str, Any], ...] = ()  # free-form, hashable


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
