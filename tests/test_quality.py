from types import SimpleNamespace

import torch
from mmperf_suites import quality


def out(tokens):
    return SimpleNamespace(tokens=tokens, ranking=None)


def test_first_difference():
    assert quality.first_difference([[1, 2, 3]], [[1, 2, 3]]).equal
    d = quality.first_difference([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 9, 6]])
    assert (d.equal, d.item, d.position) == (False, 1, 1)
    assert quality.first_difference([[1, 2]], [[1, 2, 3]]).position == 2


def test_lossless_lever_must_keep_tokens():
    ok = quality.verdict(lossy=False, levers=["compile"], eager_output=out([[1, 2]]),
                         optimized_output=out([[1, 2]]), optimized_rounds=[out([[1, 2]])] * 3)
    assert ok["verdict"] == "pass" and ok["deterministic"]
    bad = quality.verdict(lossy=False, levers=["compile"], eager_output=out([[1, 2]]),
                          optimized_output=out([[1, 3]]), optimized_rounds=[out([[1, 3]])] * 3)
    assert bad["verdict"] == "fail"
    assert "position 1" in bad["reasons"][0]


def test_nondeterminism_is_caught():
    rounds = [out([[1, 2, 3]]), out([[1, 2, 3]]), out([[1, 7, 3]])]
    q = quality.verdict(lossy=True, levers=["int8_dynamic"], eager_output=out([[1, 2, 3]]),
                        optimized_output=rounds[-1], optimized_rounds=rounds,
                        eager_logits=torch.ones(1, 3, 5), optimized_logits=torch.ones(1, 3, 5))
    assert q["verdict"] == "fail"
    assert "round 2 differs" in q["reasons"][0]


def test_lossy_lever_judged_on_teacher_forced_logits():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 8, 50, generator=g) * 5
    close = ref + 0.01 * torch.randn(2, 8, 50, generator=g)
    far = torch.randn(2, 8, 50, generator=g) * 5
    tok = out([[1, 2]])
    good = quality.verdict(lossy=True, levers=["int8_weight_only"], eager_output=tok,
                           optimized_output=out([[1, 9]]), optimized_rounds=[out([[1, 9]])] * 2,
                           eager_logits=ref, optimized_logits=close)
    assert good["verdict"] == "pass", good  # diverging free-running tokens alone do not fail it
    assert good["teacher_forced"]["top1_agreement"] > 0.95
    bad = quality.verdict(lossy=True, levers=["int8_weight_only"], eager_output=tok,
                          optimized_output=tok, optimized_rounds=[tok] * 2,
                          eager_logits=ref, optimized_logits=far)
    assert bad["verdict"] == "fail"
    assert any("top-1 agreement" in r for r in bad["reasons"])
