"""CUDA graphs on CPU: the graph-tree rules the decode loops follow, the lever set, the health
metrics (graph tree and SDPA backend), with fakes where CUDA would be needed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from mmperf_levers import cuda_graphs, registry, stack
from mmperf_levers.compile import CompileLever
from mmperf_levers.contract import BuildOptions, LayerSkipOptions, NullPhases
from mmperf_suites import harness
from mmperf_suites.workloads import llm, text_image

TRAINED = LayerSkipOptions(trained_factor=0.05)


class ReplayingStep:
    """Stands in for a step compiled with ``mode="reduce-overhead"``: like a replayed CUDA
    graph, every call returns the *same* output tensors, overwritten in place, and a call first
    poisons the previous call's outputs (what graph trees do to a prior generation's outputs)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.outputs: Any = None
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        fresh = self.fn(*args)
        single = isinstance(fresh, torch.Tensor)
        fresh_list = [fresh] if single else list(fresh)
        if self.outputs is None:
            self.outputs = [t.clone() for t in fresh_list]
        else:
            for static, new in zip(self.outputs, fresh_list):
                static.fill_(float("nan"))
                static.copy_(new)
        return self.outputs[0] if single else tuple(self.outputs)


def replay_steps(runner: Any) -> dict[str, ReplayingStep]:
    steps = {name: ReplayingStep(getattr(runner, name)) for name in runner.step_names}
    for name, step in steps.items():
        setattr(runner, name, step)
    return steps


@pytest.mark.parametrize(("module", "task"), [(llm, "t2t"), (text_image, "i2t")])
def test_layerskip_loop_keeps_no_step_output_across_replays(module: Any, task: str) -> None:
    """The loop keeps draft hidden states over several draft calls; with replay semantics the
    tokens must still equal plain greedy decoding (they would not if it kept the references)."""
    options = BuildOptions(kv_cache="static", layerskip=TRAINED)
    reference = module.build(task, options).run(NullPhases()).tokens
    lever = registry.by_name("layerskip")
    runner = module.build(task, lever.configure(options))
    steps = replay_steps(runner)
    assert runner.run(NullPhases()).tokens == reference
    assert steps["draft_step"].calls > steps["verify_step"].calls > 0  # several drafts per verify


def test_the_replaying_fake_catches_a_loop_that_keeps_references() -> None:
    """The fake is strict enough: keeping a reference to an earlier output sees it poisoned."""
    step = ReplayingStep(lambda x: x * 2)
    kept = step(torch.ones(2))
    step(torch.zeros(2))
    assert not torch.equal(kept, torch.full((2,), 2.0))


def test_plain_greedy_loop_under_replay_semantics() -> None:
    options = BuildOptions(kv_cache="static")
    reference = llm.build("t2t", options).run(NullPhases()).tokens
    runner = llm.build("t2t", options)
    replay_steps(runner)
    assert runner.run(NullPhases()).tokens == reference


def test_cuda_graphs_implies_the_static_cache_and_is_a_lever_set() -> None:
    lever = registry.by_name("cuda_graphs")
    assert lever.configure(BuildOptions()).kv_cache == "static"
    assert ("static_cache", "cuda_graphs") in harness.lever_sets("llm")
    assert ("static_cache", "cuda_graphs") in harness.lever_sets("text_image")
    assert ("cuda_graphs",) not in harness.lever_sets("llm")
    assert ("cuda_graphs",) in harness.lever_sets("recommender")  # no KV cache there
    assert harness.lever_id(("static_cache", "cuda_graphs")) == "static_cache+cuda_graphs"
    assert lever.unsupported("llm", "t2t", "cuda") is None
    assert lever.unsupported("llm", "t2t", "cpu")  # refused with a reason on CPU
    assert lever.unsupported("speech", "s2st", "cuda") is None  # the beam search has a static cache now
    on_gpu = stack.ComposedLever(stack.compatible_levers("llm", "t2t", "cuda"))
    assert on_gpu.configure(BuildOptions(device="cuda")).kv_cache == "static"


def fake_manager(tree: dict[str, list[Any]], rerecords: dict[Any, dict[Any, int]]) -> Any:
    return SimpleNamespace(roots=tree, num_rerecord=rerecords)


def node(*children: Any) -> Any:
    kids: dict[str, list[Any]] = defaultdict(list)
    for child in children:
        kids["f"].append(child)
    return SimpleNamespace(children=kids)


def test_graph_tree_counts_walks_the_tree() -> None:
    manager = fake_manager({"step": [node(node(), node(node()))], "verify": [node()]},
                           {None: {"step": 1}, "g1": {"verify": 2}})
    assert cuda_graphs.graph_tree_counts(manager) == (5, 3)
    assert cuda_graphs.graph_tree_counts(None) == (0, 0)


@pytest.mark.parametrize(
    ("before", "after", "replayed"),
    [
        ((3, 0, 0), (3, 0, 0), 1.0),  # nothing new recorded or skipped: replay only
        ((3, 0, 0), (4, 1, 0), 0.0),  # re-recorded during the warm run
        ((3, 0, 0), (3, 0, 2), 0.0),  # torch skipped graphs (ran without them)
        ((0, 0, 1), (0, 0, 1), 0.0),  # never captured anything
    ],
)
def test_replay_health(before: tuple[int, int, int], after: tuple[int, int, int], replayed: float) -> None:
    health = cuda_graphs.replay_health(before, after)
    assert health["cuda_graphs_replayed_count"] == replayed
    assert health["cuda_graphs_recorded_count"] == after[0]
    assert health["cuda_graph_skips_count"] == after[2] - before[2]


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        ("aten::_scaled_dot_product_flash_attention", "flash"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", "flash"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64>>", "flash"),
        ("aten::_scaled_dot_product_efficient_attention", "efficient"),
        ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel)", "efficient"),
        ("aten::_scaled_dot_product_cudnn_attention", "cudnn"),
        ("aten::_scaled_dot_product_attention_math", "math"),
        ("aten::addmm", None),
        ("ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_64x4_tn", None),
    ],
)
def test_sdpa_backend_of(name: str, backend: str | None) -> None:
    assert cuda_graphs.sdpa_backend_of(name) == backend


def test_sdpa_backend_of_a_real_cpu_run() -> None:
    runner = llm.build("t2t", BuildOptions(attention="sdpa"))
    counts = cuda_graphs.sdpa_backend_counts(cuda_graphs.profiled_event_names(runner))
    assert set(counts) == {f"sdpa_{b}_count" for b in cuda_graphs.SDPA_BACKENDS}
    assert counts["sdpa_flash_count"] + counts["sdpa_math_count"] > 0
    eager = llm.build("t2t", BuildOptions())
    assert sum(cuda_graphs.sdpa_backend_counts(cuda_graphs.profiled_event_names(eager)).values()) == 0


def test_cuda_graphs_apply_adds_replay_and_sdpa_health(monkeypatch: pytest.MonkeyPatch) -> None:
    """apply() on a fake CUDA: compile's metrics, then the graph tree read around a profiled run."""
    reads = iter([(2, 0, 0), (2, 0, 0)])
    monkeypatch.setattr(CompileLever, "apply", lambda self, runner: {"compile_ms": 5.0})
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(cuda_graphs.GraphTreeProbe, "read", lambda self: next(reads))
    monkeypatch.setattr(cuda_graphs, "profiled_event_names",
                        lambda runner: ["aten::_scaled_dot_product_flash_attention", "aten::mm"])
    health = cuda_graphs.LEVER.apply(SimpleNamespace())  # type: ignore[arg-type]
    assert health["compile_ms"] == 5.0
    assert health["cuda_graphs_replayed_count"] == 1.0
    assert health["sdpa_flash_count"] == 1.0 and health["sdpa_math_count"] == 0.0
