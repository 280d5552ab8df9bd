"""Text + image: Chameleon (early fusion) with random weights and explicit decode loops.

Tasks:

* ``i2t`` captioning: a synthetic seeded image -> VQ image tokenizer -> ``<boi> image <eoi>``
  + a short instruction -> greedy text (30 tokens at paper scale, as MSCOCO captions).
* ``it2t`` VQA: image + a question (~14 tokens) -> greedy text (10 tokens, as VizWiz answers).
* ``t2i`` text -> image: a short prompt + ``<boi>`` -> exactly one image's worth of image tokens
  (1024 at paper scale), sampled with top-p 0.9 from a seeded ``torch.Generator`` under
  3-stream classifier-free guidance (conditional, image-unconditional and unconditional rows
  run as one batch of 3 x batch_size). Sampling is restricted to the image-token ids; that is
  why this is an own loop: transformers' Chameleon masks image tokens out of its logits and
  ``generate`` could never produce an image.

Phases: ``image_tokenizer`` (VQ encode; not in ``t2i``), ``ttft`` (prefill + first token),
``tpot`` (each decode step). transformers' Chameleon has no image *decoder* (the VQ-GAN
decoder half is not ported), so ``t2i`` times token generation only, which is 99.9% of the
paper's text-to-image latency; the image tokens are returned, not decoded to pixels.

With a text-only prompt the image-unconditional row has the same content as the conditional
row (there is no input image to drop); it is still computed, as Chameleon's reference
inference always batches three rows, so the cost is the paper's. The unconditional row
replaces the prompt text by padding ids.

Text generation masks the image-token ids (as transformers' Chameleon does), so captions and
answers are text.

Scales: ``tiny`` (4 x 256, vocab 4096 incl. 256 image codes, a 32x32 image -> 64 tokens),
``small`` (12 x 768, vocab 65536, 256x256 -> 256 tokens), ``paper`` = Chameleon 7B (32 x
4096, FFN 11008, 32 heads, vocab 65536, 512x512 -> 1024 tokens), ``paper-34b`` = Chameleon 34B
(48 x 8192, FFN 22016, 64 heads, 8 KV heads). Vocabulary layout (ours, not Chameleon's
tokenizer): 0 pad, 1 BOS, 2 EOS, 3 ``<image>`` placeholder, then the image codes, then
``<boi>``, ``<eoi>``, then text ids. The image tokens are fed as ids (what
``get_image_features`` embeds), so the ``<image>`` placeholder path is not used.

``BuildOptions.layerskip`` (``trained_factor``, ``exit_layer``, ``draft_tokens``) as in
``mmperf_suites.workloads.llm`` (text tasks only: LayerSkip here is greedy, ``t2i`` samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from mmperf_levers.contract import BuildOptions, ModelFacts, Output, PhaseRecorder
from mmperf_suites.workloads import decoding
from transformers import ChameleonConfig, ChameleonForConditionalGeneration
from transformers.cache_utils import Cache

WORKLOAD = "text_image"
TASKS = ("i2t", "it2t", "t2i")

PAD_ID, BOS_ID, EOS_ID, IMAGE_PLACEHOLDER_ID = 0, 1, 2, 3
FIRST_IMAGE_ID = 4


@dataclass(frozen=True)
class ChameleonSizes:
    layers: int
    hidden_size: int
    ffn_size: int
    heads: int
    kv_heads: int
    vocab_size: int
    init_std: float  # random-weight std, larger than 0.02 so greedy output varies
    # VQ image tokenizer: a (resolution x resolution) image -> (resolution / 2^(levels-1))^2 codes
    image_resolution: int
    vq_base_channels: int
    vq_channel_multiplier: tuple[int, ...]
    vq_res_blocks: int
    vq_codes: int  # codebook size = number of image-token ids
    vq_embed_dim: int
    # tasks
    caption_instruction_tokens: int
    caption_new_tokens: int
    question_tokens: int
    answer_new_tokens: int
    t2i_prompt_tokens: int
    describe_dtype: str

    @property
    def image_tokens(self) -> int:
        side = self.image_resolution // 2 ** (len(self.vq_channel_multiplier) - 1)
        return side * side


SCALES: dict[str, ChameleonSizes] = {
    "tiny": ChameleonSizes(
        layers=4, hidden_size=256, ffn_size=688, heads=4, kv_heads=2, vocab_size=4096,
        init_std=0.3, image_resolution=32, vq_base_channels=32, vq_channel_multiplier=(1, 1, 2),
        vq_res_blocks=1, vq_codes=256, vq_embed_dim=32, caption_instruction_tokens=4,
        caption_new_tokens=12, question_tokens=8, answer_new_tokens=6, t2i_prompt_tokens=12,
        describe_dtype="float32",
    ),
    "small": ChameleonSizes(
        layers=12, hidden_size=768, ffn_size=2048, heads=12, kv_heads=12, vocab_size=65536,
        init_std=0.15, image_resolution=256, vq_base_channels=64,
        vq_channel_multiplier=(1, 1, 2, 2, 4), vq_res_blocks=1, vq_codes=8192, vq_embed_dim=256,
        caption_instruction_tokens=6, caption_new_tokens=30, question_tokens=14,
        answer_new_tokens=10, t2i_prompt_tokens=14, describe_dtype="float32",
    ),
    "paper": ChameleonSizes(  # Chameleon 7B
        layers=32, hidden_size=4096, ffn_size=11008, heads=32, kv_heads=32, vocab_size=65536,
        init_std=0.05, image_resolution=512, vq_base_channels=128,
        vq_channel_multiplier=(1, 1, 2, 2, 4), vq_res_blocks=2, vq_codes=8192, vq_embed_dim=256,
        caption_instruction_tokens=6, caption_new_tokens=30, question_tokens=14,
        answer_new_tokens=10, t2i_prompt_tokens=14, describe_dtype="float16",
    ),
    "paper-34b": ChameleonSizes(  # Chameleon 34B
        layers=48, hidden_size=8192, ffn_size=22016, heads=64, kv_heads=8, vocab_size=65536,
        init_std=0.035, image_resolution=512, vq_base_channels=128,
        vq_channel_multiplier=(1, 1, 2, 2, 4), vq_res_blocks=2, vq_codes=8192, vq_embed_dim=256,
        caption_instruction_tokens=6, caption_new_tokens=30, question_tokens=14,
        answer_new_tokens=10, t2i_prompt_tokens=14, describe_dtype="float16",
    ),
}

# Chameleon's reference text-to-image guidance scales and nucleus
TEXT_GUIDANCE = 3.0
IMAGE_GUIDANCE = 1.2
TOP_P = 0.9


def boi_id(sizes: ChameleonSizes) -> int:
    return FIRST_IMAGE_ID + sizes.vq_codes


def eoi_id(sizes: ChameleonSizes) -> int:
    return FIRST_IMAGE_ID + sizes.vq_codes + 1


def first_text_id(sizes: ChameleonSizes) -> int:
    return FIRST_IMAGE_ID + sizes.vq_codes + 2


def image_token_name(code: int) -> str:
    """Chameleon's vocabulary names image code 123 "IMGIMGBCDZ" (digits as letters A-J)."""
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


def hf_config(sizes: ChameleonSizes, attention: str) -> ChameleonConfig:
    vocabulary_map = {"<image>": IMAGE_PLACEHOLDER_ID}
    for code in range(sizes.vq_codes):
        vocabulary_map[image_token_name(code)] = FIRST_IMAGE_ID + code
    hf = ChameleonConfig(
        vocab_size=sizes.vocab_size,
        hidden_size=sizes.hidden_size,
        intermediate_size=sizes.ffn_size,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.kv_heads,
        max_position_embeddings=4096,
        initializer_range=sizes.init_std,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        vocabulary_map=vocabulary_map,
        vq_config={
            "embed_dim": sizes.vq_embed_dim,
            "num_embeddings": sizes.vq_codes,
            "latent_channels": sizes.vq_embed_dim,
            "resolution": sizes.image_resolution,
            "base_channels": sizes.vq_base_channels,
            "channel_multiplier": list(sizes.vq_channel_multiplier),
            "num_res_blocks": sizes.vq_res_blocks,
        },
    )
    hf._attn_implementation = attention
    return hf


def stack_of(model: ChameleonForConditionalGeneration) -> decoding.DecoderStack:
    return decoding.DecoderStack(
        embed=model.model.embed_tokens,
        layers=model.model.layers,
        norm=model.model.norm,
        rotary=model.model.rotary_emb,
        lm_head=model.lm_head,
        config=model.config,
    )


def facts_of(
    model: ChameleonForConditionalGeneration, sizes: ChameleonSizes, dtype: torch.dtype
) -> ModelFacts:
    return decoding.decoder_facts(
        model,
        stack_of(model),
        heads=sizes.heads,
        kv_heads=sizes.kv_heads,
        context_tokens=sizes.image_tokens + sizes.question_tokens,
        dtype=dtype,
    )


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"text_image has tasks {TASKS}, not {task!r}")


def describe(task: str, scale: str) -> ModelFacts:
    """Facts of Chameleon at ``scale`` (decoder + VQ tokenizer), built on the meta device."""
    check_task(task)
    sizes = SCALES[scale]
    dtype = getattr(torch, sizes.describe_dtype)
    with torch.device("meta"):
        model = ChameleonForConditionalGeneration._from_config(
            hf_config(sizes, "eager"), dtype=dtype
        )
    return facts_of(model, sizes, dtype)


def text_ids(sizes: ChameleonSizes, batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """[B, length] uniform ids from the text part of the vocabulary."""
    return torch.randint(first_text_id(sizes), sizes.vocab_size, (batch, length), generator=gen)


class ChameleonRunner:
    """A built Chameleon-like model, its fixed seeded inputs, and one task's decode loop."""

    workload = WORKLOAD

    def __init__(self, task: str, options: BuildOptions, sizes: ChameleonSizes) -> None:
        self.task = task
        self.options = options
        self.sizes = sizes
        self.device = torch.device(options.device)
        dtype: torch.dtype = getattr(torch, options.dtype)

        torch.manual_seed(options.seed)
        with self.device:
            self.model = ChameleonForConditionalGeneration._from_config(
                hf_config(sizes, options.attention), dtype=dtype
            ).eval()
        self.stack = stack_of(self.model)
        self.facts = facts_of(self.model, sizes, dtype)

        batch = options.batch_size
        gen = torch.Generator().manual_seed(options.seed + 1)
        side = sizes.image_resolution
        # pixel values in [-1, 1], as Chameleon's image processor produces: [B, 3, H, W]
        self.pixels = (torch.rand((batch, 3, side, side), generator=gen) * 2 - 1).to(
            self.device, dtype
        )
        # i2t / it2t: BOS <boi> image <eoi> text_after; t2i: the three guidance streams
        self.text_after: torch.Tensor | None = None  # [B, T] instruction or question
        self.streams: torch.Tensor | None = None  # [3B, P] cond, image-uncond, uncond rows
        if task == "i2t":
            self.text_after = text_ids(sizes, batch, sizes.caption_instruction_tokens, gen)
            self.new_tokens = sizes.caption_new_tokens
        elif task == "it2t":
            self.text_after = text_ids(sizes, batch, sizes.question_tokens, gen)
            self.new_tokens = sizes.answer_new_tokens
        else:
            prompt = torch.cat(
                [
                    torch.full((batch, 1), BOS_ID),
                    text_ids(sizes, batch, sizes.t2i_prompt_tokens, gen),
                    torch.full((batch, 1), boi_id(sizes)),
                ],
                dim=1,
            )
            unconditional = prompt.clone()
            unconditional[:, 1:-1] = PAD_ID
            self.streams = torch.cat([prompt, prompt, unconditional], dim=0).to(self.device)
            self.new_tokens = sizes.image_tokens
        if self.text_after is not None:
            self.text_after = self.text_after.to(self.device)

        vocab_ids = torch.arange(sizes.vocab_size, device=self.device)
        is_image = (vocab_ids >= FIRST_IMAGE_ID) & (vocab_ids < FIRST_IMAGE_ID + sizes.vq_codes)
        self.image_ids = vocab_ids[is_image]  # [vq_codes] the ids t2i may sample
        # text tasks: image ids may not be generated (transformers' Chameleon masks them too)
        self.text_bias = torch.zeros(sizes.vocab_size, device=self.device, dtype=dtype)
        self.text_bias[is_image] = float("-inf")

        # t2i samples (top-p) rather than decoding greedily: no self-speculation there
        decoding.attach_steps(self, self.stack, sizes.layers, options.layerskip, allow_layerskip=task != "t2i")
        self.prompt_tokens = self.prompt_length()
        self._static_cache: Cache | None = None

    def prompt_length(self) -> int:
        if self.streams is not None:
            return self.streams.shape[1]
        assert self.text_after is not None
        return 3 + self.sizes.image_tokens + self.text_after.shape[1]  # BOS <boi> .. <eoi> ..

    def cache(self) -> Cache:
        """One run's KV cache; the static one is allocated once and reset (stable addresses)."""
        slack = self.layerskip.draft_tokens if self.layerskip is not None else 0  # last round
        max_tokens = self.prompt_tokens + self.new_tokens + slack
        if self.options.kv_cache != "static":
            return decoding.make_cache(self.options.kv_cache, self.model.config, max_tokens)
        if self._static_cache is None:
            self._static_cache = decoding.make_cache("static", self.model.config, max_tokens)
        self._static_cache.reset()
        return self._static_cache

    def image_prompt(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """[B, P]: BOS <boi> image tokens <eoi> instruction/question."""
        assert self.text_after is not None
        batch = image_tokens.shape[0]
        bos = torch.full((batch, 1), BOS_ID, device=self.device)
        boi = torch.full((batch, 1), boi_id(self.sizes), device=self.device)
        eoi = torch.full((batch, 1), eoi_id(self.sizes), device=self.device)
        return torch.cat([bos, boi, image_tokens, eoi, self.text_after], dim=1)

    @torch.inference_mode()
    def run(self, phases: PhaseRecorder) -> Output:
        cache = self.cache()
        if self.streams is not None:  # t2i
            generator = torch.Generator(device=self.device).manual_seed(self.options.seed)
            tokens = decoding.cfg_sample_decode(
                self.prefill, self.step, self.streams, self.new_tokens, cache, phases,
                allowed_ids=self.image_ids, text_guidance=TEXT_GUIDANCE,
                image_guidance=IMAGE_GUIDANCE, top_p=TOP_P, generator=generator,
            )
            return Output(tokens=tokens.tolist(), extra={"image_tokens": tokens.shape[1]})

        with phases.phase("image_tokenizer"):
            image_tokens = self.model.model.get_image_tokens(self.pixels)  # [B, image_tokens]
        prompt = self.image_prompt(image_tokens)
        if self.layerskip is None:
            tokens = decoding.greedy_decode(
                self.prefill, self.step, prompt, self.new_tokens, cache, phases, self.text_bias
            )
        else:
            self.speculation = decoding.SpeculationStats()
            tokens = decoding.layerskip_decode(
                self.prefill, self.draft_step, self.verify_step, self.layerskip,
                prompt, self.new_tokens, cache, phases, self.speculation, self.text_bias,
            )
        return Output(tokens=tokens.tolist())

    @torch.inference_mode()
    def teacher_forced_logits(self, tokens: list[list[int]]) -> torch.Tensor:
        """Logits [B, len, V] of this runner's own decode path (compiled step, static cache,
        quantized weights as its levers left them) forced along ``tokens``; for t2i all three
        guidance streams are fed the tokens and the conditional rows' raw logits are returned."""
        continuation = torch.tensor(tokens, device=self.device)
        if self.streams is not None:
            batch = self.options.batch_size
            logits = decoding.teacher_forced_decode(
                self.prefill, self.step, self.streams, continuation.repeat(3, 1), self.cache()
            )
            return logits[:batch]
        prompt = self.image_prompt(self.model.model.get_image_tokens(self.pixels))
        return decoding.teacher_forced_decode(self.prefill, self.step, prompt, continuation, self.cache())

    def metrics(self) -> dict[str, float]:
        rows = 3 * self.options.batch_size if self.task == "t2i" else self.options.batch_size
        return decoding.decoder_metrics(self, rows=rows, prompt_tokens=self.prompt_tokens)


def build(task: str, options: BuildOptions) -> ChameleonRunner:
    check_task(task)
    if options.scale not in SCALES:
        raise ValueError(f"text_image scales are {sorted(SCALES)}, not {options.scale!r}")
    return ChameleonRunner(task, options, SCALES[options.scale])
