"""Quality verdicts of real levers on the tiny workloads, and that a deliberately lossy change
to a lever is caught (issue: lever quality checks)."""

import dataclasses

import pytest
import torch
from mmperf_levers import registry
from mmperf_suites.harness import quality_only


@dataclasses.dataclass(frozen=True)
class Corrupted:
    """A lever wrapped with a deliberate defect applied after it."""

    inner: object
    defect: str  # "coarse" (2-level weights) or "nudge" (a small change to one layer)

    @property
    def name(self):
        return self.inner.name

    @property
    def lossy(self):
        return self.inner.lossy

    def unsupported(self, *args):
        return self.inner.unsupported(*args)

    def configure(self, options):
        return self.inner.configure(options)

    def apply(self, runner):
        with torch.no_grad():  # the defect goes in before the lever (quantized weights are subclasses)
            linears = [m for m in runner.model.modules() if isinstance(m, torch.nn.Linear)]
            if self.defect == "coarse":
                for m in linears:  # a "1-bit quantization": sign times mean magnitude
                    m.weight.copy_(m.weight.sign() * m.weight.abs().mean())
            else:
                linears[0].weight.mul_(1.5)
        return self.inner.apply(runner)


def test_lossless_lever_keeps_tokens():
    q = quality_only("llm", "t2t", ["static_cache"])
    assert q["verdict"] == "pass", q
    assert q["tokens_identical"] and q["deterministic"]


def test_int8_weight_only_passes_teacher_forced_check():
    q = quality_only("llm", "t2t", ["int8_weight_only"])
    assert q["verdict"] == "pass", q
    assert q["teacher_forced"]["top1_agreement"] >= 0.6


@pytest.mark.parametrize(("lever", "defect"), [("int8_weight_only", "coarse"), ("static_cache", "nudge")])
def test_deliberately_lossy_change_to_a_lever_fails(lever, defect):
    q = quality_only("llm", "t2t", [Corrupted(registry.by_name(lever), defect)])
    assert q["verdict"] == "fail", q
    assert q["reasons"]


def test_lossy_check_runs_the_optimized_decode_path():
    """The teacher-forced logits of a compiled, quantized stack come from its own compiled step
    on its static cache (not an eager prefill): they cover exactly the generated tokens."""
    from mmperf_levers.stack import ComposedLever, compatible_levers

    q = quality_only("llm", "t2t", [ComposedLever(compatible_levers("llm", "t2t", "cpu"))])
    assert q["verdict"] == "pass", q
    assert q["check"].startswith("teacher-forced")
    assert 0.6 <= q["teacher_forced"]["top1_agreement"] < 1.0  # int8 changed something
