"""The Chameleon workload at tiny scale: tasks, phases, image-token sampling, paper shapes."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

import pytest
from mmperf_levers.contract import BuildOptions, NullPhases
from mmperf_suites.workloads import text_image

TINY = text_image.SCALES["tiny"]


class RecordingPhases:
    def __init__(self) -> None:
        self.names: list[str] = []

    def phase(self, name: str) -> AbstractContextManager[None]:
        self.names.append(name)
        return nullcontext()


def tokens(task: str, options: BuildOptions) -> list[list[int]]:
    out = text_image.build(task, options).run(NullPhases())
    assert out.tokens is not None
    return out.tokens


def is_image_id(token: int) -> bool:
    return text_image.FIRST_IMAGE_ID <= token < text_image.FIRST_IMAGE_ID + TINY.vq_codes


@pytest.mark.parametrize(
    ("task", "new_tokens"), [("i2t", TINY.caption_new_tokens), ("it2t", TINY.answer_new_tokens)]
)
def test_text_tasks_tokenize_the_image_then_generate_text(task: str, new_tokens: int) -> None:
    runner = text_image.build(task, BuildOptions())
    phases = RecordingPhases()
    out = runner.run(phases).tokens
    assert phases.names == ["image_tokenizer", "ttft"] + ["tpot"] * (new_tokens - 1)
    assert out is not None and len(out[0]) == new_tokens
    assert not any(is_image_id(t) for t in out[0])  # image ids are masked in text generation
    assert runner.metrics()["prompt_tokens"] > TINY.image_tokens


def test_text_to_image_samples_exactly_one_image_of_image_tokens() -> None:
    runner = text_image.build("t2i", BuildOptions(batch_size=2))
    phases = RecordingPhases()
    out = runner.run(phases).tokens
    assert phases.names == ["ttft"] + ["tpot"] * (TINY.image_tokens - 1)
    assert out is not None and len(out) == 2
    assert all(len(row) == TINY.image_tokens == 64 for row in out)
    assert all(is_image_id(t) for row in out for t in row)
    assert len(set(out[0])) > 8  # top-p sampling varies
    assert runner.streams.shape[0] == 3 * 2  # three guidance streams per image


def test_text_to_image_is_deterministic_per_seed() -> None:
    assert tokens("t2i", BuildOptions(seed=1)) == tokens("t2i", BuildOptions(seed=1))
    assert tokens("t2i", BuildOptions(seed=1)) != tokens("t2i", BuildOptions(seed=2))


@pytest.mark.parametrize("task", text_image.TASKS)
def test_eager_sdpa_static_dynamic_give_the_same_tokens(task: str) -> None:
    # float32 on CPU: attention kernels differ by ~1e-6, below any top-1 (or top-p) margin here
    reference = tokens(task, BuildOptions())
    assert tokens(task, BuildOptions(attention="sdpa")) == reference
    assert tokens(task, replace(BuildOptions(), kv_cache="static")) == reference


def test_teacher_forced_logits_reproduce_a_caption() -> None:
    runner = text_image.build("i2t", BuildOptions())
    out = runner.run(NullPhases()).tokens
    assert out is not None
    # the decode path forced along its own caption predicts exactly that caption
    logits = runner.teacher_forced_logits(out) + runner.text_bias
    assert logits[0].argmax(-1).tolist() == out[0]


@pytest.mark.parametrize(
    ("scale", "published"),
    # Chameleon 7B and 30B/34B (the Hugging Face checkpoints hold 7.04B and 34.3B parameters,
    # VQ image tokenizer included)
    [("paper", 7.04e9), ("paper-34b", 34.3e9)],
)
def test_paper_scale_parameter_counts(scale: str, published: float) -> None:
    facts = text_image.describe("t2i", scale)
    assert abs(facts.parameters - published) / published < 0.02
    assert text_image.SCALES[scale].image_tokens == 1024
