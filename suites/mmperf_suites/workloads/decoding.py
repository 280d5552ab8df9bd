"""Explicit decode loops shared by the decoder-only workloads (``llm``, ``text_image``).

transformers' ``generate`` hides the boundary between prefill and each decode step, masks
Chameleon's image tokens, and cannot be stopped per step for timing; these loops call the
decoder stack directly so that

* ``ttft`` covers exactly the prefill forward (+ the first token's choice) and each ``tpot`` one
  decode step;
* the per-step forward (``DecodeSteps.step``) is a plain function a lever can replace by a
  compiled version;
* LayerSkip self-speculation can run the first ``exit_layer`` layers alone (draft) and the rest
  on the drafted tokens (verify), reusing the early layers' KV entries.

Every loop works on a ``DecoderStack``: handles on the embedding, decoder layers, final norm,
rotary embedding and LM head of a Llama-style model (Llama and Chameleon share that layout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from mmperf_levers.contract import LayerSkipOptions, ModelFacts, PhaseRecorder
from torch import nn
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask

# step(input_ids [B, T], position_ids [B, T], cache) -> logits [B, T, vocab]; cache None = no cache
StepFn = Callable[[torch.Tensor, torch.Tensor, Cache | None], torch.Tensor]


@dataclass(frozen=True)
class DecoderStack:
    """The parts of a Llama-style causal LM the loops call one by one."""

    embed: nn.Module  # token id -> hidden [B, T, D]
    layers: nn.ModuleList  # decoder layers, each (hidden, mask, positions, cache) -> hidden
    norm: nn.Module  # final RMSNorm
    rotary: nn.Module  # (hidden, position_ids) -> (cos, sin)
    lm_head: nn.Module  # hidden [B, T, D] -> logits [B, T, V]
    config: Any  # the text config; its ``_attn_implementation`` picks eager/sdpa masks


@dataclass(frozen=True)
class LayerSkipSettings:
    """Self-speculative decoding: draft with layers [0, exit_layer), verify with the rest."""

    exit_layer: int
    draft_tokens: int


@dataclass(frozen=True)
class StopRule:
    """When a served model stops answering: at an end-of-sequence id, or (``fences`` > 0) once
    that many code fences were written (2: the answer's code block is closed, as a stop
    sequence would end it). The stopping token is part of the answer (it was computed)."""

    eos_ids: frozenset[int]
    fence_counts: dict[int, int]  # token id -> how many "```" its text holds
    fences: int = 0

    def start(self) -> StopState:
        return StopState(self)


class StopState:
    """One answer's progress through a :class:`StopRule` (pure Python)."""

    def __init__(self, rule: StopRule) -> None:
        self.rule = rule
        self.fences = 0

    def feed(self, ids: list[int]) -> int | None:
        """None to go on, or how many of ``ids`` the answer keeps (up to the stopping one)."""
        for k, token in enumerate(ids):
            if token in self.rule.eos_ids:
                return k + 1
            self.fences += self.rule.fence_counts.get(token, 0)
            if self.rule.fences and self.fences >= self.rule.fences:
                return k + 1
        return None


@dataclass
class SpeculationStats:
    """Counts of one run's drafts, for ``Runner.metrics``."""

    drafted: int = 0
    accepted: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def decoder_facts(
    model: nn.Module,
    stack: DecoderStack,
    heads: int,
    kv_heads: int,
    context_tokens: int,
    dtype: torch.dtype,
) -> ModelFacts:
    """Parameters (all of ``model``, e.g. Chameleon's VQ tokenizer too), weight bytes, and FLOPs
    per token: 2 x the decoder's and LM head's matmul weights, plus attention's QK^T and AV
    (4 x context x heads x head_dim per layer) at ``context_tokens`` of context."""
    hidden = stack.config.hidden_size
    head_dim = hidden // heads
    layers = len(stack.layers)
    parameters = sum(p.numel() for p in model.parameters())
    matmul_weights = sum(
        m.weight.numel()
        for m in [*stack.layers.modules(), stack.lm_head]
        if isinstance(m, nn.Linear)
    )
    bytes_per_value = torch.empty((), dtype=dtype, device="meta").element_size()
    return ModelFacts(
        parameters=parameters,
        weight_bytes=parameters * bytes_per_value,
        flops_per_token=2.0 * matmul_weights + 4.0 * layers * context_tokens * heads * head_dim,
        layers=layers,
        hidden_size=hidden,
        kv_cache_bytes_per_token=2 * layers * kv_heads * head_dim * bytes_per_value,
    )


@torch.no_grad()
def scale_late_layers(stack: DecoderStack, exit_layer: int, factor: float) -> None:
    """Make a random model "LayerSkip-trained-like": layers >= ``exit_layer`` add only
    ``factor`` x their usual output to the residual stream, so the early exit (layers before
    ``exit_layer`` + final norm + head) mostly predicts what the full model predicts, as in a
    checkpoint trained with LayerSkip's early-exit loss. factor 1.0 leaves the model as built."""
    if factor == 1.0:
        return
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"layerskip trained_factor must be in (0, 1], got {factor}")
    for layer in stack.layers[exit_layer:]:
        layer.self_attn.o_proj.weight.mul_(factor)
        layer.mlp.down_proj.weight.mul_(factor)


def make_cache(kind: str, config: Any, max_tokens: int) -> Cache:
    """A KV cache: "dynamic" grows by concatenation; "static" is preallocated to ``max_tokens``
    so every decode step sees the same shapes (what torch.compile and CUDA graphs need)."""
    if kind == "dynamic":
        return DynamicCache(config=config)
    if kind == "static":
        return StaticCache(config=config, max_cache_len=max_tokens)
    raise ValueError(f"kv_cache must be 'dynamic' or 'static', got {kind!r}")


def run_layers(
    stack: DecoderStack,
    hidden: torch.Tensor,  # [B, T, D]
    position_ids: torch.Tensor,  # [B, T]
    cache: Cache | None,
    first: int,
    last: int,
) -> torch.Tensor:  # [B, T, D]
    """Layers [first, last) on ``hidden``; their KV entries go to ``cache``."""
    # The mask is sized against layer ``first``: during a LayerSkip draft the early layers hold
    # more entries than the late ones, so layer 0's length would be wrong for the late layers.
    mask = create_causal_mask(
        config=stack.config,
        inputs_embeds=hidden,
        attention_mask=None,
        cache=cache,
        position_ids=position_ids,
        layer_idx=first if cache is not None else None,
    )
    position_embeddings = stack.rotary(hidden, position_ids=position_ids)
    for layer in stack.layers[first:last]:
        out = layer(
            hidden,
            attention_mask=mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=cache is not None,
            position_embeddings=position_embeddings,
        )
        # Llama layers return the hidden state, Chameleon layers a 1-tuple
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def head(stack: DecoderStack, hidden: torch.Tensor) -> torch.Tensor:
    """Final norm + LM head: hidden [B, T, D] -> logits [B, T, V]."""
    return stack.lm_head(stack.norm(hidden))


def full_step_fn(stack: DecoderStack) -> StepFn:
    """The whole model as one step function (prefill and plain decode steps)."""

    def step(
        input_ids: torch.Tensor, position_ids: torch.Tensor, cache: Cache | None
    ) -> torch.Tensor:
        hidden = stack.embed(input_ids)  # [B, T, D]
        hidden = run_layers(stack, hidden, position_ids, cache, 0, len(stack.layers))
        return head(stack, hidden)  # [B, T, V]

    return step


def draft_step_fn(stack: DecoderStack, exit_layer: int) -> Callable[..., Any]:
    """Early exit: layers [0, exit_layer) + final norm + LM head, returning the exit hidden
    state too, so verification continues from it instead of recomputing the early layers."""

    def draft_step(
        input_ids: torch.Tensor, position_ids: torch.Tensor, cache: Cache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = run_layers(stack, stack.embed(input_ids), position_ids, cache, 0, exit_layer)
        return hidden, head(stack, hidden)  # [B, 1, D], [B, 1, V]

    return draft_step


def verify_step_fn(stack: DecoderStack, exit_layer: int) -> Callable[..., torch.Tensor]:
    """Late layers [exit_layer, L) on the drafted tokens' exit hidden states -> full logits."""

    def verify_step(
        hidden: torch.Tensor, position_ids: torch.Tensor, cache: Cache
    ) -> torch.Tensor:  # hidden [B, K+1, D] -> logits [B, K+1, V]
        hidden = run_layers(stack, hidden, position_ids, cache, exit_layer, len(stack.layers))
        return head(stack, hidden)

    return verify_step


def positions(batch: int, start: int, count: int, device: torch.device) -> torch.Tensor:
    """Position ids [B, count] = start .. start+count-1 (all rows equal: no padding)."""
    return torch.arange(start, start + count, device=device).unsqueeze(0).expand(batch, count)


def greedy_decode(
    prefill: StepFn,
    step: StepFn,
    prompt: torch.Tensor,  # [B, P]
    new_tokens: int,
    cache: Cache,
    phases: PhaseRecorder,
    logit_bias: torch.Tensor | None = None,  # [V], -inf on ids that may not be generated
    stop: StopRule | None = None,  # batch 1: end at EOS / a closed code block (None: always new_tokens)
) -> torch.Tensor:  # [B, new_tokens], or [1, n <= new_tokens] with ``stop``
    """Greedy decoding: ``ttft`` = prefill + first token, then one ``tpot`` per further token."""
    batch, prompt_len = prompt.shape
    state = stop.start() if stop is not None else None
    with phases.phase("ttft"):
        logits = prefill(prompt, positions(batch, 0, prompt_len, prompt.device), cache)
        token = pick_greedy(logits[:, -1:], logit_bias)  # [B, 1]
    out = [token]
    if state is not None and state.feed(token[0].tolist()) is not None:
        return token
    for i in range(1, new_tokens):
        with phases.phase("tpot"):
            logits = step(token, positions(batch, prompt_len + i - 1, 1, prompt.device), cache)
            token = pick_greedy(logits, logit_bias)
        out.append(token)
        if state is not None and state.feed(token[0].tolist()) is not None:
            break
    return torch.cat(out, dim=1)


@torch.inference_mode()
def teacher_forced_decode(
    prefill: StepFn,
    step: StepFn,
    prompt: torch.Tensor,  # [R, P]
    continuation: torch.Tensor,  # [R, N] the reference's tokens, fed instead of the arm's own
    cache: Cache,
) -> torch.Tensor:  # [R, N, V]
    """The arm's own decode path (its prefill, its per-step function as levers left it:
    compiled, quantized, on its static cache) forced along a reference continuation: the
    logits that predict each continuation token. Lossy levers are judged on these."""
    rows, prompt_len = prompt.shape
    logits = prefill(prompt, positions(rows, 0, prompt_len, prompt.device), cache)
    out = [logits[:, -1:]]
    for i in range(continuation.shape[1] - 1):
        token = continuation[:, i : i + 1].clone(memory_format=torch.contiguous_format)
        out.append(step(token, positions(rows, prompt_len + i, 1, prompt.device), cache))
    return torch.cat(out, dim=1)


def pick_greedy(logits: torch.Tensor, logit_bias: torch.Tensor | None) -> torch.Tensor:
    """logits [B, T, V] -> argmax ids [B, T]."""
    if logit_bias is not None:
        logits = logits + logit_bias
    return logits.argmax(dim=-1)


def layerskip_decode(
    prefill: StepFn,
    draft_step: Callable[..., Any],
    verify_step: Callable[..., torch.Tensor],
    settings: LayerSkipSettings,
    prompt: torch.Tensor,  # [B, P]
    new_tokens: int,
    cache: Cache,  # room for prompt + new_tokens + draft_tokens
    phases: PhaseRecorder,
    stats: SpeculationStats,
    logit_bias: torch.Tensor | None = None,
    stop: StopRule | None = None,  # batch 1: as greedy_decode's; the tokens stay greedy's
) -> torch.Tensor:  # [B, new_tokens], or [1, n <= new_tokens] with ``stop``
    """Greedy self-speculative decoding; the tokens equal ``greedy_decode``'s by construction.

    Every step's output is either consumed before the next step call (logits -> argmax) or
    copied into a buffer this loop owns (the exit hidden states), so the loop stays correct
    when the steps are CUDA graphs whose replays reuse their output memory.

    One round (one ``speculation_round`` sample, producing 1..K+1 tokens; the harness derives
    ``tpot_ms`` per measured call as decode time over generated tokens): K draft steps through the early
    layers, one more early-layer step for the last draft (its late layers are still needed),
    then one verify pass of the late layers over the K+1 exit hidden states. Draft j is kept
    while every earlier draft matched the full model's argmax; the full model's prediction after
    the last kept token is always appended. With a batch, the shortest accepted prefix is kept
    for all rows (each row's kept tokens are still the full model's). Rejected positions are
    cropped off the cache.
    """
    batch, prompt_len = prompt.shape
    device = prompt.device
    with phases.phase("ttft"):
        logits = prefill(prompt, positions(batch, 0, prompt_len, device), cache)
        token = pick_greedy(logits[:, -1:], logit_bias)  # [B, 1]
    out = [token]
    produced = 1
    state = stop.start() if stop is not None else None
    if state is not None and state.feed(token[0].tolist()) is not None:
        return token
    exits: torch.Tensor | None = None  # the drafts' exit hidden states, owned by this loop
    while produced < new_tokens:
        # The cache holds positions < pos; ``token`` (at pos) is not in it yet. Every round
        # drafts the full K, even near the end (the cache has K positions of slack), so the
        # verify pass always has the shape [B, K+1] and a compiled verify never recompiles.
        pos = prompt_len + produced - 1
        k = settings.draft_tokens
        with phases.phase("speculation_round"):
            drafts = []
            x = token
            for j in range(k + 1):
                hidden, draft_logits = draft_step(x, positions(batch, pos + j, 1, device), cache)
                if exits is None:
                    exits = hidden.new_empty(batch, k + 1, hidden.shape[-1])  # [B, K+1, D]
                # Copied out now: under CUDA graphs (reduce-overhead) the next draft step's
                # replay overwrites this one's output tensors (graph-tree rule); the copy
                # replaces the torch.cat the verify pass needed anyway.
                exits[:, j : j + 1].copy_(hidden)
                if j < k:
                    x = pick_greedy(draft_logits, logit_bias)  # [B, 1]
                    drafts.append(x)
            drafted = torch.cat(drafts, dim=1)  # [B, K]
            full = verify_step(exits, positions(batch, pos, k + 1, device), cache)  # [B, K+1, V]
            verified = pick_greedy(full, logit_bias)  # [B, K+1]: the full model's next tokens
            # accepted = length of the prefix where draft == verified, shortest over the batch
            matches = (verified[:, :k] == drafted).int().cumprod(dim=1).sum(dim=1)
            accepted = int(matches.min())
            if accepted < k:  # drop the rejected drafts' entries (every layer holds K+1 new)
                for layer in cache.layers:
                    layer.crop(-(k - accepted))
            kept = verified[:, : accepted + 1]  # the accepted drafts + the full model's next token
            stats.drafted += k
            stats.accepted += accepted
        if state is not None:
            keep = state.feed(kept[0].tolist())
            if keep is not None:  # the stopping token is in this round: greedy would end there too
                out.append(kept[:, :keep])
                break
        out.append(kept)
        produced += accepted + 1
        # a fresh [B, 1] tensor: a slice of ``kept`` has other strides than the draft tokens,
        # which would make a compiled draft step recompile
        token = kept[:, -1:].clone(memory_format=torch.contiguous_format)
    return torch.cat(out, dim=1)[:, :new_tokens]


def top_p_sample(
    logits: torch.Tensor,  # [B, V']
    top_p: float,
    generator: torch.Generator,  # on the logits' device, seeded by the workload
) -> torch.Tensor:  # [B] indices into V'
    """Nucleus sampling: sample among the smallest set of ids whose probability reaches top_p."""
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
    # keep an id while the mass *before* it is below top_p (so the top id is always kept)
    keep = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
    sorted_probs = sorted_probs * keep
    choice = torch.multinomial(sorted_probs, 1, generator=generator)  # [B, 1]
    return sorted_ids.gather(-1, choice).squeeze(-1)


def cfg_sample_decode(
    prefill: StepFn,
    step: StepFn,
    streams: torch.Tensor,  # [3B, P]: conditional, image-unconditional, unconditional rows
    new_tokens: int,
    cache: Cache,
    phases: PhaseRecorder,
    allowed_ids: torch.Tensor,  # [V'] the ids that may be sampled (e.g. the image tokens)
    text_guidance: float,
    image_guidance: float,
    top_p: float,
    generator: torch.Generator,
) -> torch.Tensor:  # [B, new_tokens]
    """Sampling with 3-stream classifier-free guidance, as Chameleon's text-to-image inference.

    The three streams run batched; the guided logits are
    ``uncond + text_guidance * (image_uncond - uncond) + image_guidance * (cond - image_uncond)``
    restricted to ``allowed_ids``; the sampled token is fed to all three streams.
    """
    rows, prompt_len = streams.shape
    batch = rows // 3
    device = streams.device

    def guided(logits: torch.Tensor) -> torch.Tensor:  # [3B, V] -> [B, V']
        logits = logits.index_select(-1, allowed_ids).float()
        cond, image_uncond, uncond = logits.split(batch, dim=0)
        return (
            uncond
            + text_guidance * (image_uncond - uncond)
            + image_guidance * (cond - image_uncond)
        )

    def choose(logits: torch.Tensor) -> torch.Tensor:  # [3B, V] -> [3B, 1] token ids
        picked = allowed_ids[top_p_sample(guided(logits), top_p, generator)]  # [B]
        return picked.repeat(3).unsqueeze(1)

    with phases.phase("ttft"):
        logits = prefill(streams, positions(rows, 0, prompt_len, device), cache)
        token = choose(logits[:, -1])
    out = [token[:batch]]
    for i in range(1, new_tokens):
        with phases.phase("tpot"):
            logits = step(token, positions(rows, prompt_len + i - 1, 1, device), cache)
            token = choose(logits[:, -1])
        out.append(token[:batch])
    return torch.cat(out, dim=1)


def attach_steps(
    runner: Any, stack: DecoderStack, layers: int, options: LayerSkipOptions, allow_layerskip: bool
) -> None:
    """Give a decoder runner its per-step callables and LayerSkip settings (llm, text_image).

    Sets ``layerskip``, ``speculation``, ``prefill``, ``step``, ``draft_step``, ``verify_step``
    and ``step_names``: the callables levers may replace (compile). Prefill stays eager, as its
    shape differs per prompt and it runs once per inference. ``options.exit_layer`` and
    ``options.trained_factor`` shape the model; ``options.draft_tokens`` > 0 (set by the
    layerskip lever) turns self-speculative decoding on.
    """
    exit_layer = options.exit_layer if options.exit_layer is not None else layers // 2
    scale_late_layers(stack, exit_layer, options.trained_factor)
    runner.layerskip = None
    if options.draft_tokens > 0 and allow_layerskip:
        runner.layerskip = LayerSkipSettings(exit_layer, options.draft_tokens)
    runner.speculation = SpeculationStats()
    runner.prefill = full_step_fn(stack)
    runner.step = full_step_fn(stack)
    runner.draft_step = draft_step_fn(stack, exit_layer)
    runner.verify_step = verify_step_fn(stack, exit_layer)
    runner.step_names = ("step",) if runner.layerskip is None else ("step", "draft_step", "verify_step")


def decoder_metrics(runner: Any, rows: int, prompt_tokens: int) -> dict[str, float]:
    """The static numbers a decoder runner reports (llm, text_image): KV-cache bytes for ``rows``
    sequences of prompt + new tokens, token counts, and LayerSkip's acceptance when it is on."""
    out = {
        "kv_cache_bytes": float(
            runner.facts.kv_cache_bytes_per_token * rows * (prompt_tokens + runner.new_tokens)
        ),
        "prompt_tokens": float(prompt_tokens),
        "new_tokens": float(runner.new_tokens),
    }
    if runner.layerskip is not None:
        out["acceptance_rate"] = runner.speculation.acceptance_rate
        out["draft_tokens_count"] = float(runner.speculation.drafted)
    return out
