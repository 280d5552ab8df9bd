"""The LLM workload at tiny scale: exact-token equivalences, phases, determinism, paper shapes."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

import pytest
import torch
from mmperf_levers.contract import BuildOptions, NullPhases
from mmperf_suites.workloads import llm


class RecordingPhases:
    """A fake recorder: remembers the order of phase names entered."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def phase(self, name: str) -> AbstractContextManager[None]:
        self.names.append(name)
        return nullcontext()


def tokens(options: BuildOptions) -> list[list[int]]:
    out = llm.build("t2t", options).run(NullPhases())
    assert out.tokens is not None
    return out.tokens


def test_output_varies_and_has_the_configured_length() -> None:
    runner = llm.build("t2t", BuildOptions())
    out = runner.run(NullPhases()).tokens
    assert out is not None and len(out) == 1
    tiny = llm.SCALES["tiny"]
    assert runner.new_tokens == tiny.new_tokens
    assert len(out[0]) == runner.new_tokens * tiny.prompts  # every prompt's answer, in turn
    assert len(set(out[0])) > 4  # init_std large enough that greedy output is not one token


def test_eager_and_sdpa_give_the_same_greedy_tokens() -> None:
    # Both compute the same softmax attention in float32; differences are ~1e-6 in the logits,
    # far below the gaps between top-1 and top-2 of this model, so tokens are exact.
    assert tokens(BuildOptions(attention="eager")) == tokens(BuildOptions(attention="sdpa"))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_static_and_dynamic_cache_give_the_same_tokens(attention: str) -> None:
    base = BuildOptions(attention=attention)
    assert tokens(base) == tokens(replace(base, kv_cache="static"))


def test_static_cache_is_reused_across_runs() -> None:
    runner = llm.build("t2t", BuildOptions(kv_cache="static"))
    assert runner.run(NullPhases()).tokens == runner.run(NullPhases()).tokens


def test_batch_rows_are_independent_prompts_of_one_length() -> None:
    runner = llm.build("t2t", BuildOptions(batch_size=3))
    out = runner.run(NullPhases()).tokens
    assert out is not None and len(out) == 3
    assert runner.prompt.shape[0] == 3
    assert not torch.equal(runner.prompt[0], runner.prompt[1])


def test_phases_ttft_once_then_one_tpot_per_decode_step() -> None:
    runner = llm.build("t2t", BuildOptions())
    phases = RecordingPhases()
    runner.run(phases)
    per_prompt = ["ttft"] + ["tpot"] * (runner.new_tokens - 1)
    assert phases.names == per_prompt * len(runner.prompts)


def test_a_run_answers_several_prompts_of_drawn_lengths() -> None:
    runner = llm.build("t2t", BuildOptions())
    lengths = [p.shape[1] for p in runner.prompts]
    assert len(lengths) == llm.SCALES["tiny"].prompts >= 3
    assert len(set(lengths)) > 1  # drawn from the distribution, not one length


def test_same_seed_same_output_other_seed_other_output() -> None:
    assert tokens(BuildOptions(seed=3)) == tokens(BuildOptions(seed=3))
    assert tokens(BuildOptions(seed=3)) != tokens(BuildOptions(seed=4))


def test_teacher_forced_logits_reproduce_the_greedy_tokens() -> None:
    runner = llm.build("t2t", BuildOptions())
    out = runner.run(NullPhases()).tokens
    assert out is not None
    logits = runner.teacher_forced_logits(out)
    # the decode path forced along its own tokens predicts exactly those tokens
    assert logits.shape == (1, len(out[0]), llm.SCALES["tiny"].vocab_size)
    assert logits[0].argmax(-1).tolist() == out[0]


def test_prompt_lengths_follow_the_scaled_distribution() -> None:
    config = llm.SCALES["paper"]
    lengths = sorted(llm.prompt_length(config, seed) for seed in range(200))
    assert 100 <= lengths[100] <= 170  # HumanEval median 134
    assert max(lengths) <= config.prompt_max_tokens


def test_metrics_and_facts_of_a_built_model() -> None:
    runner = llm.build("t2t", BuildOptions())
    metrics = runner.metrics()
    assert metrics["prompt_tokens"] == sum(p.shape[1] for p in runner.prompts) / len(runner.prompts)
    assert metrics["new_tokens"] == runner.new_tokens * len(runner.prompts)
    assert runner.facts.parameters == sum(p.numel() for p in runner.model.parameters())
    assert runner.facts == llm.describe("t2t", "tiny")


@pytest.mark.parametrize(
    ("scale", "published"),
    [("paper", 6.74e9), ("paper-34b", 33.7e9)],  # Code Llama 7B / 34B
)
def test_paper_scale_parameter_counts(scale: str, published: float) -> None:
    facts = llm.describe("t2t", scale)
    assert abs(facts.parameters - published) / published < 0.02
    assert facts.weight_bytes == 2 * facts.parameters  # fp16


def test_unknown_task_and_scale_are_refused() -> None:
    with pytest.raises(ValueError, match="tasks"):
        llm.build("i2t", BuildOptions())
    with pytest.raises(ValueError, match="scales"):
        llm.build("t2t", BuildOptions(scale="huge"))
