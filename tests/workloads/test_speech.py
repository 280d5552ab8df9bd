"""The speech (SeamlessM4T v2) workload at tiny scale: phases, agreement with transformers'
own ``generate``, determinism, KV reorder, paper-scale parameter count."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import pytest
import torch
from mmperf_levers.contract import BuildOptions, NullPhases, SpeechOptions
from mmperf_suites.workloads import speech
from transformers import DynamicCache, EncoderDecoderCache

# a large init makes a random Seamless' beams vary (the default gives one repeated token)
VARIED = SpeechOptions(init_std=2.0)


class RecordingPhases:
    def __init__(self) -> None:
        self.names: list[str] = []

    def phase(self, name: str) -> AbstractContextManager[None]:
        self.names.append(name)
        return nullcontext()


EXPECTED_PHASES = {
    "s2st": ["speech_encoder", "text_decoder", "t2u", "vocoder"],
    "s2tt": ["speech_encoder", "text_decoder"],
    "t2st": ["text_encoder", "text_decoder", "t2u", "vocoder"],
    "t2tt": ["text_encoder", "text_decoder"],
}


@pytest.mark.parametrize("task", speech.TASKS)
def test_every_task_runs_and_records_its_phases(task: str) -> None:
    runner = speech.build(task, BuildOptions())
    phases = RecordingPhases()
    out = runner.run(phases)
    assert phases.names == EXPECTED_PHASES[task]
    assert out.tokens is not None and len(out.tokens[0]) == speech.SCALES["tiny"].new_tokens
    metrics = runner.metrics()
    assert metrics["kv_cache_bytes"] > 0 and metrics["new_tokens"] == len(out.tokens[0])
    if speech.speaks(task):
        # 320 waveform samples per unit (HiFi-GAN upsampling 5*4*4*2*2), one unit per character
        assert out.extra["waveform_samples"] == 320 * len(out.extra["units"][0])
        assert metrics["waveform_samples"] == out.extra["waveform_samples"]


@pytest.mark.parametrize("task", ["t2tt"])
def test_beam_search_matches_transformers_generate(task: str) -> None:
    runner = speech.build(task, BuildOptions(batch_size=2, speech=VARIED))
    ours = runner.run(NullPhases()).tokens
    n = runner.config.new_tokens
    kwargs = dict(
        tgt_lang=speech.TARGET_LANG, generate_speech=False, num_beams=5, do_sample=False,
        min_new_tokens=n, max_new_tokens=n, suppress_tokens=[0, 1, 2],
    )
    if task == "t2tt":
        theirs = runner.model.generate(input_ids=runner.source_ids, **kwargs)
    else:
        theirs = runner.model.generate(input_features=runner.input_features, **kwargs)
    assert ours == theirs.sequences[:, 2:].tolist()
    assert ours is not None and len(set(ours[0])) > 3  # a meaningful comparison


def test_same_seed_same_output_other_seed_other_output() -> None:
    first = speech.build("t2st", BuildOptions(speech=VARIED)).run(NullPhases())
    again = speech.build("t2st", BuildOptions(speech=VARIED)).run(NullPhases())
    other = speech.build("t2st", BuildOptions(seed=1, speech=VARIED)).run(NullPhases())
    assert first.tokens == again.tokens
    assert torch.equal(first.extra["waveform"], again.extra["waveform"])
    assert first.tokens != other.tokens


def test_teacher_forced_logits_agree_with_the_decoded_tokens() -> None:
    runner = speech.build("t2tt", BuildOptions(speech=VARIED))
    tokens = runner.run(NullPhases()).tokens
    assert tokens is not None
    logits = runner.teacher_forced_logits(tokens)
    assert logits.shape == (1, 2 + len(tokens[0]), runner.config.vocab_size)


def test_inplace_reorder_equals_index_select_reorder() -> None:
    config = speech.hf_config(speech.SCALES["tiny"])
    gen = torch.Generator().manual_seed(0)
    caches = [speech.make_cache(config, inplace) for inplace in (False, True)]
    self_kv = torch.randn(2, 10, 4, 3, 8, generator=gen)  # layers x [K*B, heads, T, dim]
    cross = torch.randn(2, 4, 6, 8, generator=gen).repeat_interleave(5, dim=0)  # beams equal
    for cache in caches:
        for layer in range(2):
            cache.self_attention_cache.update(self_kv[layer], self_kv[layer] + 1, layer)
            cache.cross_attention_cache.update(cross, cross + 1, layer)
    beam_idx = torch.tensor([0, 0, 3, 1, 4, 7, 5, 5, 9, 6])  # stays within each item's 5 beams
    keys_before = caches[1].self_attention_cache.layers[0].keys
    for cache in caches:
        cache.reorder_cache(beam_idx)
    for layer in range(2):
        ref, ours = caches[0], caches[1]
        for kind in ("self_attention_cache", "cross_attention_cache"):
            a, b = getattr(ref, kind).layers[layer], getattr(ours, kind).layers[layer]
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    assert caches[1].self_attention_cache.layers[0].keys is keys_before  # same storage
    assert isinstance(caches[0], EncoderDecoderCache)
    assert isinstance(caches[0].self_attention_cache, DynamicCache)


def test_paper_scale_is_seamless_m4t_v2_large() -> None:
    facts = speech.describe("s2st", "paper")
    assert abs(facts.parameters - 2.3e9) / 2.3e9 < 0.02
    assert facts.layers == 24 and facts.hidden_size == 1024
    assert facts.weight_bytes == 2 * facts.parameters  # float16


def test_unknown_task_and_scale_are_refused() -> None:
    with pytest.raises(ValueError, match="tasks"):
        speech.build("asr", BuildOptions())
    with pytest.raises(ValueError, match="scales"):
        speech.build("s2st", BuildOptions(scale="huge"))


# -- static KV cache (the paper's Seamless lever 2) ---------------------------------------------


@pytest.mark.parametrize(("task", "batch_size"), [("t2st", 1), ("s2tt", 2)])
def test_static_cache_gives_the_dynamic_cache_beams(task: str, batch_size: int) -> None:
    dynamic = speech.build(task, BuildOptions(batch_size=batch_size, speech=VARIED))
    static = speech.build(task, BuildOptions(batch_size=batch_size, speech=VARIED, kv_cache="static"))
    expected = dynamic.run(NullPhases())
    first, again = static.run(NullPhases()), static.run(NullPhases())  # the cache is reused
    assert expected.tokens is not None and len(set(expected.tokens[0])) > 3  # varied beams
    assert first.tokens == again.tokens == expected.tokens
    if speech.speaks(task):
        assert torch.equal(first.extra["waveform"], expected.extra["waveform"])


def test_static_cache_keeps_its_storage_and_offers_the_step_to_compile() -> None:
    runner = speech.build("t2st", BuildOptions(kv_cache="static"))
    cache = runner.static_cache
    assert cache is not None
    addresses = [t.data_ptr() for t in cache.buffers()]
    runner.run(NullPhases())
    assert [t.data_ptr() for t in cache.buffers()] == addresses
    config = runner.config
    rows, heads = config.beam_size, config.heads
    head_dim = config.hidden_size // heads
    assert cache.self_kv.shape == (2, 2, rows, heads, 2 + config.new_tokens - 1, head_dim)
    assert cache.cross_kv.shape == (2, 2, rows, heads, config.encoder_capacity, head_dim)
    assert runner.step_names == ("step",)
    # the dynamic cache grows every step: its decoder is not offered for compiling; the
    # HiFi-GAN is, once its weight norm is folded
    assert speech.build("t2tt", BuildOptions()).step_names == ()
    assert speech.build("s2st", BuildOptions()).step_names == ()
    folded = BuildOptions(kv_cache="static", speech=SpeechOptions(remove_weight_norm=True))
    assert speech.build("s2st", folded).step_names == ("step", "vocoder_net")
    assert speech.build("s2tt", folded).step_names == ("step",)


def test_static_reorder_equals_index_select() -> None:
    cache = speech.StaticBeamCache(
        layers=2, rows=10, heads=4, positions=3, frames=6, head_dim=8,
        dtype=torch.float32, device=torch.device("cpu"),
    )
    gen = torch.Generator().manual_seed(0)
    cache.self_kv.copy_(torch.randn(cache.self_kv.shape, generator=gen))
    cross = cache.cross_kv.clone()
    beam_idx = torch.tensor([0, 0, 3, 1, 4, 7, 5, 5, 9, 6])
    expected = cache.self_kv.index_select(2, beam_idx)
    storage = cache.self_kv.data_ptr()
    cache.reorder(beam_idx)
    assert torch.equal(cache.self_kv, expected)
    assert cache.self_kv.data_ptr() == storage
    assert torch.equal(cache.cross_kv, cross)  # equal across one utterance's beams: untouched


def test_static_cache_refuses_an_encoder_output_beyond_its_capacity() -> None:
    runner = speech.build("t2tt", BuildOptions(kv_cache="static"))
    too_long = torch.zeros(5, runner.config.encoder_capacity + 1, runner.config.hidden_size)
    with pytest.raises(ValueError, match="encoder_capacity"):
        runner.prefill(runner.prefix.repeat_interleave(5, dim=0), too_long)


def test_unknown_kv_cache_is_refused() -> None:
    with pytest.raises(ValueError, match="kv_cache"):
        speech.build("t2tt", BuildOptions(kv_cache="paged"))
