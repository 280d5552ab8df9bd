"""Speech translation (SeamlessM4T v2) with random weights: tasks ``s2st``, ``s2tt``, ``t2st``,
``t2tt``, run as explicit stages so that each one is timed at its own boundary.

Stages and the phase each records (one sample per run):

* ``speech_encoder`` (s2*) or ``text_encoder`` (t2*): the Conformer speech encoder + length
  adaptor on fbank features, or the NLLB text encoder on source token ids;
* ``text_decoder``: beam search (beam 5, as in the paper) over the NLLB text decoder, including
  the cross-attention KV computed on its first step and the per-step beam KV-cache reorder;
* ``t2u`` (x2st only): the text decoder's hidden states of the chosen sequence (transformers
  recomputes them with one decoder pass), subword -> character ids, and the non-autoregressive
  text-to-unit model (UnitY2: character upsampling, duration prediction, unit decoder);
* ``vocoder`` (x2st only): the unit HiFi-GAN, units -> 16 kHz waveform.

The stages mirror ``SeamlessM4Tv2Model.generate`` but call its submodules directly (no forward
hooks, which distorted timings when measured), and run the speech encoder once where
``generate`` runs it twice.

Beam search is our own loop (``beam_search``) rather than ``generate``: the per-step decoder
forward is then a plain function (``runner.step``) that levers can compile, and each run decodes
exactly ``new_tokens`` tokens: control symbols (pad, unk, bos, eos) are suppressed on the log
probabilities, as ``generate(..., suppress_tokens=[0, 1, 2], min_new_tokens=N,
max_new_tokens=N)`` does, with which it agrees token for token (see the tests). A random model
would otherwise stop at arbitrary points; the paper's FLEURS runs emit ~35 tokens.

Random-weight guards (speed depends on shapes, not values):

* the generation config gets synthetic language tables, ``id_to_text`` and ``char_to_id``
  (transformers' own tests patch it the same way); every token id spells a fixed 1-5 letter
  subword, so a token has ~3.5 characters on average, about what NLLB's subwords have;
* both duration predictors are pinned (zero weights, constant bias): the T2U predicts
  ``units_per_char`` units per character (speech at ~14 characters/s and 50 units/s gives ~3.5)
  and the vocoder 1 frame per unit; a random predictor would give arbitrary lengths;
* T2U unit logits are restricted to real unit ids, since control ids would index outside the
  vocoder's unit table after its offset.

The vocoder carries weight norm, as the released checkpoint and fairseq2's model do
(transformers builds it without; ``apply_weight_norm`` adds it), so that folding it
(``remove_weight_norm``) is a lever.

Scales: ``tiny`` (2.4M parameters, a run in 50-130 ms on one CPU thread), ``small`` (29M,
FLEURS-length inputs: 493 fbank frames, 35 new tokens) and
``paper`` = SeamlessM4T v2 Large: transformers' default ``SeamlessM4Tv2Config`` is that model's
config (24-layer text encoder/decoder and Conformer speech encoder at width 1024, FFN 8192, NLLB
vocabulary 256102, 6+6-layer T2U, HiFi-GAN at 512 channels): 2.309B parameters, the published
2.3B. ``describe`` reports the whole model for every task, as the paper loads the whole model.

Levers read here: ``options.attention`` (eager | sdpa: all Seamless attention goes through
transformers' attention interface, sdpa included), ``inplace_beam_reorder``,
``remove_weight_norm`` and ``kv_cache``:

* ``"dynamic"``: transformers' ``EncoderDecoderCache`` of two ``DynamicCache``, grown by one
  position per step, reordered by ``index_select`` (or in place: ``InPlaceReorderCache``);
* ``"static"`` (the paper's Seamless lever 2, as in the "Seamless M4T, fast" port):
  ``StaticBeamCache`` preallocates the self-attention K/V for prefix + new tokens and the
  cross-attention K/V for ``encoder_capacity`` frames (the encoder output padded and masked);
  a step writes its K/V at a cache position held in a device tensor, attends over the whole
  fixed length with a mask, and first reorders the beams in place (one gather into a
  preallocated buffer and one ``copy_`` back). Every step then has the same shapes and buffer
  addresses, and every task (up to ``encoder_capacity`` frames) the same step graph: one
  compiled graph (one CUDA graph) serves them all. The decoder step runs the layers' own
  modules (``static_decoder_forward``); beams are identical to the dynamic cache's.

``step_names`` (what the ``compile`` lever compiles): ``step`` over the static cache only (the
dynamic cache changes shape every step, so compiling it only recompiles), and ``vocoder_net``
(the HiFi-GAN convolution stack, fixed shapes for given units) on speaking tasks once
``remove_weight_norm`` has folded its weight norm.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from mmperf_levers.contract import BuildOptions, ModelFacts, Output, PhaseRecorder
from torch import nn
from torch.nn.utils import parametrize
from transformers import DynamicCache, EncoderDecoderCache, SeamlessM4Tv2Config, SeamlessM4Tv2Model
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import (
    _compute_new_attention_mask,
    eager_attention_forward,
)

WORKLOAD = "speech"
TASKS = ("s2st", "s2tt", "t2st", "t2tt")

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3  # NLLB control symbols; EOS also starts decoding
CONTROL_IDS = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
SOURCE_LANG, TARGET_LANG = "eng", "spa"  # FLEURS en -> es, as in the paper
UNIT_CONTROL_SYMBOLS = 4  # t2u ids 0..3 are bos/pad/eos/unk; vocoder units are offset by 4
SPEAKER_ID = 0


@dataclass(frozen=True)
class SpeechConfig:
    hidden_size: int
    heads: int
    text_encoder_layers: int
    text_decoder_layers: int
    ffn_size: int  # text encoder and decoder FFN
    speech_encoder_layers: int
    speech_encoder_ffn_size: int
    vocab_size: int  # NLLB text vocabulary, language tokens at the end
    t2u_encoder_layers: int
    t2u_decoder_layers: int
    t2u_ffn_size: int
    t2u_duration_hidden: int  # T2U duration predictor width
    unit_vocab_size: int  # vocoder unit table (T2U vocabulary = this + control + languages)
    char_vocab_size: int
    vocoder_channels: int  # HiFi-GAN upsample_initial_channel
    unit_embed_dim: int  # vocoder unit embedding
    vocoder_cond_dim: int  # vocoder language and speaker embeddings
    vocoder_langs: int
    vocoder_speakers: int
    init_std: float  # std of random Linear/Embedding weights
    fbank_frames: int  # speech input: 80-dim fbanks stacked x2 = 160 features per frame
    source_tokens: int  # text input, incl. source language tag and EOS
    new_tokens: int  # text tokens decoded per utterance
    beam_size: int
    units_per_char: int  # T2U duration (see module docstring)
    # static KV cache: cross-attention K/V padded to this many encoder frames (masked), so that
    # every task and utterance up to this length runs the same compiled decoder step
    encoder_capacity: int
    describe_dtype: str


SCALES: dict[str, SpeechConfig] = {
    "tiny": SpeechConfig(
        hidden_size=128, heads=4, text_encoder_layers=2, text_decoder_layers=2, ffn_size=256,
        speech_encoder_layers=2, speech_encoder_ffn_size=128, vocab_size=1024,
        t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_ffn_size=128, t2u_duration_hidden=32,
        unit_vocab_size=128, char_vocab_size=64, vocoder_channels=32, unit_embed_dim=32,
        vocoder_cond_dim=8, vocoder_langs=4, vocoder_speakers=4, init_std=0.1,
        fbank_frames=160, source_tokens=16, new_tokens=16, beam_size=5, units_per_char=1,
        encoder_capacity=24, describe_dtype="float32",
    ),
    "small": SpeechConfig(
        hidden_size=256, heads=4, text_encoder_layers=4, text_decoder_layers=4, ffn_size=1024,
        speech_encoder_layers=4, speech_encoder_ffn_size=512, vocab_size=32000,
        t2u_encoder_layers=2, t2u_decoder_layers=2, t2u_ffn_size=1024, t2u_duration_hidden=128,
        unit_vocab_size=1000, char_vocab_size=1000, vocoder_channels=128, unit_embed_dim=256,
        vocoder_cond_dim=64, vocoder_langs=36, vocoder_speakers=200, init_std=0.05,
        fbank_frames=493, source_tokens=32, new_tokens=35, beam_size=5, units_per_char=3,
        encoder_capacity=64, describe_dtype="float32",
    ),
    "paper": SpeechConfig(  # SeamlessM4T v2 Large (= transformers' default config)
        hidden_size=1024, heads=16, text_encoder_layers=24, text_decoder_layers=24,
        ffn_size=8192, speech_encoder_layers=24, speech_encoder_ffn_size=4096,
        vocab_size=256102, t2u_encoder_layers=6, t2u_decoder_layers=6, t2u_ffn_size=8192,
        t2u_duration_hidden=256, unit_vocab_size=10000, char_vocab_size=10943,
        vocoder_channels=512, unit_embed_dim=1280, vocoder_cond_dim=256, vocoder_langs=36,
        vocoder_speakers=200, init_std=0.02, fbank_frames=493, source_tokens=32, new_tokens=35,
        beam_size=5, units_per_char=3, encoder_capacity=64, describe_dtype="float16",
    ),
}


def hf_config(config: SpeechConfig) -> SeamlessM4Tv2Config:
    return SeamlessM4Tv2Config(
        vocab_size=config.vocab_size,
        # 10082 at paper scale: units + 4 control symbols + 78 T2U languages
        t2u_vocab_size=config.unit_vocab_size + 82,
        char_vocab_size=config.char_vocab_size,
        hidden_size=config.hidden_size,
        initializer_range=config.init_std,
        encoder_layers=config.text_encoder_layers,
        encoder_ffn_dim=config.ffn_size,
        encoder_attention_heads=config.heads,
        decoder_layers=config.text_decoder_layers,
        decoder_ffn_dim=config.ffn_size,
        decoder_attention_heads=config.heads,
        speech_encoder_layers=config.speech_encoder_layers,
        speech_encoder_attention_heads=config.heads,
        speech_encoder_intermediate_size=config.speech_encoder_ffn_size,
        t2u_encoder_layers=config.t2u_encoder_layers,
        t2u_encoder_ffn_dim=config.t2u_ffn_size,
        t2u_encoder_attention_heads=config.heads,
        t2u_decoder_layers=config.t2u_decoder_layers,
        t2u_decoder_ffn_dim=config.t2u_ffn_size,
        t2u_decoder_attention_heads=config.heads,
        t2u_variance_predictor_embed_dim=config.hidden_size,
        t2u_variance_predictor_hidden_dim=config.t2u_duration_hidden,
        upsample_initial_channel=config.vocoder_channels,
        unit_hifi_gan_vocab_size=config.unit_vocab_size,
        unit_embed_dim=config.unit_embed_dim,
        lang_embed_dim=config.vocoder_cond_dim,
        spkr_embed_dim=config.vocoder_cond_dim,
        vocoder_num_langs=config.vocoder_langs,
        vocoder_num_spkrs=config.vocoder_speakers,
    )


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"speech has tasks {TASKS}, not {task!r}")


def speaks(task: str) -> bool:
    """x2st tasks end in speech (T2U + vocoder); x2tt tasks end with the text."""
    return task.endswith("st")


# ----------------------------------------------------------------------------------------------
# Facts


def decoder_kv_bytes_per_token(config: SpeechConfig, dtype: torch.dtype) -> int:
    """Self-attention K and V of every text decoder layer, one token of one beam."""
    return 2 * config.text_decoder_layers * config.hidden_size * dtype.itemsize


def encoder_frames(config: SpeechConfig, task: str) -> int:
    """Encoder output length: the speech adaptor pools fbank frames by 8 (kernel 8, pad 4)."""
    if task.startswith("s2"):
        return config.fbank_frames // 8 + 1
    return config.source_tokens


def facts_of(model: SeamlessM4Tv2Model, config: SpeechConfig, dtype: torch.dtype) -> ModelFacts:
    """FLOPs per token are the text decoder's (the autoregressive stage): 2 x its matmul
    weights + LM head, plus self-attention at the mean decoded length and cross-attention over
    the speech encoder's output (4 x context x hidden per layer each)."""
    decoder_matmul = sum(
        m.weight.numel() for m in model.text_decoder.layers.modules() if isinstance(m, nn.Linear)
    )
    context = 2 + config.new_tokens // 2
    attention = 4 * config.hidden_size * config.text_decoder_layers * (
        context + encoder_frames(config, "s2st")
    )
    parameters = sum(p.numel() for p in model.parameters())
    return ModelFacts(
        parameters=parameters,
        weight_bytes=parameters * dtype.itemsize,
        flops_per_token=float(2 * (decoder_matmul + model.lm_head.weight.numel()) + attention),
        layers=config.text_decoder_layers,
        hidden_size=config.hidden_size,
        kv_cache_bytes_per_token=decoder_kv_bytes_per_token(config, dtype),
    )


def describe(task: str, scale: str) -> ModelFacts:
    """Facts of the whole model at ``scale``, built on the meta device."""
    check_task(task)
    config = SCALES[scale]
    dtype = getattr(torch, config.describe_dtype)
    with torch.device("meta"):
        model = SeamlessM4Tv2Model._from_config(hf_config(config), dtype=dtype)
    return facts_of(model, config, dtype)


# ----------------------------------------------------------------------------------------------
# Random-weight set-up


def patch_generation_config(model: SeamlessM4Tv2Model, config: SpeechConfig) -> None:
    """Language tables and the subword/character maps the released generation config carries
    (the T2U needs characters); see the module docstring."""
    letters = string.ascii_lowercase
    id_to_text = {}
    for token in range(config.vocab_size):
        word = "".join(letters[(token * 7 + j) % 26] for j in range(1 + token % 5))
        id_to_text[str(token)] = ("▁" + word) if token % 3 == 0 else word
    gen = model.generation_config
    gen.text_decoder_lang_to_code_id = {
        SOURCE_LANG: config.vocab_size - 2, TARGET_LANG: config.vocab_size - 1,
    }
    gen.t2u_lang_code_to_id = {TARGET_LANG: config.unit_vocab_size + UNIT_CONTROL_SYMBOLS}
    gen.vocoder_lang_code_to_id = {TARGET_LANG: 0}
    gen.id_to_text = id_to_text
    # ids 0-3 stay free for control symbols, as in the released map
    gen.char_to_id = {c: UNIT_CONTROL_SYMBOLS + i for i, c in enumerate("▁" + letters)}


def pin_durations(model: SeamlessM4Tv2Model, units_per_char: int) -> None:
    """Duration predictors output log(1 + d): pin d to ``units_per_char`` (T2U) and 1 (vocoder)."""
    for predictor, duration in (
        (model.t2u_model.model.decoder.duration_predictor, units_per_char),
        (model.vocoder.dur_predictor, 1),
    ):
        predictor.proj.weight.zero_()
        predictor.proj.bias.fill_(math.log1p(duration))


def fold_weight_norm(vocoder: nn.Module) -> int:
    """Replace every weight-norm parametrization by the plain weight it computes (g * v / |v|),
    so convolutions stop recomputing it on every call. Returns how many were folded.
    (transformers' own ``remove_weight_norm`` handles only the legacy hook form.)"""
    folded = 0
    for module in vocoder.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            folded += 1
    return folded


# ----------------------------------------------------------------------------------------------
# Beam search and its KV-cache reorder


class InPlaceReorderCache(EncoderDecoderCache):
    """The paper's beam-search KV-cache reorder, done in place.

    transformers' ``reorder_cache`` rebinds every layer's K and V, self- *and* cross-attention,
    to a new tensor made by ``index_select``. Here

    * the cross-attention cache is left alone: beam search only moves hypotheses within one
      utterance's beams, whose cross-attention K/V rows are identical (the encoder output is
      repeated per beam), so reordering them is a no-op that costs a full copy per layer;
    * self-attention K/V are updated in place with ``index_copy_``, and only in the rows whose
      hypothesis moved (a beam that extends its own history keeps its row as it is); the
      storage keeps its address (what a static cache and CUDA graphs need), as in Seamless'
      fast path. Finding the moved rows (``nonzero``) synchronizes with a GPU once per step.
    """

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        rows = torch.arange(beam_idx.shape[0], device=beam_idx.device)
        moved = (beam_idx != rows).nonzero().squeeze(1)  # [M] rows that take another's history
        if moved.numel() == 0:
            return
        sources = beam_idx[moved]  # [M]
        for layer in self.self_attention_cache.layers:
            if layer.get_seq_length() > 0:
                # index_select makes a copy of the M source rows first, so overlapping
                # sources and destinations cannot read half-written rows
                layer.keys.index_copy_(0, moved, layer.keys.index_select(0, sources))
                layer.values.index_copy_(0, moved, layer.values.index_select(0, sources))


def make_cache(config: SeamlessM4Tv2Config, inplace_reorder: bool) -> EncoderDecoderCache:
    cls = InPlaceReorderCache if inplace_reorder else EncoderDecoderCache
    return cls(DynamicCache(config=config), DynamicCache(config=config))


# step(input_ids [B*K, T], encoder_hidden [B*K, S, D], cache) -> last position's logits [B*K, V]
StepFn = Callable[[torch.Tensor, torch.Tensor, EncoderDecoderCache], torch.Tensor]


def decoder_step_fn(model: SeamlessM4Tv2Model) -> StepFn:
    """The text decoder + LM head for the last position: the function levers compile."""

    def step(
        input_ids: torch.Tensor,  # [B*K, T]
        encoder_hidden: torch.Tensor,  # [B*K, S, D]
        cache: EncoderDecoderCache,
    ) -> torch.Tensor:  # [B*K, V]
        hidden = model.text_decoder(
            input_ids=input_ids, encoder_hidden_states=encoder_hidden, cache=cache, use_cache=True
        ).last_hidden_state  # [B*K, T, D]
        return model.lm_head(hidden[:, -1])

    return step


def hifi_gan_fn(model: SeamlessM4Tv2Model) -> Callable[[torch.Tensor], torch.Tensor]:
    """The vocoder's HiFi-GAN convolution stack, conditioned frames [B, C, F] -> waveform
    [B, samples]: the static-shaped part of the vocoder, the function levers compile."""

    def vocoder_net(conditioned: torch.Tensor) -> torch.Tensor:
        return model.vocoder.hifi_gan(conditioned)

    return vocoder_net


def beam_search(
    prefill: StepFn,
    step: StepFn,
    prefix: torch.Tensor,  # [B, P]: EOS (decoder start) + target language tag
    encoder_hidden: torch.Tensor,  # [B, S, D]
    beam_size: int,
    new_tokens: int,
    suppressed_ids: tuple[int, ...],
    cache: EncoderDecoderCache,
) -> torch.Tensor:  # [B, new_tokens]: the best hypothesis per utterance
    """Fixed-length beam search (no hypothesis finishes: EOS is suppressed). Each step keeps
    the ``beam_size`` best continuations over all beams x vocabulary by summed log
    probability, then reorders the KV cache so row j holds the history of new beam j."""
    batch, prefix_len = prefix.shape
    device = prefix.device
    sequences = prefix.repeat_interleave(beam_size, dim=0)  # [B*K, P]
    encoder_hidden = encoder_hidden.repeat_interleave(beam_size, dim=0)  # [B*K, S, D]
    scores = torch.zeros(batch, beam_size, device=device)  # [B, K] summed log probs
    scores[:, 1:] = -1e9  # all beams start equal: let only beam 0 expand on the first step
    row_base = (torch.arange(batch, device=device) * beam_size).unsqueeze(1)  # [B, 1]
    suppressed = torch.tensor(suppressed_ids, device=device)

    logits = prefill(sequences, encoder_hidden, cache)  # [B*K, V]
    for i in range(new_tokens):
        if i > 0:
            logits = step(sequences[:, -1:], encoder_hidden, cache)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # [B*K, V]
        log_probs[:, suppressed] = -math.inf
        vocab = log_probs.shape[-1]
        total = (log_probs.view(batch, beam_size, vocab) + scores.unsqueeze(-1)).view(batch, -1)
        scores, flat = total.topk(beam_size, dim=1)  # [B, K] over K x V candidates
        beam_idx = (row_base + flat // vocab).view(-1)  # [B*K] source row of each new beam
        sequences = torch.cat([sequences[beam_idx], (flat % vocab).view(-1, 1)], dim=1)
        if i < new_tokens - 1:
            cache.reorder_cache(beam_idx)
    best = scores.argmax(dim=1)  # [B]
    rows = torch.arange(batch, device=device)
    return sequences.view(batch, beam_size, -1)[rows, best, prefix_len:]


# ----------------------------------------------------------------------------------------------
# Static KV cache: the paper's Seamless lever 2 (what makes torch.compile and CUDA graphs apply)


class StaticBeamCache(nn.Module):
    """The text decoder's KV cache for one beam search, preallocated once per runner.

    Every tensor keeps its shape and address for the whole search (and every later search),
    so one compiled decoder step (one CUDA graph) serves every step:

    * ``self_kv`` [2, L, N, H, T, Dh]: self-attention K and V of the N = batch x beams rows
      over the T = prefix + new tokens positions; step t writes position t (a device tensor);
    * ``cross_kv`` [2, L, N, H, S, Dh]: cross-attention K and V of the encoder output padded
      to S = ``encoder_capacity`` frames, written once per utterance by the prefill;
    * ``cross_mask`` [N, 1, 1, S]: additive, 0 on real frames and the dtype's minimum on padding;
    * ``scratch`` [2, L, N, H, T, Dh]: the gather target of the in-place beam reorder.

    Buffers (not plain attributes) and ``mark_static_address``: CUDA graphs then treat them as
    fixed inputs that the step may mutate, as transformers' own ``StaticCache`` does.
    """

    self_kv: torch.Tensor
    scratch: torch.Tensor
    cross_kv: torch.Tensor
    cross_mask: torch.Tensor

    def __init__(
        self, layers: int, rows: int, heads: int, positions: int, frames: int, head_dim: int,
        dtype: torch.dtype, device: torch.device,
    ) -> None:
        super().__init__()
        kv_shape = (2, layers, rows, heads, positions, head_dim)
        for name, shape in (
            ("self_kv", kv_shape),
            ("scratch", kv_shape),
            ("cross_kv", (2, layers, rows, heads, frames, head_dim)),
            ("cross_mask", (rows, 1, 1, frames)),
        ):
            buffer = torch.zeros(shape, dtype=dtype, device=device)
            torch._dynamo.mark_static_address(buffer)
            self.register_buffer(name, buffer, persistent=False)

    def reorder(self, beam_idx: torch.Tensor) -> None:  # beam_idx [N]: source row of each row
        """In place: row j takes row ``beam_idx[j]``'s history, K and V of every layer in one
        gather into ``scratch`` and one ``copy_`` back (no tensor allocated; the gather needs a
        second buffer because sources and destinations overlap). The cross-attention K/V are
        equal across one utterance's beams and are not reordered."""
        torch.index_select(self.self_kv, 2, beam_idx, out=self.scratch)
        self.self_kv.copy_(self.scratch)


def attend(
    module: nn.Module,  # a SeamlessM4Tv2Attention: its projections, scaling and attention kind
    hidden: torch.Tensor,  # [N, Tq, D] queries' input
    keys: torch.Tensor,  # [N, H, Tk, Dh]
    values: torch.Tensor,  # [N, H, Tk, Dh]
    mask: torch.Tensor,  # additive, broadcast to [N, H, Tq, Tk]
) -> torch.Tensor:  # [N, Tq, D]
    """Attention over fixed-length K/V through transformers' own attention functions (eager or
    sdpa, as the model was built), so the static path computes what the dynamic one does."""
    batch, length, _ = hidden.shape
    query = module.q_proj(hidden).view(batch, length, -1, module.head_dim).transpose(1, 2)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(
        module.config._attn_implementation, eager_attention_forward
    )
    out, _ = attention(module, query, keys, values, mask, dropout=0.0, scaling=module.scaling)
    return module.out_proj(out.reshape(batch, length, -1))  # out [N, Tq, H, Dh]


def project_kv(module: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V [N, H, T, Dh] of ``hidden`` [N, T, D]."""
    batch, length, _ = hidden.shape
    shape = (batch, length, -1, module.head_dim)
    keys = module.k_proj(hidden).view(shape).transpose(1, 2)
    values = module.v_proj(hidden).view(shape).transpose(1, 2)
    return keys, values


def static_decoder_forward(
    model: SeamlessM4Tv2Model,
    cache: StaticBeamCache,
    input_ids: torch.Tensor,  # [N, Tq]
    positions: torch.Tensor,  # [Tq] cache positions of these tokens (a device tensor)
) -> torch.Tensor:  # [N, V]: logits of the last query position
    """The NLLB text decoder over the static cache: the layers' own modules, called in the
    order ``SeamlessM4Tv2DecoderLayer.forward`` calls them (pre-norm self-attention,
    cross-attention, FFN), with K/V written at ``positions`` and attention masked to the
    positions written so far. The shapes never depend on the step."""
    decoder = model.text_decoder
    capacity = cache.self_kv.shape[4]
    # position ids as the sinusoidal embedding numbers them: padding_idx + 1 + position
    # (no PAD is ever decoded: it is suppressed)
    hidden = decoder.embed_tokens(input_ids) + decoder.embed_positions.weights[
        positions + decoder.padding_idx + 1
    ].to(cache.self_kv.dtype)  # [N, Tq, D]
    visible = torch.arange(capacity, device=positions.device) <= positions.unsqueeze(1)  # [Tq, T]
    self_mask = torch.zeros_like(visible, dtype=hidden.dtype).masked_fill(
        ~visible, torch.finfo(hidden.dtype).min
    )  # [Tq, T] additive, broadcast over rows and heads
    for index, layer in enumerate(decoder.layers):
        normed = layer.self_attn_layer_norm(hidden)
        keys, values = project_kv(layer.self_attn, normed)  # [N, H, Tq, Dh]
        cache.self_kv[0, index].index_copy_(2, positions, keys)
        cache.self_kv[1, index].index_copy_(2, positions, values)
        hidden = hidden + attend(
            layer.self_attn, normed, cache.self_kv[0, index], cache.self_kv[1, index], self_mask
        )
        normed = layer.cross_attention_layer_norm(hidden)
        hidden = hidden + attend(
            layer.cross_attention, normed, cache.cross_kv[0, index], cache.cross_kv[1, index],
            cache.cross_mask,
        )
        hidden = hidden + layer.ffn(layer.ffn_layer_norm(hidden))
    hidden = decoder.layer_norm(hidden)
    return model.lm_head(hidden[:, -1])


# prefill(prefix ids [N, P], encoder_hidden [N, S, D]) -> logits [N, V]
StaticPrefillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# step(input_ids [N, 1], position [1], beam_idx [N]) -> logits [N, V]
StaticStepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def static_prefill_fn(model: SeamlessM4Tv2Model, cache: StaticBeamCache) -> StaticPrefillFn:
    """First decoder call of a search: pads the encoder output into the cross-attention cache,
    then runs the prefix. Not compiled (its shapes differ from every step's, and it runs once)."""

    def prefill(prefix: torch.Tensor, encoder_hidden: torch.Tensor) -> torch.Tensor:
        frames = encoder_hidden.shape[1]
        if frames > cache.cross_kv.shape[4]:
            raise ValueError(
                f"encoder output of {frames} frames exceeds the static cache's "
                f"{cache.cross_kv.shape[4]} (encoder_capacity)"
            )
        cache.self_kv.zero_()  # positions not yet written must not hold the last search's K/V
        cache.cross_kv.zero_()
        for index, layer in enumerate(model.text_decoder.layers):
            keys, values = project_kv(layer.cross_attention, encoder_hidden)  # [N, H, S, Dh]
            cache.cross_kv[0, index, :, :, :frames].copy_(keys)
            cache.cross_kv[1, index, :, :, :frames].copy_(values)
        cache.cross_mask.fill_(torch.finfo(cache.cross_mask.dtype).min)
        cache.cross_mask[..., :frames] = 0.0
        positions = torch.arange(prefix.shape[1], device=prefix.device)
        return static_decoder_forward(model, cache, prefix, positions)

    return prefill


def static_step_fn(model: SeamlessM4Tv2Model, cache: StaticBeamCache) -> StaticStepFn:
    """One beam-search step, the function levers compile: reorder the cache for the beams the
    last step chose, then decode one token per row at ``position``."""

    def step(input_ids: torch.Tensor, position: torch.Tensor, beam_idx: torch.Tensor) -> torch.Tensor:
        cache.reorder(beam_idx)
        return static_decoder_forward(model, cache, input_ids, position)

    return step


def static_beam_search(
    prefill: StaticPrefillFn,
    step: StaticStepFn,
    prefix: torch.Tensor,  # [B, P]
    encoder_hidden: torch.Tensor,  # [B, S, D]
    beam_size: int,
    new_tokens: int,
    suppressed_ids: tuple[int, ...],
) -> torch.Tensor:  # [B, new_tokens]
    """``beam_search`` over the static cache: the same selection, with the cache reorder done
    inside the next step (so that a compiled step includes it) and the position a tensor."""
    batch, prefix_len = prefix.shape
    device = prefix.device
    sequences = prefix.repeat_interleave(beam_size, dim=0)  # [B*K, P]
    scores = torch.zeros(batch, beam_size, device=device)  # [B, K]
    scores[:, 1:] = -1e9
    row_base = (torch.arange(batch, device=device) * beam_size).unsqueeze(1)  # [B, 1]
    suppressed = torch.tensor(suppressed_ids, device=device)
    # the cache position of the token fed to the next step, advanced in place: a fresh tensor
    # (not a slice, whose storage offset a compiled step would specialize on) of fixed shape
    position = torch.tensor([prefix_len], device=device)  # [1]

    logits = prefill(sequences, encoder_hidden.repeat_interleave(beam_size, dim=0))  # [B*K, V]
    for i in range(new_tokens):
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # [B*K, V]
        log_probs[:, suppressed] = -math.inf
        vocab = log_probs.shape[-1]
        total = (log_probs.view(batch, beam_size, vocab) + scores.unsqueeze(-1)).view(batch, -1)
        scores, flat = total.topk(beam_size, dim=1)  # [B, K]
        beam_idx = (row_base + flat // vocab).view(-1)  # [B*K]
        next_tokens = (flat % vocab).view(-1, 1)  # [B*K, 1]
        sequences = torch.cat([sequences[beam_idx], next_tokens], dim=1)
        if i < new_tokens - 1:  # the last token is not fed back
            logits = step(next_tokens, position, beam_idx)
            position += 1
    best = scores.argmax(dim=1)  # [B]
    rows = torch.arange(batch, device=device)
    return sequences.view(batch, beam_size, -1)[rows, best, prefix_len:]


# ----------------------------------------------------------------------------------------------
# Runner


class SpeechRunner:
    """A built SeamlessM4T v2 and its fixed, seeded utterance(s); ``run`` is one inference."""

    workload = WORKLOAD

    def __init__(self, task: str, options: BuildOptions, config: SpeechConfig) -> None:
        if options.kv_cache not in ("dynamic", "static"):
            raise ValueError(f"speech kv_cache is 'dynamic' or 'static', not {options.kv_cache!r}")
        self.task = task
        self.options = options
        dtype: torch.dtype = getattr(torch, options.dtype)
        device = torch.device(options.device)

        # ``speech.init_std`` overrides the scale's: tests use a large one for varied beams
        init_std = options.speech.init_std if options.speech.init_std is not None else config.init_std
        config = replace(config, init_std=init_std)
        self.config = config
        torch.manual_seed(options.seed)
        with device:
            self.model = SeamlessM4Tv2Model._from_config(
                hf_config(config), attn_implementation=options.attention, dtype=dtype
            ).eval()
        with torch.no_grad():
            pin_durations(self.model, config.units_per_char)
        patch_generation_config(self.model, config)
        self.model.vocoder.apply_weight_norm()
        self.weight_norms_folded = 0
        if options.speech.remove_weight_norm:
            self.weight_norms_folded = fold_weight_norm(self.model.vocoder)
        self.facts = facts_of(self.model, config, dtype)

        gen = torch.Generator().manual_seed(options.seed + 1)
        batch = options.batch_size
        # normalized fbanks (the feature extractor normalizes per utterance): ~N(0, 1)
        self.input_features = torch.randn(
            batch, config.fbank_frames, 160, generator=gen
        ).to(device=device, dtype=dtype)  # [B, frames, 160]
        words = torch.randint(  # ordinary ids: neither control symbols nor language tags
            len(CONTROL_IDS), config.vocab_size - 2, (batch, config.source_tokens - 2),
            generator=gen,
        )
        lang = self.model.generation_config.text_decoder_lang_to_code_id
        self.source_ids = torch.cat(  # [B, S]: NLLB source format  __eng__ words </s>
            [torch.full((batch, 1), lang[SOURCE_LANG]), words, torch.full((batch, 1), EOS_ID)], 1
        ).to(device)
        self.prefix = torch.tensor([[EOS_ID, lang[TARGET_LANG]]] * batch, device=device)  # [B, 2]

        # Levers may replace the functions named in ``step_names`` (compile them). The first
        # decoder call (prefix + cross-attention K/V) stays eager: its shapes differ from every
        # later step's, and it runs once per search.
        self.static_cache: StaticBeamCache | None = None
        if options.kv_cache == "static":
            hf = self.model.config
            self.static_cache = StaticBeamCache(
                layers=config.text_decoder_layers,
                rows=batch * config.beam_size,
                heads=config.heads,
                positions=self.prefix.shape[1] + config.new_tokens - 1,  # the last token is not fed back
                frames=config.encoder_capacity,
                head_dim=hf.hidden_size // hf.decoder_attention_heads,
                dtype=dtype,
                device=device,
            )
            self.prefill: Callable[..., torch.Tensor] = static_prefill_fn(self.model, self.static_cache)
            self.step: Callable[..., torch.Tensor] = static_step_fn(self.model, self.static_cache)
        else:
            self.prefill = decoder_step_fn(self.model)
            self.step = decoder_step_fn(self.model)
        self.vocoder_net = hifi_gan_fn(self.model)
        # What compile may take: the decoder step only over the static cache (over the growing
        # dynamic cache every step has new shapes: it would only recompile), and the HiFi-GAN
        # once its weight norm is folded, as in the paper's port (compiled with weight norm, the
        # graph would recompute every weight per call). On CPU a compiled HiFi-GAN gained
        # nothing measurable at tiny scale for ~20 s of cold compile per utterance length.
        self.step_names: tuple[str, ...] = (
            (("step",) if self.static_cache is not None else ())
            + (("vocoder_net",) if speaks(task) and options.speech.remove_weight_norm else ())
        )
        self.last_units = 0
        self.last_waveform_samples = 0

    # -- stages ---------------------------------------------------------------------------------

    def encode(self) -> torch.Tensor:  # [B, S, D]
        if self.task.startswith("s2"):
            return self.model.speech_encoder(input_features=self.input_features).last_hidden_state
        return self.model.text_encoder(input_ids=self.source_ids).last_hidden_state

    def decode(self, encoder_hidden: torch.Tensor) -> torch.Tensor:  # [B, new_tokens]
        if self.static_cache is not None:
            return static_beam_search(
                self.prefill, self.step, self.prefix, encoder_hidden, self.config.beam_size,
                self.config.new_tokens, CONTROL_IDS,
            )
        cache = make_cache(self.model.config, self.options.speech.inplace_beam_reorder)
        return beam_search(
            self.prefill, self.step, self.prefix, encoder_hidden, self.config.beam_size,
            self.config.new_tokens, (PAD_ID, UNK_ID, BOS_ID, EOS_ID), cache,
        )

    def text_to_units(
        self, encoder_hidden: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:  # unit ids [B, U] for the vocoder, raw units [B, U]
        """As ``SeamlessM4Tv2Model.generate`` does after the text: one decoder pass over the
        chosen sequence (without its final EOS) gives the T2U's input embeddings."""
        model = self.model
        batch = tokens.shape[0]
        eos = torch.full((batch, 1), EOS_ID, device=tokens.device)
        sequences = torch.cat([self.prefix, tokens, eos], dim=1)  # [B, 2 + N + 1]
        t2u_embeds = model.text_decoder(
            input_ids=sequences[:, :-1], encoder_hidden_states=encoder_hidden
        ).last_hidden_state  # [B, 2 + N, D]
        seq_lens = (sequences[:, :-1] != PAD_ID).int().sum(1)
        t2u_mask = _compute_new_attention_mask(t2u_embeds, seq_lens)

        subword_ids = sequences[:, 2:-1]  # drop EOS, language tag and final EOS: [B, N]
        subwords = model._indices_to_subwords(subword_ids)
        chars_per_id = model._count_character_length_in_subword(
            subword_ids, subwords, pad_token_id=PAD_ID
        )  # [B, N]
        zero = chars_per_id.new_zeros((batch, 1))
        chars_per_id = torch.cat([zero, chars_per_id, zero], dim=1)  # lang tag, EOS: no chars
        char_ids = model._get_char_input_ids(
            subword_ids, subwords, chars_per_id, pad_token_id=PAD_ID
        )

        out = model.t2u_model(
            inputs_embeds=t2u_embeds, char_input_ids=char_ids, char_count_per_id=chars_per_id,
            attention_mask=t2u_mask,
        )
        logits, padding_mask = out[0], out[1].bool()  # [B, U, t2u_vocab], [B, U]
        first = UNIT_CONTROL_SYMBOLS
        units = logits[..., first : first + self.config.unit_vocab_size].argmax(-1) + first
        pad = model.config.t2u_pad_token_id
        vocoder_ids = torch.where(padding_mask, units - model.config.vocoder_offset, pad)
        return vocoder_ids, units

    def vocode(self, vocoder_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``SeamlessM4Tv2CodeHifiGan.forward``'s stages, with the HiFi-GAN convolution stack
        (``vocoder_net``, which levers may compile) called apart from the data-dependent unit
        duration expansion before it."""
        vocoder = self.model.vocoder
        batch, device = vocoder_ids.shape[0], vocoder_ids.device
        lang_id = self.model.generation_config.vocoder_lang_code_to_id[TARGET_LANG]
        speaker = torch.full((batch, 1), SPEAKER_ID, device=device)
        lang = torch.full((batch, 1), lang_id, device=device)
        units = vocoder.unit_embedding(vocoder_ids).transpose(1, 2)  # [B, C, U]
        durations = torch.clamp(
            torch.round(torch.expm1(vocoder.dur_predictor(units.transpose(1, 2)))).long(), min=1
        )  # [B, U] frames per unit
        frames = nn.utils.rnn.pad_sequence(
            [torch.repeat_interleave(u, d, dim=-1).transpose(0, 1) for u, d in zip(units, durations)],
            batch_first=True,
        ).transpose(1, 2)  # [B, C, F]
        length = frames.shape[-1]
        conditioned = torch.cat(
            [
                vocoder.language_embedding(lang).transpose(1, 2).repeat(1, 1, length),
                frames,
                vocoder.speaker_embedding(speaker).transpose(1, 2).repeat(1, 1, length),
            ],
            dim=1,
        )  # [B, lang + C + speaker, F]
        # a clone: a CUDA-graph replay (compile "reduce-overhead") overwrites its outputs, and
        # the waveform outlives this call in the run's Output
        waveform = self.vocoder_net(conditioned).clone()  # [B, samples]
        lengths = vocoder._get_output_hifigan_lengths(
            vocoder._get_dur_output_lengths(vocoder_ids, durations)
        )
        return waveform, lengths  # [B, samples], [B]

    # -- Runner protocol ------------------------------------------------------------------------

    @torch.inference_mode()
    def run(self, phases: PhaseRecorder) -> Output:
        encoder_phase = "speech_encoder" if self.task.startswith("s2") else "text_encoder"
        with phases.phase(encoder_phase):
            encoder_hidden = self.encode()
        with phases.phase("text_decoder"):
            tokens = self.decode(encoder_hidden)
        output = Output(tokens=tokens.tolist())
        if not speaks(self.task):
            return output
        with phases.phase("t2u"):
            vocoder_ids, units = self.text_to_units(encoder_hidden, tokens)
        with phases.phase("vocoder"):
            waveform, lengths = self.vocode(vocoder_ids)
        self.last_units = units.shape[1]
        self.last_waveform_samples = waveform.shape[1]
        output.extra = {
            "units": units.tolist(),
            "waveform_samples": int(waveform.shape[1]),
            "waveform_lengths": lengths.reshape(-1).tolist(),
            "waveform": waveform,
        }
        return output

    @torch.inference_mode()
    def teacher_forced_logits(self, tokens: list[list[int]]) -> torch.Tensor:
        """Decoder logits [B, 2 + len, V] on the prefix (EOS, language tag) + ``tokens``."""
        encoder_hidden = self.encode()
        continuation = torch.tensor(tokens, device=self.prefix.device)
        ids = torch.cat([self.prefix, continuation], dim=1)
        hidden = self.model.text_decoder(
            input_ids=ids, encoder_hidden_states=encoder_hidden
        ).last_hidden_state
        return self.model.lm_head(hidden)

    def metrics(self) -> dict[str, float]:
        """KV cache at the end of decoding: self-attention over prefix + new tokens and
        cross-attention over the encoder output, for every beam."""
        batch, beams = self.options.batch_size, self.config.beam_size
        tokens = 2 + self.config.new_tokens + encoder_frames(self.config, self.task)
        kv_bytes = self.facts.kv_cache_bytes_per_token * batch * beams * tokens
        if self.static_cache is not None:  # what is preallocated, padding included
            cache = self.static_cache
            kv_bytes = sum(t.numel() * t.element_size() for t in (cache.self_kv, cache.cross_kv))
        out = {
            "kv_cache_bytes": float(kv_bytes),
            "new_tokens": float(self.config.new_tokens),
            "beam_size": float(beams),
        }
        if speaks(self.task):
            out["units_count"] = float(self.last_units)
            out["waveform_samples"] = float(self.last_waveform_samples)
        return out


def build(task: str, options: BuildOptions) -> SpeechRunner:
    check_task(task)
    if options.scale not in SCALES:
        raise ValueError(f"speech scales are {sorted(SCALES)}, not {options.scale!r}")
    return SpeechRunner(task, options, SCALES[options.scale])
