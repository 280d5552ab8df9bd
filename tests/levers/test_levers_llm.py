"""The generic levers on the decoder-only workloads (tiny scale, CPU)."""

from __future__ import annotations

import pytest
import torch
from mmperf_levers import registry, stack
from mmperf_levers.contract import BuildOptions, LayerSkipOptions, Lever, NullPhases
from mmperf_suites.workloads import llm, text_image

TRAINED = LayerSkipOptions(trained_factor=0.05)  # later layers add 5% of their usual residual


def build_with(module: object, task: str, levers: list[Lever], options: BuildOptions) -> object:
    composed = stack.ComposedLever(levers)
    runner = module.build(task, composed.configure(options))  # type: ignore[attr-defined]
    runner.health = composed.apply(runner)
    return runner


def test_registry_names_every_lever_once() -> None:
    names = list(registry.all_levers())  # all_levers refuses duplicate names
    generic = ["sdpa", "static_cache", "compile", "cuda_graphs", "int8_weight_only"]
    generic += ["int8_dynamic", "layerskip", "stack"]
    assert [name for name in names if name in generic] == generic
    assert registry.by_name("sdpa").name == "sdpa"
    with pytest.raises(KeyError, match="no lever"):
        registry.by_name("warp_drive")


def test_stack_composes_in_the_paper_order() -> None:
    """The stack is the paper's optimized baseline: attention, static cache + compile, int8;
    LayerSkip is a separate step on top."""
    names = [lever.name for lever in stack.compatible_levers("llm", "t2t", "cpu")]
    assert names == ["sdpa", "static_cache", "compile", "int8_weight_only"]
    cuda = [lever.name for lever in stack.compatible_levers("text_image", "t2i", "cuda")]
    assert cuda == ["sdpa", "static_cache", "cuda_graphs", "int8_weight_only"]
    hstu = [lever.name for lever in stack.compatible_levers("recommender", "ranking", "cpu")]
    assert hstu == ["hstu_fused_attention", "compile", "int8_weight_only"]


def test_progression_steps_add_to_the_step_before() -> None:
    steps = {step: [lever.name for lever in levers]
             for step, levers in stack.progression("llm", "t2t", "cpu").items()}
    assert list(steps) == ["attention", "compiled", "stack", "stack_layerskip"]
    for before, after in zip(list(steps.values()), list(steps.values())[1:]):
        assert after[: len(before)] == before and len(after) > len(before)
    assert steps["stack_layerskip"][-1] == "layerskip"
    # speech: the paper's own enablers join the compile step; LayerSkip does not apply
    speech = stack.progression("speech", "s2st", "cpu")
    assert "stack_layerskip" not in speech
    assert {"inplace_beam_reorder", "remove_weight_norm"} <= {lever.name for lever in speech["compiled"]}
    with pytest.raises(ValueError, match="no progression step"):
        stack.step_levers("warp", "llm", "t2t", "cpu")


def test_unsupported_combinations_give_reasons() -> None:
    assert registry.by_name("cuda_graphs").unsupported("llm", "t2t", "cpu")
    assert registry.by_name("static_cache").unsupported("recommender", "rank", "cpu")
    assert registry.by_name("sdpa").unsupported("recommender", "rank", "cpu")
    assert registry.by_name("layerskip").unsupported("text_image", "t2i", "cpu")
    assert registry.by_name("layerskip").unsupported("llm", "t2t", "cpu") is None


# With a batch, a round keeps the shortest accepted prefix over the rows: lower acceptance.
@pytest.mark.parametrize(("batch_size", "min_rate"), [(1, 0.7), (2, 0.5)])
def test_layerskip_gives_identical_tokens_and_high_acceptance(
    batch_size: int, min_rate: float
) -> None:
    options = BuildOptions(batch_size=batch_size, layerskip=TRAINED)
    reference = llm.build("t2t", options).run(NullPhases()).tokens
    runner = build_with(llm, "t2t", [registry.by_name("layerskip")], options)
    assert runner.run(NullPhases()).tokens == reference  # type: ignore[attr-defined]
    rate = runner.health["acceptance_rate"]  # type: ignore[attr-defined]
    assert min_rate <= rate <= 1.0
    assert runner.health["draft_tokens_count"] > 0  # type: ignore[attr-defined]


def test_layerskip_on_an_untrained_model_is_exact_with_a_low_acceptance() -> None:
    options = BuildOptions(kv_cache="static")
    reference = llm.build("t2t", options).run(NullPhases()).tokens
    runner = build_with(llm, "t2t", [registry.by_name("layerskip")], options)
    assert runner.run(NullPhases()).tokens == reference  # type: ignore[attr-defined]
    assert 0.0 <= runner.health["acceptance_rate"] < 0.7  # type: ignore[attr-defined]


def test_layerskip_on_chameleon_captioning() -> None:
    options = BuildOptions(layerskip=TRAINED)
    reference = text_image.build("i2t", options).run(NullPhases()).tokens
    runner = build_with(text_image, "i2t", [registry.by_name("layerskip")], options)
    assert runner.run(NullPhases()).tokens == reference  # type: ignore[attr-defined]
    assert 0.5 <= runner.health["acceptance_rate"] <= 1.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["int8_weight_only", "int8_dynamic"])
def test_int8_changes_logits_a_little(name: str) -> None:
    reference = llm.build("t2t", BuildOptions())
    tokens = reference.run(NullPhases()).tokens
    assert tokens is not None
    expected = reference.teacher_forced_logits(tokens)
    runner = build_with(llm, "t2t", [registry.by_name(name)], BuildOptions())
    # 4 layers x 7 projections + the LM head
    assert runner.health == {"quantized_layers_count": 29.0}  # type: ignore[attr-defined]
    got = runner.teacher_forced_logits(tokens)  # type: ignore[attr-defined]
    assert not torch.equal(got, expected)
    # A random model with init std 0.3 amplifies the int8 rounding error layer by layer:
    # measured 75-81% top-1 agreement and 13-17% relative logit error (chance: 1/2048).
    agreement = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert agreement >= 0.6
    relative = ((got - expected).norm() / expected.norm()).item()
    assert relative < 0.3


def test_stack_without_compile_is_exact_up_to_int8() -> None:
    levers = [lever for lever in stack.compatible_levers("llm", "t2t", "cpu")]
    no_compile = [lever for lever in levers if lever.name not in ("compile", "int8_weight_only")]
    options = BuildOptions(layerskip=TRAINED)
    reference = llm.build("t2t", options).run(NullPhases()).tokens
    runner = build_with(llm, "t2t", no_compile, options)
    assert runner.run(NullPhases()).tokens == reference  # type: ignore[attr-defined]
    assert runner.options.attention == "sdpa"  # type: ignore[attr-defined]
    assert runner.options.kv_cache == "static"  # type: ignore[attr-defined]


def test_compile_with_static_cache_is_exact_without_recompiles() -> None:
    reference = llm.build("t2t", BuildOptions()).run(NullPhases()).tokens
    levers = [registry.by_name(n) for n in ("sdpa", "static_cache", "compile")]
    runner = build_with(llm, "t2t", levers, BuildOptions())
    assert runner.run(NullPhases()).tokens == reference  # type: ignore[attr-defined]
    health = runner.health  # type: ignore[attr-defined]
    assert health["compile_ms"] > 0
    assert health["graph_breaks_count"] == 0
    assert health["recompiles_count"] == 0


def test_int8_arm_moves_fewer_roofline_bytes_than_eager() -> None:
    """The roofline counts the bytes each arm really stores: int8 weights (+ scales), not the
    fp32 bytes of the model before quantization."""
    from mmperf_suites.harness import roofline_inputs

    eager = llm.build("t2t", BuildOptions())
    quantized = build_with(llm, "t2t", [registry.by_name("int8_weight_only")], BuildOptions())
    static = eager.metrics()
    metric, eager_bytes, flops = roofline_inputs(eager, static, 1)  # type: ignore[misc]
    _, int8_bytes, _ = roofline_inputs(quantized, static, 1)  # type: ignore[misc]
    assert metric == "tpot_ms"
    assert int8_bytes < 0.4 * eager_bytes  # int8 is a quarter of fp32, plus scales and the KV cache
    assert flops > 0
