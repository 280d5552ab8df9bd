"""The recommender (HSTU) workload: attention paths agree, no softmax, causality, determinism,
paper-scale facts."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmperf_levers.contract import BuildOptions, NullPhases, RecommenderOptions
from mmperf_suites.workloads import recommender as rec

TINY = rec.SCALES["tiny"]


class RecordingPhases:
    def __init__(self) -> None:
        self.names: list[str] = []

    def phase(self, name: str) -> AbstractContextManager[None]:
        self.names.append(name)
        return nullcontext()


def random_inputs(
    lengths: list[int], seed: int, heads: int = 2, dim: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, rec.Jagged, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q, k, v = (torch.randn(total, heads, dim, generator=gen) for _ in range(3))
    stamps = torch.cat([torch.rand(n, generator=gen).mul(1e5).sort().values for n in lengths])
    history = rec.Jagged(rec.offsets_of(tuple(lengths), q.device), tuple(lengths), stamps)
    max_len = max(lengths)
    pos_weight = torch.randn(2 * max_len - 1, generator=gen)
    time_weight = torch.randn(TINY.time_buckets + 1, generator=gen)
    return q, k, v, history, pos_weight, time_weight


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    block=st.integers(1, 16),
    seed=st.integers(0, 1000),
)
def test_fused_attention_equals_naive(lengths: list[int], block: int, seed: int) -> None:
    q, k, v, history, pos_w, time_w = random_inputs(lengths, seed)
    naive = rec.naive_attention(q, k, v, history, pos_w, time_w)
    fused = rec.fused_attention(q, k, v, history, pos_w, time_w, block)
    torch.testing.assert_close(fused, naive, rtol=1e-5, atol=1e-6)


def test_attention_has_no_softmax() -> None:
    """Doubling v doubles the output exactly (both paths are linear in v), and the weights do
    not sum to one: SiLU(.) / N, not a softmax."""
    q, k, v, history, pos_w, time_w = random_inputs([12, 7], seed=3)
    paths = [
        (rec.naive_attention, (history, pos_w, time_w)),
        (rec.fused_attention, (history, pos_w, time_w, 4)),
    ]
    for path, args in paths:
        out = path(q, k, v, *args)
        torch.testing.assert_close(path(q, k, 2 * v, *args), 2 * out)
        ones = torch.ones_like(v)
        row_sums = path(q, k, ones, *args)  # each output = sum of that row's weights
        assert not torch.allclose(row_sums, torch.ones_like(row_sums), atol=0.05)
    # the expected value of the first position: it attends to itself only
    bias = pos_w[(pos_w.shape[0] - 1) // 2] + time_w[0]
    weight = torch.nn.functional.silu((q[0] * k[0]).sum(-1) + bias) / 12  # per head
    torch.testing.assert_close(rec.naive_attention(q, k, v, history, pos_w, time_w)[0],
                               weight.unsqueeze(-1) * v[0])


@pytest.mark.parametrize("attention", rec.ATTENTION_PATHS)
def test_changing_a_future_item_leaves_earlier_positions_unchanged(attention: str) -> None:
    runner = rec.build("ranking", BuildOptions(recommender=RecommenderOptions(hstu_attention=attention)))
    with torch.inference_mode():
        values, history, _ = runner.pack()
        layer = runner.model.layers[0]
        before = layer(values, history, attention)
        changed = values.clone()
        changed[20] += 1.0  # item 20 of the single history
        after = layer(changed, history, attention)
    torch.testing.assert_close(after[:20], before[:20], rtol=0, atol=0)
    assert not torch.allclose(after[20:], before[20:])


@pytest.mark.parametrize("batch", [1, 5])
def test_naive_and_fused_rank_alike(batch: int) -> None:
    outs = [
        rec.build("ranking", BuildOptions(batch_size=batch, recommender=RecommenderOptions(hstu_attention=path)))
        .run(NullPhases())
        for path in rec.ATTENTION_PATHS
    ]
    assert outs[0].ranking == outs[1].ranking
    torch.testing.assert_close(outs[0].scores, outs[1].scores, rtol=1e-4, atol=1e-5)


def test_runs_phases_and_ranks_top_k_candidates_deterministically() -> None:
    runner = rec.build("ranking", BuildOptions(batch_size=3))
    phases = RecordingPhases()
    out = runner.run(phases)
    assert phases.names == ["input_processing", "hstu_stack", "output"]
    assert out.ranking is not None and len(out.ranking) == 3
    for user, ranking in enumerate(out.ranking):
        assert len(ranking) == TINY.top_k
        assert set(ranking) <= set(runner.candidate_ids[user].tolist())
    assert bool((out.scores[:, :-1] >= out.scores[:, 1:]).all())  # best first
    again = rec.build("ranking", BuildOptions(batch_size=3)).run(NullPhases())
    other = rec.build("ranking", BuildOptions(batch_size=3, seed=1)).run(NullPhases())
    assert again.ranking == out.ranking and other.ranking != out.ranking
    assert runner.metrics()["history_tokens"] == sum(runner.lengths)
    logits = runner.teacher_forced_logits([])
    assert logits.shape == (3, 1, TINY.candidates)
    top = logits[:, 0].argmax(-1)
    assert [runner.candidate_ids[u, top[u]].item() for u in range(3)] == [r[0] for r in out.ranking]


def test_histories_are_power_law_and_long_ones_are_truncated() -> None:
    lengths = rec.history_lengths(TINY, 2000, seed=0)
    low = TINY.long_max_len // 16
    assert min(lengths) >= low and max(lengths) == TINY.long_max_len
    capped = sum(n == TINY.long_max_len for n in lengths) / len(lengths)
    assert 0.03 < capped < 0.10  # Pareto(1): P(L >= 16 * low) = 1/16
    offsets = rec.offsets_of((300, 5), torch.device("cpu"))
    history = rec.Jagged(offsets, (300, 5), torch.arange(305.0))
    kept, values = rec.keep_last(history, torch.arange(305.0).unsqueeze(1), 128)
    assert kept.lengths == (128, 5) and values[0, 0] == 300 - 128 and kept.timestamps[-1] == 304


def test_int8_weight_only_quantizes_the_hstu_linears() -> None:
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    runner = rec.build("ranking", BuildOptions())
    quantize_(runner.model, Int8WeightOnlyConfig())
    out = runner.run(NullPhases())
    assert out.ranking is not None and len(out.ranking[0]) == TINY.top_k


def test_paper_scale_facts() -> None:
    facts = rec.describe("ranking", "paper")
    config = rec.SCALES["paper"]
    assert facts.layers == 24 and facts.hidden_size == 512
    table = config.item_rows * config.embed_dim
    assert 1_000_000 <= config.item_rows <= 15_000_000
    assert table < facts.parameters < table * 1.05  # the embedding table dominates
    assert facts.weight_bytes == 2 * facts.parameters  # bfloat16
    assert facts.flops_per_token > 0


def test_bad_attention_path_is_refused() -> None:
    with pytest.raises(ValueError, match="hstu_attention"):
        rec.build("ranking", BuildOptions(recommender=RecommenderOptions(hstu_attention="flash")))
