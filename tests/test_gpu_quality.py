"""The 16-bit tolerance rule for lossless levers; float32 stays exact."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from mmperf_levers.contract import Output
from mmperf_suites import quality

REF = [list(range(20))]


def flipped_at(position: int) -> list[list[int]]:
    tokens = list(range(20))
    tokens[position:] = [t + 100 for t in tokens[position:]]  # diverges after one flip
    return [tokens]


def logits(agree: float) -> tuple[Any, Any]:
    """Eager and optimized teacher-forced logits whose argmax agrees at ``agree`` of 100 positions."""
    ref = torch.zeros(1, 100, 8)
    ref[..., 0] = 1.0
    opt = ref.clone()
    n = round((1 - agree) * 100)
    opt[0, :n, 0] = 0.0
    opt[0, :n, 1] = 1.0
    return ref, opt


def judge(tokens: list[list[int]], agree: float, dtype: str, levers: tuple[str, ...] = ("compile",)) -> dict[str, Any]:
    ref_logits, opt_logits = logits(agree)
    out = Output(tokens=tokens)
    return quality.verdict(lossy=False, levers=list(levers), eager_output=Output(tokens=REF),
                           optimized_output=out, optimized_rounds=[out, out],
                           eager_logits=ref_logits, optimized_logits=opt_logits, dtype=dtype)


def test_bf16_rounding_flip_after_the_exact_prefix_passes() -> None:
    q = judge(flipped_at(12), 0.99, "bfloat16")
    assert q["verdict"] == "pass"
    assert "16-bit rounding" in q["check"]


@pytest.mark.parametrize(("position", "agree"), [(3, 0.99), (12, 0.90)])
def test_bf16_early_flip_or_low_agreement_fails(position: int, agree: float) -> None:
    assert judge(flipped_at(position), agree, "bfloat16")["verdict"] == "fail"


def test_float32_stays_exact() -> None:
    q = judge(flipped_at(12), 1.0, "float32")
    assert q["verdict"] == "fail"
    assert "changed the output" in q["reasons"][0]


def test_rule_function() -> None:
    equal = quality.TokenDiff(True)
    assert quality.low_precision_tolerance(equal, None) == "identical"
    late = quality.TokenDiff(False, 0, quality.LOW_PRECISION_EXACT_STEPS)
    assert quality.low_precision_tolerance(late, None) is None  # no logits, no tolerance
    assert quality.low_precision_tolerance(late, {"top1_agreement": 1.0})
