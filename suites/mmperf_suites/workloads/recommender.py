"""Generative recommender (task ``ranking``): an HSTU stack (Zhai et al. 2024, "Actions Speak
Louder than Words") over jagged user histories, scoring candidate items per user.

One HSTU layer, on the jagged values x [T, D] of all users' histories (T = total tokens):

    u, v, q, k = split(SiLU(Linear(LayerNorm(x))))            # the "uvqk" projection
    A[i, j]    = SiLU(q_i . k_j + pos_bias[j - i] + time_bias[bucket(t_i - t_j)]) / N
                 for j <= i within one history, else 0        # no softmax
    x          = x + Linear(u * LayerNorm(A @ v))

Both norms are affine-free with eps 1e-6, as in the reference. N is the *padded* length of the
stage, i.e. the longest history in the batch at that stage (the reference divides by the
padded length ``n``); both attention paths use that same N, so they agree.

Attention paths (``BuildOptions.recommender.hstu_attention``):

* ``naive``: the reference's einsum path: pad q, k, v and timestamps to [B, N, ...], build
  the [B, H, N, N] score tensor, mask causal + length, unpad: cost grows with B x N^2 whatever
  the real lengths;
* ``fused``: jagged and tiled, one computation over the whole batch: the histories are cut
  into tiles of ``block_size`` rows and only the (query tile, key tile) pairs of one history
  on or below the diagonal are computed, all pairs at once (what a fused jagged kernel visits),
  so padding and the masked upper tiles are never computed. Torch ops only, no loop over users;
  one graph under ``torch.compile``.

Model shape: ``long_layers`` layers on histories of up to ``long_max_len`` items, then each
history keeps its last ``short_max_len`` items for ``short_layers`` more (the paper's HSTU: 3
layers on ~5k-long histories + 21 on ~2k, width 512). The user's state is the last position's
output; a top MLP scores each candidate on [user, item, user * item]; the top ``top_k``
candidates are the ranking.

Inputs (seeded): history lengths from a power law (Pareto, alpha 1, lower bound max_len / 16,
capped at max_len: many short histories, a few at the cap), item ids uniform over the
embedding table, timestamps with exponential gaps (mean one hour), ``candidates`` random items.

Phases: ``input_processing`` (pack the per-user histories into values + offsets, embedding
lookups of history and candidates, the fused path's tile schedule), ``hstu_stack``, ``output`` (top MLP, scores, top-k).
``runner.step`` is the HSTU stack (what the ``compile`` lever compiles); ``runner.model`` holds
the embedding table, HSTU layers and top MLP (what int8 levers quantize: all are ``nn.Linear``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mmperf_levers.contract import BuildOptions, ModelFacts, Output, PhaseRecorder
from torch import nn

WORKLOAD = "recommender"
TASKS = ("ranking",)
ATTENTION_PATHS = ("naive", "fused")
NORM_EPS = 1e-6
TIME_BUCKET_LOG_BASE = 0.301  # log-spaced time buckets, as in the reference's bucketization
SECONDS_PER_GAP = 3600.0  # mean gap between a user's actions


@dataclass(frozen=True)
class HstuConfig:
    item_rows: int  # embedding table rows (item ids)
    embed_dim: int  # D, the model width
    heads: int
    attention_dim: int  # per head, q and k
    linear_dim: int  # per head, u and v
    long_layers: int
    long_max_len: int  # history cap of the first stage
    short_layers: int
    short_max_len: int  # items each history keeps for the second stage
    time_buckets: int
    block_size: int  # query rows per block in the fused path
    candidates: int  # items scored per user
    top_k: int
    mlp_hidden: int
    init_std: float
    describe_dtype: str

    @property
    def layers(self) -> int:
        return self.long_layers + self.short_layers


SCALES: dict[str, HstuConfig] = {
    "tiny": HstuConfig(
        item_rows=10_000, embed_dim=64, heads=2, attention_dim=32, linear_dim=32,
        long_layers=1, long_max_len=256, short_layers=2, short_max_len=128, time_buckets=128,
        block_size=32, candidates=64, top_k=10, mlp_hidden=64, init_std=0.1,
        describe_dtype="float32",
    ),
    "small": HstuConfig(
        item_rows=1_000_000, embed_dim=256, heads=4, attention_dim=64, linear_dim=64,
        long_layers=2, long_max_len=1024, short_layers=4, short_max_len=512, time_buckets=128,
        block_size=128, candidates=256, top_k=50, mlp_hidden=256, init_std=0.05,
        describe_dtype="float32",
    ),
    "paper": HstuConfig(  # 3 layers on ~5k + 21 on ~2k, width 512; tables 1M-15M rows
        item_rows=10_000_000, embed_dim=512, heads=4, attention_dim=128, linear_dim=128,
        long_layers=3, long_max_len=5120, short_layers=21, short_max_len=2048,
        time_buckets=128, block_size=256, candidates=2048, top_k=100, mlp_hidden=512,
        init_std=0.02, describe_dtype="bfloat16",
    ),
}


# ----------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class Jagged:
    """The layout of B users' histories packed back to back in values [T, ...] (T = total
    items): history b is values[offsets[b] : offsets[b + 1]]."""

    offsets: torch.Tensor  # [B + 1], int64, offsets[0] = 0, offsets[B] = T
    lengths: tuple[int, ...]  # B Python ints (static per run: shapes, loops, compile guards)
    timestamps: torch.Tensor  # [T], seconds

    @property
    def max_len(self) -> int:
        return max(self.lengths)


def relative_bias(
    pos_weight: torch.Tensor,  # [2 * max_len - 1]
    time_weight: torch.Tensor,  # [buckets + 1]
    timestamps: torch.Tensor,  # [..., N]
    query_start: int = 0,
    query_count: int | None = None,
) -> torch.Tensor:  # [..., Nq, N]
    """Learned bias of each (query i, key j) pair: by relative position j - i and by the
    log-bucketed time between them. Queries are rows [query_start, query_start + Nq)."""
    n = timestamps.shape[-1]
    count = n - query_start if query_count is None else query_count
    center = (pos_weight.shape[0] - 1) // 2
    rows = torch.arange(query_start, query_start + count, device=timestamps.device)
    cols = torch.arange(n, device=timestamps.device)
    pos = pos_weight[center + cols.unsqueeze(0) - rows.unsqueeze(1)]  # [Nq, N]
    gap = timestamps[..., query_start : query_start + count, None] - timestamps[..., None, :]
    bucket = torch.log(gap.abs().clamp(min=1.0)) / TIME_BUCKET_LOG_BASE
    bucket = bucket.long().clamp(0, time_weight.shape[0] - 1)
    return (pos + time_weight[bucket]).to(pos_weight.dtype)  # [..., Nq, N]


def naive_attention(
    q: torch.Tensor,  # [T, H, A]
    k: torch.Tensor,  # [T, H, A]
    v: torch.Tensor,  # [T, H, L]
    history: Jagged,
    pos_weight: torch.Tensor,
    time_weight: torch.Tensor,
) -> torch.Tensor:  # [T, H, L]
    """The reference's padded path: dense [B, H, N, N] scores, masked."""
    batch, n = len(history.lengths), history.max_len
    lengths = torch.tensor(history.lengths, device=q.device)
    user = torch.repeat_interleave(torch.arange(batch, device=q.device), lengths)  # [T]
    position = torch.arange(q.shape[0], device=q.device) - history.offsets[user]  # [T]

    def pad(x: torch.Tensor) -> torch.Tensor:  # [T, ...] -> [B, N, ...]
        dense = x.new_zeros((batch, n, *x.shape[1:]))
        dense[user, position] = x
        return dense

    scores = torch.einsum("bnhd,bmhd->bhnm", pad(q), pad(k))  # [B, H, N, N]
    bias = relative_bias(pos_weight, time_weight, pad(history.timestamps))  # [B, N, N]
    scores = F.silu(scores + bias.unsqueeze(1)) / n
    cols = torch.arange(n, device=q.device)
    valid = (cols.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1)  # [B, 1, N] keys that exist
    mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril() & valid  # [B, N, N]
    scores = scores * mask.unsqueeze(1)
    out = torch.einsum("bhnm,bmhd->bnhd", scores, pad(v))  # [B, N, H, L]
    return out[user, position]


@dataclass(frozen=True)
class TileLayout:
    """The jagged batch cut into tiles of ``block`` rows (each history padded to a whole number
    of tiles) and the (query tile, key tile) pairs a causal fused kernel computes: same history,
    key tile at or before the query tile. Built with tensor ops from the lengths, no loop over
    users; NT tiles, P pairs."""

    rows: torch.Tensor  # [NT, block] row of each tile slot in values [T, ...] (clamped)
    valid: torch.Tensor  # [NT, block] slot holds a real item
    position: torch.Tensor  # [NT, block] position of the slot inside its history
    pair_q: torch.Tensor  # [P] query tile of each pair
    pair_k: torch.Tensor  # [P] key tile of each pair
    slots: torch.Tensor  # [T] flat slot (tile * block + row) of each real item, in values order


def tile_layout(history: Jagged, block: int) -> TileLayout:
    device = history.offsets.device
    lengths = torch.tensor(history.lengths, device=device)  # [B]
    tiles_per_user = (lengths + block - 1) // block  # [B]
    n_tiles = sum((n + block - 1) // block for n in history.lengths)  # Python int: static shapes
    tile_user = torch.repeat_interleave(
        torch.arange(len(history.lengths), device=device), tiles_per_user, output_size=n_tiles
    )  # [NT]
    first_tile = torch.cumsum(tiles_per_user, 0) - tiles_per_user  # [B]
    tile_local = torch.arange(n_tiles, device=device) - first_tile[tile_user]  # [NT]
    position = tile_local.unsqueeze(1) * block + torch.arange(block, device=device)  # [NT, block]
    valid = position < lengths[tile_user].unsqueeze(1)
    rows = (history.offsets[tile_user].unsqueeze(1) + position).clamp(max=history.offsets[-1] - 1)
    # query tile i of a history pairs with that history's key tiles 0..i
    n_pairs = sum(t * (t + 1) // 2 for t in ((n + block - 1) // block for n in history.lengths))
    pair_q = torch.repeat_interleave(
        torch.arange(n_tiles, device=device), tile_local + 1, output_size=n_pairs
    )  # [P]
    first_pair = torch.cumsum(tile_local + 1, 0) - (tile_local + 1)  # [NT]
    pair_k = pair_q - tile_local[pair_q] + (torch.arange(n_pairs, device=device) - first_pair[pair_q])
    slots = torch.arange(n_tiles * block, device=device)[valid.flatten()]  # [T]
    return TileLayout(rows, valid, position, pair_q, pair_k, slots)


def fused_attention(
    q: torch.Tensor,  # [T, H, A]
    k: torch.Tensor,  # [T, H, A]
    v: torch.Tensor,  # [T, H, L]
    history: Jagged,
    pos_weight: torch.Tensor,
    time_weight: torch.Tensor,
    block_size: int,
    layout: TileLayout | None = None,
) -> torch.Tensor:  # [T, H, L]
    """Jagged, tiled path, one computation over the whole batch: every (query tile, key tile)
    pair of :func:`tile_layout` at once (the tiles a causal fused kernel visits), so neither
    the padding of short histories nor the tiles above the diagonal are ever computed. The
    same ops form one graph under ``torch.compile``. torch's flex attention would be the
    library kernel for this block-sparse pattern, but it always applies softmax, which HSTU's
    pointwise SiLU attention does not."""
    lay = layout if layout is not None else tile_layout(history, block_size)
    n = history.max_len  # the same N as the padded path (see module docstring)
    qt, kt, vt = q[lay.rows], k[lay.rows], v[lay.rows]  # [NT, block, H, .]
    ts = history.timestamps[lay.rows]  # [NT, block]
    qp, kp = lay.position[lay.pair_q], lay.position[lay.pair_k]  # [P, block]
    scores = torch.einsum("pnhd,pmhd->phnm", qt[lay.pair_q], kt[lay.pair_k])  # [P, H, bq, bk]
    center = (pos_weight.shape[0] - 1) // 2
    rel = (kp.unsqueeze(1) - qp.unsqueeze(2)).clamp(-center, center)  # [P, bq, bk] j - i
    gap = ts[lay.pair_q].unsqueeze(2) - ts[lay.pair_k].unsqueeze(1)  # [P, bq, bk]
    bucket = (torch.log(gap.abs().clamp(min=1.0)) / TIME_BUCKET_LOG_BASE).long()
    bias = (pos_weight[center + rel] + time_weight[bucket.clamp(0, time_weight.shape[0] - 1)])
    mask = (kp.unsqueeze(1) <= qp.unsqueeze(2)) & lay.valid[lay.pair_k].unsqueeze(1)  # [P, bq, bk]
    scores = F.silu(scores + bias.to(scores.dtype).unsqueeze(1)) / n
    scores = scores * mask.unsqueeze(1)
    pairs = torch.einsum("phnm,pmhd->pnhd", scores, vt[lay.pair_k])  # [P, bq, H, L]
    tiles = pairs.new_zeros((*qt.shape[:3], v.shape[-1])).index_add_(0, lay.pair_q, pairs)
    return tiles.flatten(0, 1)[lay.slots]  # [T, H, L]


class HstuLayer(nn.Module):
    def __init__(self, config: HstuConfig, max_len: int) -> None:
        super().__init__()
        self.config = config
        h = config.heads
        self.split_sizes = [
            h * config.linear_dim, h * config.linear_dim, h * config.attention_dim,
            h * config.attention_dim,
        ]  # u, v, q, k
        self.uvqk = nn.Linear(config.embed_dim, sum(self.split_sizes))
        self.out = nn.Linear(h * config.linear_dim, config.embed_dim)
        self.pos_weight = nn.Parameter(torch.empty(2 * max_len - 1))  # relative position j - i
        self.time_weight = nn.Parameter(torch.empty(config.time_buckets + 1))

    def forward(
        self, x: torch.Tensor, history: Jagged, attention: str, layout: TileLayout | None = None
    ) -> torch.Tensor:
        # x [T, D] -> [T, D]
        c = self.config
        tokens = x.shape[0]
        normed = F.layer_norm(x, (c.embed_dim,), eps=NORM_EPS)
        u, v, q, k = torch.split(F.silu(self.uvqk(normed)), self.split_sizes, dim=-1)
        q = q.view(tokens, c.heads, c.attention_dim)
        k = k.view(tokens, c.heads, c.attention_dim)
        v = v.view(tokens, c.heads, c.linear_dim)
        if attention == "naive":
            attn = naive_attention(q, k, v, history, self.pos_weight, self.time_weight)
        elif attention == "fused":
            attn = fused_attention(
                q, k, v, history, self.pos_weight, self.time_weight, c.block_size, layout
            )
        else:
            raise ValueError(f"hstu_attention must be one of {ATTENTION_PATHS}, not {attention!r}")
        attn = attn.reshape(tokens, c.heads * c.linear_dim)  # [T, H*L]
        gated = u * F.layer_norm(attn, (attn.shape[-1],), eps=NORM_EPS)
        return x + self.out(gated)


# the fused path's tile layouts of the long and the short stage
Schedule = tuple[TileLayout, TileLayout]


def offsets_of(lengths: tuple[int, ...], device: torch.device) -> torch.Tensor:  # [B + 1]
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.tensor(lengths, device=device).cumsum(0)
    return offsets


def keep_last(history: Jagged, values: torch.Tensor, max_len: int) -> tuple[Jagged, torch.Tensor]:
    """Each history's last ``max_len`` items (the most recent actions): layout, values."""
    device = values.device
    keep = tuple(min(length, max_len) for length in history.lengths)
    index, end = [], 0
    for length, kept in zip(history.lengths, keep):
        end += length
        index.append(torch.arange(end - kept, end, device=device))
    rows = torch.cat(index)
    return Jagged(offsets_of(keep, device), keep, history.timestamps[rows]), values[rows]


class Hstu(nn.Module):
    """Embedding table + HSTU layers + top MLP."""

    def __init__(self, config: HstuConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.item_rows, config.embed_dim)
        self.layers = nn.ModuleList(
            [HstuLayer(config, config.long_max_len) for _ in range(config.long_layers)]
            + [HstuLayer(config, config.short_max_len) for _ in range(config.short_layers)]
        )
        self.top_mlp = nn.Sequential(
            nn.Linear(3 * config.embed_dim, config.mlp_hidden),
            nn.SiLU(),
            nn.Linear(config.mlp_hidden, 1),
        )

    @torch.no_grad()
    def init_weights(self, std: float, generator: torch.Generator) -> None:
        """Every parameter ~ N(0, std), drawn on the parameters' device (the paper-scale table
        has 5G entries)."""
        for p in self.parameters():
            p.normal_(0.0, std, generator=generator)

    def stack(
        self, values: torch.Tensor, history: Jagged, attention: str, schedule: Schedule | None = None
    ) -> torch.Tensor:
        """values [T, D] -> user states [B, D] (each history's last position). ``schedule``:
        the fused path's tile layout of each stage (:meth:`schedule`), else built here."""
        long = self.config.long_layers
        if attention == "fused" and schedule is None:
            schedule = self.schedule(history)
        for layer in self.layers[:long]:
            values = layer(values, history, attention, schedule[0] if schedule else None)
        history, values = keep_last(history, values, self.config.short_max_len)
        for layer in self.layers[long:]:
            values = layer(values, history, attention, schedule[1] if schedule else None)
        return values[history.offsets[1:] - 1]

    def schedule(self, history: Jagged) -> Schedule:
        """The tile layouts of both stages, from the histories' offsets alone: what a fused
        jagged kernel's launch computes before it runs (input processing)."""
        keep = tuple(min(n, self.config.short_max_len) for n in history.lengths)
        short = Jagged(offsets_of(keep, history.offsets.device), keep, history.timestamps)
        return tile_layout(history, self.config.block_size), tile_layout(short, self.config.block_size)

    def score(self, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """users [B, D], candidates [B, C, D] -> scores [B, C]."""
        users = users.unsqueeze(1).expand_as(candidates)
        features = torch.cat([users, candidates, users * candidates], dim=-1)  # [B, C, 3D]
        return self.top_mlp(features).squeeze(-1)


# ----------------------------------------------------------------------------------------------
# Inputs and facts


def history_lengths(config: HstuConfig, batch: int, seed: int) -> list[int]:
    """Pareto(alpha=1) lengths with lower bound max_len / 16, capped at max_len."""
    u = torch.rand(batch, generator=torch.Generator().manual_seed(seed))
    low = max(1, config.long_max_len // 16)
    lengths = (low / (1.0 - u).clamp(min=1e-9)).floor().clamp(max=config.long_max_len)
    return [int(n) for n in lengths]


def flops_per_token(config: HstuConfig, mean_len: float) -> float:
    """2 x matmul weights per token (uvqk, output projection) plus attention: q.k and A.v over
    on average half the (mean) history, per layer; the top MLP runs per candidate, not per
    token, and is left out."""
    h, d = config.heads, config.embed_dim
    matmul = d * h * (2 * config.linear_dim + 2 * config.attention_dim) + h * config.linear_dim * d
    attention = 2 * (mean_len / 2) * h * (config.attention_dim + config.linear_dim)
    return float(config.layers * (2 * matmul + attention))


def mean_history_len(config: HstuConfig) -> float:
    """Mean of the capped Pareto(1) lengths: low * (1 + ln(max / low))."""
    low = max(1, config.long_max_len // 16)
    return low * (1.0 + math.log(config.long_max_len / low))


def facts_of(model: Hstu, config: HstuConfig, dtype: torch.dtype) -> ModelFacts:
    parameters = sum(p.numel() for p in model.parameters())
    return ModelFacts(
        parameters=parameters,
        weight_bytes=parameters * dtype.itemsize,
        flops_per_token=flops_per_token(config, mean_history_len(config)),
        layers=config.layers,
        hidden_size=config.embed_dim,
    )


def describe(task: str, scale: str) -> ModelFacts:
    """Parameters (embedding table included), weight bytes and FLOPs, on the meta device."""
    check_task(task)
    config = SCALES[scale]
    dtype = getattr(torch, config.describe_dtype)
    with torch.device("meta"):
        model = Hstu(config).to(dtype)
    return facts_of(model, config, dtype)


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"recommender has tasks {TASKS}, not {task!r}")


# ----------------------------------------------------------------------------------------------
# Runner

# step(values [T, D], history, fused-path schedule or None) -> user states [B, D]
StepFn = Callable[[torch.Tensor, Jagged, "Schedule | None"], torch.Tensor]


class RecommenderRunner:
    """An HSTU with random weights and a fixed batch of user histories and candidates."""

    workload = WORKLOAD

    def __init__(self, task: str, options: BuildOptions, config: HstuConfig) -> None:
        if options.recommender.hstu_attention not in ATTENTION_PATHS:
            raise ValueError(f"hstu_attention must be one of {ATTENTION_PATHS}")
        self.task = task
        self.options = options
        self.config = config
        dtype: torch.dtype = getattr(torch, options.dtype)
        device = torch.device(options.device)

        with device:
            self.model = Hstu(config)
        self.model.init_weights(config.init_std, torch.Generator(device).manual_seed(options.seed))
        self.model = self.model.to(dtype=dtype).eval()
        gen = torch.Generator().manual_seed(options.seed + 1)  # inputs: drawn on the CPU
        self.facts = facts_of(self.model, config, dtype)

        batch = options.batch_size
        self.lengths = history_lengths(config, batch, options.seed + 2)
        # one tensor per user, as requests arrive; packing them is part of input processing
        self.item_ids = [
            torch.randint(config.item_rows, (n,), generator=gen).to(device) for n in self.lengths
        ]
        self.timestamps = [
            torch.cumsum(torch.empty(n).exponential_(1.0 / SECONDS_PER_GAP, generator=gen), 0)
            .to(device=device, dtype=torch.float32)
            for n in self.lengths
        ]
        self.candidate_ids = torch.randint(
            config.item_rows, (batch, config.candidates), generator=gen
        ).to(device)  # [B, C]

        attention = options.recommender.hstu_attention

        def step(values: torch.Tensor, history: Jagged, schedule: Schedule | None) -> torch.Tensor:
            return self.model.stack(values, history, attention, schedule)

        self.step: StepFn = step
        self.step_names: tuple[str, ...] = ("step",)

    def pack(self) -> tuple[torch.Tensor, Jagged, torch.Tensor]:
        """History embeddings [T, D], their jagged layout, candidate embeddings [B, C, D]."""
        ids = torch.cat(self.item_ids)  # [T]
        lengths = tuple(self.lengths)
        history = Jagged(offsets_of(lengths, ids.device), lengths, torch.cat(self.timestamps))
        values = self.model.item_embedding(ids)  # [T, D]
        return values, history, self.model.item_embedding(self.candidate_ids)

    @torch.inference_mode()
    def run(self, phases: PhaseRecorder) -> Output:
        with phases.phase("input_processing"):
            values, history, candidates = self.pack()
            schedule = self.schedule_of(history)
        with phases.phase("hstu_stack"):
            users = self.step(values, history, schedule)  # [B, D]
        with phases.phase("output"):
            scores = self.model.score(users, candidates)  # [B, C]
            top_scores, top = scores.topk(self.config.top_k, dim=1)  # [B, k]
            ranking = torch.gather(self.candidate_ids, 1, top)
        return Output(ranking=ranking.tolist(), scores=top_scores)

    @torch.inference_mode()
    def teacher_forced_logits(self, tokens: list[list[int]]) -> torch.Tensor:
        """The ranking's analogue of teacher-forced logits: the scores of *all* fixed candidates,
        [B, 1, C] (one "position" whose "vocabulary" is the candidate set), so lossy levers get
        top-1 agreement, KL and SQNR on the model's output. ``tokens`` is unused: a ranking
        model has no sequence to force."""
        values, history, candidates = self.pack()
        return self.model.score(self.step(values, history, self.schedule_of(history)), candidates).unsqueeze(1)

    def schedule_of(self, history: Jagged) -> Schedule | None:
        fused = self.options.recommender.hstu_attention == "fused"
        return self.model.schedule(history) if fused else None

    def roofline_inputs(self) -> tuple[str, float, float]:
        """One ``hstu_stack`` call: it reads every HSTU layer's weights (stored bytes, so int8
        counts as int8) and reads + writes the jagged activations [T, D] once per layer; the
        embedding table is a lookup of T rows, done in input processing."""
        layers = sum(
            int(t.numel() * t.element_size()) if not hasattr(t, "__tensor_flatten__")
            else sum(int(getattr(t, n).numel() * getattr(t, n).element_size()) for n in t.__tensor_flatten__()[0])
            for t in self.model.layers.parameters()
        )
        tokens = sum(self.lengths)
        itemsize = getattr(torch, self.options.dtype).itemsize
        activations = 2 * tokens * self.config.embed_dim * itemsize * self.config.layers
        flops = flops_per_token(self.config, sum(self.lengths) / len(self.lengths)) * tokens
        return "hstu_stack_ms", float(layers + activations), flops

    def metrics(self) -> dict[str, float]:
        return {
            "history_tokens": float(sum(self.lengths)),
            "max_history_tokens": float(max(self.lengths)),
            "candidates": float(self.config.candidates),
        }


def build(task: str, options: BuildOptions) -> RecommenderRunner:
    check_task(task)
    if options.scale not in SCALES:
        raise ValueError(f"recommender scales are {sorted(SCALES)}, not {options.scale!r}")
    return RecommenderRunner(task, options, SCALES[options.scale])
