"""The speech and HSTU levers: where they apply, and that they keep outputs."""

from __future__ import annotations

import pytest
import torch
from mmperf_levers import (
    hstu_fused_attention,
    registry,
    speech_inplace_beam_reorder,
    speech_remove_weight_norm,
)
from mmperf_levers.contract import BuildOptions, NullPhases, SpeechOptions
from mmperf_suites.workloads import recommender, speech

INPLACE = speech_inplace_beam_reorder.LEVER
NO_WEIGHT_NORM = speech_remove_weight_norm.LEVER
FUSED = hstu_fused_attention.LEVER
VARIED = SpeechOptions(init_std=2.0)


def test_levers_are_registered() -> None:
    levers = registry.all_levers()
    for lever in (INPLACE, NO_WEIGHT_NORM, FUSED):
        assert levers[lever.name] is lever


def test_each_lever_says_why_it_does_not_apply_elsewhere() -> None:
    for lever in (INPLACE, NO_WEIGHT_NORM):
        assert lever.unsupported("speech", "s2st", "cpu") is None
        assert lever.unsupported("llm", "t2t", "cpu")
        assert lever.unsupported("recommender", "ranking", "cpu")
    assert INPLACE.unsupported("speech", "t2tt", "cpu") is None
    assert NO_WEIGHT_NORM.unsupported("speech", "t2tt", "cpu")  # no vocoder runs
    assert FUSED.unsupported("recommender", "ranking", "cpu") is None
    assert FUSED.unsupported("speech", "s2st", "cpu")


def build_with(lever: object, module: object, task: str, options: BuildOptions) -> object:
    options = lever.configure(options)  # type: ignore[attr-defined]
    runner = module.build(task, options)  # type: ignore[attr-defined]
    lever.apply(runner)  # type: ignore[attr-defined]
    return runner


@pytest.mark.parametrize("task", ["t2tt", "t2st"])
def test_inplace_beam_reorder_gives_identical_tokens(task: str) -> None:
    options = BuildOptions(batch_size=2, speech=VARIED)
    base = speech.build(task, options).run(NullPhases())
    runner = build_with(INPLACE, speech, task, options)
    assert runner.options.speech.inplace_beam_reorder  # type: ignore[attr-defined]
    out = runner.run(NullPhases())  # type: ignore[attr-defined]
    assert out.tokens == base.tokens
    if speech.speaks(task):
        assert torch.equal(out.extra["waveform"], base.extra["waveform"])


def test_remove_weight_norm_keeps_the_waveform() -> None:
    options = BuildOptions(speech=VARIED)
    base_runner = speech.build("t2st", options)
    assert base_runner.weight_norms_folded == 0
    base = base_runner.run(NullPhases())
    runner = speech.build("t2st", NO_WEIGHT_NORM.configure(options))
    health = NO_WEIGHT_NORM.apply(runner)
    # conv_pre + 5 upsamplers + 15 residual blocks x 6 convs + conv_post
    assert health == {"weight_norms_folded_count": 97.0}
    out = runner.run(NullPhases())
    assert out.tokens == base.tokens
    torch.testing.assert_close(out.extra["waveform"], base.extra["waveform"], rtol=1e-4, atol=1e-5)


def test_hstu_fused_attention_keeps_the_ranking() -> None:
    options = BuildOptions(batch_size=4)
    base = recommender.build("ranking", options).run(NullPhases())
    runner = build_with(FUSED, recommender, "ranking", options)
    assert runner.options.recommender.hstu_attention == "fused"  # type: ignore[attr-defined]
    out = runner.run(NullPhases())  # type: ignore[attr-defined]
    assert out.ranking == base.ranking
    torch.testing.assert_close(out.scores, base.scores, rtol=1e-4, atol=1e-5)


def test_static_cache_and_compile_apply_to_speech() -> None:
    for task in speech.TASKS:
        for name in ("static_cache", "compile"):
            assert registry.by_name(name).unsupported("speech", task, "cpu") is None
    assert registry.by_name("cuda_graphs").unsupported("speech", "s2st", "cpu")


@pytest.mark.parametrize("task", ["t2st"])
def test_static_cache_and_compile_keep_beams_and_waveform(task: str) -> None:
    """fp32 on CPU: the compiled decoder step over the static cache gives eager's beams token for
    token; the compiled HiFi-GAN (after remove_weight_norm) its waveform within float rounding."""
    options = BuildOptions(speech=VARIED)
    base = speech.build(task, options).run(NullPhases())
    levers = [registry.by_name(n) for n in ("static_cache", "remove_weight_norm", "compile")]
    for lever in levers:
        options = lever.configure(options)
    runner = speech.build(task, options)
    health: dict[str, float] = {}
    for lever in levers:
        health.update(lever.apply(runner))
    assert health["compiled_steps_count"] == 2.0  # decoder step and HiFi-GAN
    assert health["recompiles_count"] == 0.0 and health["graph_breaks_count"] == 0.0
    out = runner.run(NullPhases())
    assert base.tokens is not None and len(set(base.tokens[0])) > 3
    assert out.tokens == base.tokens
    torch.testing.assert_close(out.extra["waveform"], base.extra["waveform"], rtol=1e-4, atol=1e-5)
