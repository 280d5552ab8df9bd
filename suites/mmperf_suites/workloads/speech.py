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
``remove_weight_norm``. ``options.kv_cache`` must be "dynamic": the static cache is not wired
into this encoder-decoder (the ``static_cache`` lever says so).
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
from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import _compute_new_attention_mask

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
    describe_dtype: str


SCALES: dict[str, SpeechConfig] = {
    "tiny": SpeechConfig(
        hidden_size=128, heads=4, text_encoder_layers=2, text_decoder_layers=2, ffn_size=256,
        speech_encoder_layers=2, speech_encoder_ffn_size=128, vocab_size=1024,
        t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_ffn_size=128, t2u_duration_hidden=32,
        unit_vocab_size=128, char_vocab_size=64, vocoder_channels=32, unit_embed_dim=32,
        vocoder_cond_dim=8, vocoder_langs=4, vocoder_speakers=4, init_std=0.1,
        fbank_frames=160, source_tokens=16, new_tokens=16, beam_size=5, units_per_char=1,
        describe_dtype="float32",
    ),
    "small": SpeechConfig(
        hidden_size=256, heads=4, text_encoder_layers=4, text_decoder_layers=4, ffn_size=1024,
        speech_encoder_layers=4, speech_encoder_ffn_size=512, vocab_size=32000,
        t2u_encoder_layers=2, t2u_decoder_layers=2, t2u_ffn_size=1024, t2u_duration_hidden=128,
        unit_vocab_size=1000, char_vocab_size=1000, vocoder_channels=128, unit_embed_dim=256,
        vocoder_cond_dim=64, vocoder_langs=36, vocoder_speakers=200, init_std=0.05,
        fbank_frames=493, source_tokens=32, new_tokens=35, beam_size=5, units_per_char=3,
        describe_dtype="float32",
    ),
    "paper": SpeechConfig(  # SeamlessM4T v2 Large (= transformers' default config)
        hidden_size=1024, heads=16, text_encoder_layers=24, text_decoder_layers=24,
        ffn_size=8192, speech_encoder_layers=24, speech_encoder_ffn_size=4096,
        vocab_size=256102, t2u_encoder_layers=6, t2u_decoder_layers=6, t2u_ffn_size=8192,
        t2u_duration_hidden=256, unit_vocab_size=10000, char_vocab_size=10943,
        vocoder_channels=512, unit_embed_dim=1280, vocoder_cond_dim=256, vocoder_langs=36,
        vocoder_speakers=200, init_std=0.02, fbank_frames=493, source_tokens=32, new_tokens=35,
        beam_size=5, units_per_char=3, describe_dtype="float16",
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
# Runner


class SpeechRunner:
    """A built SeamlessM4T v2 and its fixed, seeded utterance(s); ``run`` is one inference."""

    workload = WORKLOAD

    def __init__(self, task: str, options: BuildOptions, config: SpeechConfig) -> None:
        if options.kv_cache != "dynamic":
            raise ValueError("speech supports kv_cache='dynamic' only")
        self.task = task
        self.options = options
        dtype: torch.dtype = getattr(torch, options.dtype)
        device = torch.device(options.device)

        # ``extra["init_std"]`` overrides the scale's: tests use a large one for varied beams
        init_std = float(dict(options.extra).get("init_std", config.init_std))
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
        if options.remove_weight_norm:
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

        # Levers may replace ``step`` (compile it); the first decoder call (prefix + cross-attn
        # K/V) stays eager, as its shapes differ from every later step.
        self.prefill = decoder_step_fn(self.model)
        self.step = decoder_step_fn(self.model)
        self.step_names: tuple[str, ...] = ("step",)
        self.last_units = 0
        self.last_waveform_samples = 0

    # -- stages ---------------------------------------------------------------------------------

    def encode(self) -> torch.Tensor:  # [B, S, D]
        if self.task.startswith("s2"):
            return self.model.speech_encoder(input_features=self.input_features).last_hidden_state
        return self.model.text_encoder(input_ids=self.source_ids).last_hidden_state

    def decode(self, encoder_hidden: torch.Tensor) -> torch.Tensor:  # [B, new_tokens]
        cache = make_cache(self.model.config, self.options.inplace_beam_reorder)
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
        batch = vocoder_ids.shape[0]
        device = vocoder_ids.device
        lang_id = self.model.generation_config.vocoder_lang_code_to_id[TARGET_LANG]
        waveform, lengths = self.model.vocoder(
            input_ids=vocoder_ids,
            speaker_id=torch.full((batch, 1), SPEAKER_ID, device=device),
            lang_id=torch.full((batch, 1), lang_id, device=device),
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
        out = {
            "kv_cache_bytes": float(self.facts.kv_cache_bytes_per_token * batch * beams * tokens),
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
