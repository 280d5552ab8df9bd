"""LLM text -> text (task ``t2t``): Code Llama with random weights, an explicit greedy loop.

Scales (``BuildOptions.scale``):

* ``tiny``: 4 layers x 256, GQA 4/2 heads, vocab 2048, 3 prompts of median ~32 tokens (max
  64), 16 new tokens each; a run takes well under a second on a 2-core CPU.
* ``small``: 12 layers x 768, vocab 32016 (~134M parameters), 4 HumanEval-like prompts, 64 new.
* ``paper``: Code Llama 7B (32 x 4096, FFN 11008, 32 heads, vocab 32016, rope theta 1e6).
* ``paper-34b``: Code Llama 34B (48 x 8192, FFN 22016, 64 heads, 8 KV heads, vocab 32000).

Inputs are synthetic token ids (uniform over the vocabulary, after BOS). One run answers
``prompts`` prompts, one after the other (each with its own prefill, so TTFT has one sample per
prompt); each prompt's length is a seeded draw from a log-normal fitted to HumanEval's prompt
lengths (median 134, max 430 tokens with the Code Llama tokenizer), scaled down for ``tiny``.
A batch shares each prompt's length, each row with its own ids, so no padding or attention
mask is needed (every row is a real prompt of the drawn length). New tokens per prompt: 358 at
paper scale (HumanEval's mean decode length), capped so the longest prompt + new <= 512.

Random weights use a larger ``init_std`` than the default 0.02 so that greedy output varies
instead of repeating one token; it shrinks with width to keep activations finite
in fp16 at paper scale. Speed depends on the shapes only, not on the values.

``BuildOptions.layerskip`` (typed, :class:`mmperf_levers.contract.LayerSkipOptions`):

* ``trained_factor`` (float in (0, 1], default 1.0): make the model "LayerSkip-trained-like"
  by multiplying the residual-branch output weights (``o_proj``, ``down_proj``) of layers
  >= the exit layer by this factor, so the early exit agrees with the full model most of the
  time. The acceptance rate of ``layerskip`` then is a workload parameter (smaller factor,
  higher acceptance). Set it for the baseline too, so both run the same model.
* ``exit_layer`` (default layers // 2) and ``draft_tokens`` (> 0, set by the ``layerskip``
  lever): decode by self-speculation instead of plain greedy.

Trained weights (``BuildOptions.pretrained``, from ``--mmperf-model=llm=...``): a Llama-style
checkpoint (the bundled SmolLM2-135M-Instruct, a Hugging Face folder or a GGUF file, see
:mod:`mmperf_suites.workloads.pretrained`) answers real prompts (the scale's HumanEval subset
or the user's JSONL, see :mod:`mmperf_suites.prompts`) through its tokenizer and chat
template, one prompt at a time, in the same decode loops; each answer stops at EOS, at the end
of its code block, or at the scale's cap (:class:`TrainedLlmRunner`). The model is used as it
is: ``trained_factor`` must stay 1.0, and LayerSkip's acceptance is what its early exit gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mmperf_levers.contract import BuildOptions, ModelFacts, Output, PhaseRecorder
from mmperf_suites.workloads import decoding
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import Cache

WORKLOAD = "llm"
TASKS = ("t2t",)


@dataclass(frozen=True)
class LlmConfig:
    layers: int
    hidden_size: int
    ffn_size: int
    heads: int
    kv_heads: int
    vocab_size: int
    rope_theta: float
    init_std: float  # std of the random weights (see module docstring)
    prompt_median_tokens: int
    prompt_max_tokens: int
    new_tokens: int  # per prompt
    max_total_tokens: int  # prompt + new never exceeds this (HumanEval runs cap at 512)
    describe_dtype: str  # the dtype ``describe`` reports weight bytes in
    prompts: int = 1  # prompts per run, lengths drawn from the distribution


SCALES: dict[str, LlmConfig] = {
    "tiny": LlmConfig(
        layers=4, hidden_size=256, ffn_size=688, heads=4, kv_heads=2, vocab_size=2048,
        rope_theta=1e6, init_std=0.3, prompt_median_tokens=32, prompt_max_tokens=64,
        new_tokens=16, max_total_tokens=128, describe_dtype="float32", prompts=3,
    ),
    "small": LlmConfig(
        layers=12, hidden_size=768, ffn_size=2048, heads=12, kv_heads=12, vocab_size=32016,
        rope_theta=1e6, init_std=0.15, prompt_median_tokens=134, prompt_max_tokens=430,
        new_tokens=64, max_total_tokens=512, describe_dtype="float32", prompts=4,
    ),
    "paper": LlmConfig(  # Code Llama 7B
        layers=32, hidden_size=4096, ffn_size=11008, heads=32, kv_heads=32, vocab_size=32016,
        rope_theta=1e6, init_std=0.05, prompt_median_tokens=134, prompt_max_tokens=430,
        new_tokens=358, max_total_tokens=512, describe_dtype="float16", prompts=3,
    ),
    "paper-34b": LlmConfig(  # Code Llama 34B
        layers=48, hidden_size=8192, ffn_size=22016, heads=64, kv_heads=8, vocab_size=32000,
        rope_theta=1e6, init_std=0.035, prompt_median_tokens=134, prompt_max_tokens=430,
        new_tokens=358, max_total_tokens=512, describe_dtype="float16", prompts=3,
    ),
}

BOS_ID = 1
FIRST_ORDINARY_ID = 3  # 0 unk, 1 BOS, 2 EOS: prompts use ordinary ids only


def hf_config(config: LlmConfig, attention: str) -> LlamaConfig:
    hf = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.ffn_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads,
        max_position_embeddings=max(config.max_total_tokens, 4096),
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        initializer_range=config.init_std,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=2,
    )
    hf._attn_implementation = attention
    return hf


def prompt_length(config: LlmConfig, seed: int) -> int:
    """One seeded draw from a log-normal with HumanEval's median, whose ~99.4th percentile (1 in
    164 problems) is the longest prompt."""
    sigma = math.log(config.prompt_max_tokens / config.prompt_median_tokens) / 2.5
    z = torch.randn((), generator=torch.Generator().manual_seed(seed)).item()
    length = round(config.prompt_median_tokens * math.exp(sigma * z))
    return max(4, min(length, config.prompt_max_tokens))


def synthetic_prompts(config: LlmConfig, batch: int, seed: int) -> list[torch.Tensor]:
    """``config.prompts`` prompts [B, P_k], each of its own drawn length."""
    return [synthetic_prompt(config, batch, seed + 7919 * k) for k in range(config.prompts)]


def synthetic_prompt(config: LlmConfig, batch: int, seed: int) -> torch.Tensor:
    """[B, P] token ids: BOS then uniform ordinary ids; one length for the whole batch."""
    length = prompt_length(config, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(FIRST_ORDINARY_ID, config.vocab_size, (batch, length - 1), generator=gen)
    return torch.cat([torch.full((batch, 1), BOS_ID), ids], dim=1)


def stack_of(model: LlamaForCausalLM) -> decoding.DecoderStack:
    return decoding.DecoderStack(
        embed=model.model.embed_tokens,
        layers=model.model.layers,
        norm=model.model.norm,
        rotary=model.model.rotary_emb,
        lm_head=model.lm_head,
        config=model.config,
    )


def facts_of(model: LlamaForCausalLM, config: LlmConfig, dtype: torch.dtype) -> ModelFacts:
    return decoding.decoder_facts(
        model,
        stack_of(model),
        heads=config.heads,
        kv_heads=config.kv_heads,
        context_tokens=config.prompt_median_tokens + config.new_tokens // 2,
        dtype=dtype,
    )


def describe(task: str, scale: str) -> ModelFacts:
    """Facts of the model at ``scale``, built on the meta device (no memory, any machine)."""
    check_task(task)
    config = SCALES[scale]
    dtype = getattr(torch, config.describe_dtype)
    with torch.device("meta"):
        model = LlamaForCausalLM._from_config(hf_config(config, "eager"), dtype=dtype)
    return facts_of(model, config, dtype)


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"llm has tasks {TASKS}, not {task!r}")


class LlmRunner:
    """A built Code Llama-like model and its fixed prompt; ``run`` is one measured inference."""

    workload = WORKLOAD

    def __init__(self, task: str, options: BuildOptions, config: LlmConfig) -> None:
        self.task = task
        self.options = options
        self.config = config
        dtype: torch.dtype = getattr(torch, options.dtype)
        device = torch.device(options.device)

        torch.manual_seed(options.seed)
        with device:
            self.model = LlamaForCausalLM._from_config(
                hf_config(config, options.attention), dtype=dtype
            ).eval()
        self.stack = stack_of(self.model)
        self.facts = facts_of(self.model, config, dtype)

        self.prompts = [p.to(device) for p in synthetic_prompts(config, options.batch_size, options.seed)]
        self.prompt = self.prompts[0]
        longest = max(p.shape[1] for p in self.prompts)
        self.new_tokens = min(config.new_tokens, config.max_total_tokens - longest)  # per prompt

        decoding.attach_steps(self, self.stack, config.layers, options.layerskip, allow_layerskip=True)
        self._static_cache: Cache | None = None

    def cache(self) -> Cache:
        """A KV cache for one run. The static one is allocated once and reset, so its buffers
        keep their addresses across runs (compiled graphs and CUDA graphs rely on that)."""
        slack = self.layerskip.draft_tokens if self.layerskip is not None else 0  # last round
        max_tokens = max(p.shape[1] for p in self.prompts) + self.new_tokens + slack
        if self.options.kv_cache != "static":
            return decoding.make_cache(self.options.kv_cache, self.model.config, max_tokens)
        if self._static_cache is None:
            self._static_cache = decoding.make_cache("static", self.model.config, max_tokens)
        self._static_cache.reset()
        return self._static_cache

    @torch.inference_mode()
    def run(self, phases: PhaseRecorder) -> Output:
        """Every prompt in turn; each row's tokens are its answers, concatenated."""
        self.speculation = decoding.SpeculationStats()
        answers = []
        for prompt in self.prompts:
            cache = self.cache()
            if self.layerskip is None:
                tokens = decoding.greedy_decode(
                    self.prefill, self.step, prompt, self.new_tokens, cache, phases
                )
            else:
                tokens = decoding.layerskip_decode(
                    self.prefill, self.draft_step, self.verify_step, self.layerskip,
                    prompt, self.new_tokens, cache, phases, self.speculation,
                )
            answers.append(tokens)
        return Output(tokens=torch.cat(answers, dim=1).tolist())

    @torch.inference_mode()
    def teacher_forced_logits(self, tokens: list[list[int]]) -> torch.Tensor:
        """Logits [B, len(tokens[b]), V] of this runner's own decode path (compiled step,
        static cache, quantized weights as its levers left them) forced along ``tokens`` (each
        prompt's answer in turn, as ``run`` concatenates them)."""
        continuation = torch.tensor(tokens, device=self.prompt.device)
        answers = continuation.split(self.new_tokens, dim=1)
        return torch.cat([
            decoding.teacher_forced_decode(self.prefill, self.step, prompt, answer, self.cache())
            for prompt, answer in zip(self.prompts, answers)
        ], dim=1)

    def metrics(self) -> dict[str, float]:
        batch = self.prompt.shape[0]
        longest = max(p.shape[1] for p in self.prompts)
        out = decoding.decoder_metrics(self, rows=batch, prompt_tokens=longest)
        out["prompt_tokens"] = sum(p.shape[1] for p in self.prompts) / len(self.prompts)  # mean
        out["new_tokens"] = float(self.new_tokens * len(self.prompts))  # per run
        out["prompts"] = float(len(self.prompts))
        return out


class TrainedLlmRunner(LlmRunner):
    """A trained Llama-style checkpoint answering real prompts, one after the other (batch 1).

    ``run`` returns one token list per prompt (``Output.tokens[k]`` = answer k, each as long as
    that answer ran: the work follows the output); ``answers`` of the last run are kept for the
    text and the token counts."""

    def __init__(self, task: str, options: BuildOptions, config: LlmConfig) -> None:
        from mmperf_suites import prompts as prompt_sources
        from mmperf_suites.workloads import pretrained

        pre = options.pretrained
        assert pre is not None
        if options.batch_size != 1:
            raise ValueError("the trained llm answers one prompt at a time: batch size 1")
        if options.layerskip.trained_factor != 1.0:
            raise ValueError("a trained model is used as it is: layerskip trained_factor must be 1.0")
        self.task = task
        self.options = options
        self.config = config
        dtype: torch.dtype = getattr(torch, options.dtype)
        device = torch.device(options.device)
        self.model, self.tokenizer = pretrained.load(pre, options.attention, dtype, device, seed=options.seed)
        if not hasattr(self.model, "model") or not hasattr(self.model.model, "layers"):
            raise ValueError(f"{pre.label}: not a Llama-style decoder (model.layers)")
        self.stack = stack_of(self.model)
        hf = self.model.config

        problems = (prompt_sources.read_jsonl(Path(pre.prompts)) if pre.prompts
                    else prompt_sources.humaneval(options.scale))
        self.problems = problems[: pre.problems] if pre.problems else problems
        self.prompts = [chat_ids(self.tokenizer, p.user_message()).to(device) for p in self.problems]
        self.prompt = self.prompts[0]
        cap = pre.max_new_tokens or prompt_sources.MAX_NEW_TOKENS.get(options.scale, 64)
        longest = max(p.shape[1] for p in self.prompts)
        self.new_tokens = min(cap, hf.max_position_embeddings - longest - 8)  # the cap per answer
        eos, fences = stop_ids(self.tokenizer, hf)
        self.stops = [decoding.StopRule(eos, fences, fences=2 if p.test is not None else 0)
                      for p in self.problems]
        mean_prompt = sum(p.shape[1] for p in self.prompts) // len(self.prompts)
        self.facts = decoding.decoder_facts(
            self.model, self.stack, heads=hf.num_attention_heads, kv_heads=hf.num_key_value_heads,
            context_tokens=mean_prompt + self.new_tokens // 2, dtype=dtype)
        decoding.attach_steps(self, self.stack, hf.num_hidden_layers, options.layerskip, allow_layerskip=True)
        self._static_cache = None
        self.answers: list[list[int]] = []

    @torch.inference_mode()
    def run(self, phases: PhaseRecorder) -> Output:
        self.speculation = decoding.SpeculationStats()
        answers = []
        for prompt, stop in zip(self.prompts, self.stops):
            cache = self.cache()
            if self.layerskip is None:
                tokens = decoding.greedy_decode(self.prefill, self.step, prompt, self.new_tokens, cache, phases,
                                                stop=stop)
            else:
                tokens = decoding.layerskip_decode(
                    self.prefill, self.draft_step, self.verify_step, self.layerskip,
                    prompt, self.new_tokens, cache, phases, self.speculation, stop=stop,
                )
            answers.append(tokens[0].tolist())
        self.answers = answers
        return Output(tokens=answers)

    @torch.inference_mode()
    def teacher_forced_logits(self, tokens: list[list[int]]) -> torch.Tensor:
        """Logits [1, sum of the answers' lengths, V]: this arm's decode path forced along each
        reference answer in turn (``tokens[k]`` answers prompt k)."""
        return torch.cat([
            decoding.teacher_forced_decode(self.prefill, self.step, prompt,
                                           torch.tensor([answer], device=prompt.device), self.cache())
            for prompt, answer in zip(self.prompts, tokens)
        ], dim=1)

    def text(self, answer: list[int]) -> str:
        return str(self.tokenizer.decode(answer, skip_special_tokens=True))

    def metrics(self) -> dict[str, float]:
        longest = max(p.shape[1] for p in self.prompts)
        out = decoding.decoder_metrics(self, rows=1, prompt_tokens=longest)
        out["prompt_tokens"] = sum(p.shape[1] for p in self.prompts) / len(self.prompts)  # mean
        out["new_tokens"] = float(sum(len(a) for a in self.answers))  # generated in the last run
        out["max_new_tokens"] = float(self.new_tokens)  # the cap per answer
        out["prompts"] = float(len(self.prompts))
        return out


def chat_ids(tokenizer: Any, message: str) -> torch.Tensor:
    """[1, P] ids of one user turn through the model's chat template (and the assistant's
    opening), or the plain text with BOS where the tokenizer has no template."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                            return_tensors="pt")
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        return torch.as_tensor(ids).reshape(1, -1)
    return torch.as_tensor(tokenizer(message, return_tensors="pt")["input_ids"]).reshape(1, -1)


def stop_ids(tokenizer: Any, hf: Any) -> tuple[frozenset[int], dict[int, int]]:
    """(end-of-sequence ids: the tokenizer's and the config's, ids whose text holds "```")."""
    eos: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(hf, "eos_token_id", None)):
        if isinstance(value, int):
            eos.add(value)
        elif isinstance(value, (list, tuple)):
            eos.update(int(v) for v in value)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    fences = {i: text.count("```") for i, text in enumerate(texts) if "```" in text}
    return frozenset(eos), fences


def build(task: str, options: BuildOptions) -> LlmRunner:
    check_task(task)
    if options.scale not in SCALES:
        raise ValueError(f"llm scales are {sorted(SCALES)}, not {options.scale!r}")
    if options.pretrained is not None:
        return TrainedLlmRunner(task, options, SCALES[options.scale])
    return LlmRunner(task, options, SCALES[options.scale])
