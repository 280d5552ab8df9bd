"""The paper's views of a results document, as Markdown tables.

* progression: per workload/task and batch size, the speedup over eager of each step of the
  paper's lever progression (attention -> + static cache and compile -> + int8 = the optimized
  baseline ``stack`` -> + LayerSkip), measured with its CI beside the figure the paper reports,
  and the geometric mean across workloads (the paper's 3.88x);
* speedups: every lever set's speedup over eager, per workload/task;
* phases: per benchmark, the share of each phase in the latency (from per-round phase sums)
  and, with ``--mmperf-profile``, the share of each operator class;
* batch findings: per workload and batch size, attention and KV-reorder shares, KV-cache bytes,
  and HSTU's fused-attention speedup.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument

PHASE_SUFFIX = "_ms"
NOT_PHASES = {"latency_ms", "first_call_ms", "latency_device_ms", "latency_host_ms", "lever_setup_ms",
              "compile_ms", "memory_floor_ms"}
EAGER_PREFIX = "eager_"

STEPS = ("attention", "compiled", "stack", "stack_layerskip")
STEP_TITLES = {
    "attention": "attention",
    "compiled": "+ static cache + compile",
    "stack": "+ int8 = stack",
    "stack_layerskip": "stack + LayerSkip",
}


@dataclass(frozen=True)
class PaperFigure:
    """A speedup over eager the paper (or a companion post) reports for one step, batch 1 on a
    GPU unless ``batch`` says otherwise: a value or a range."""

    low: float
    high: float | None = None
    note: str = ""

    def text(self) -> str:
        value = f"{self.low:.2f}x" if self.high is None else f"{self.low:.2f}-{self.high:.2f}x"
        return f"{value} {self.note}".strip()


# (workload, step, batch) -> what the paper reports. Sources, each copied from its publication:
PAPER_FIGURES: dict[tuple[str, str, int], PaperFigure] = {
    # Lee et al. 2024, section on efficient attention: SDPA/FlashAttention at batch 1 gives
    # 0.93-1.13x across the LLM, Seamless and Chameleon.
    ("llm", "attention", 1): PaperFigure(0.93, 1.13),
    ("speech", "attention", 1): PaperFigure(0.93, 1.13),
    ("text_image", "attention", 1): PaperFigure(0.93, 1.13),
    # Lee et al. 2024, section on efficient attention: HSTU fused jagged attention 2.24x at
    # batch 1, 9.9x at batch 32.
    ("recommender", "attention", 1): PaperFigure(2.24),
    ("recommender", "attention", 32): PaperFigure(9.9),
    # Lee et al. 2024, section on torch.compile + CUDA graphs: Code Llama 7B 3.04x at batch 1.
    # gpt-fast blog (Llama-2-7B, A100): compile + static KV cache 107 vs eager 25.5 tok/s = 4.2x.
    ("llm", "compiled", 1): PaperFigure(3.04, note="(7B; gpt-fast blog 4.20x)"),
    # Lee et al. 2024, same section: Seamless 1.93-2.83x end to end; the Seamless blog post
    # ("Seamless M4T, fast"): 2.7x end to end (text decoder 2x, vocoder 30x).
    ("speech", "compiled", 1): PaperFigure(1.93, 2.83, "(Seamless blog 2.7x)"),
    # Lee et al. 2024, section on quantization: compile + AutoQuant at batch 1, Code Llama 7B
    # 5.29x (34B 2.05x); gpt-fast blog: + int8 weight-only 157 vs 25.5 tok/s = 6.16x.
    ("llm", "stack", 1): PaperFigure(5.29, note="(7B; 34B 2.05x; gpt-fast blog 6.16x)"),
    # Lee et al. 2024, section on quantization: Chameleon 1.53-2.83x.
    ("text_image", "stack", 1): PaperFigure(1.53, 2.83),
}
# Lee et al. 2024, section on torch.compile + CUDA graphs: geometric mean over the workloads
# at batch 1 of the compile step, 1.77x.
PAPER_COMPILED_GEOMEAN = 1.77
# Lee et al. 2024, abstract: the software stack gives 3.88x on average; LayerSkip ~1.58x more.
PAPER_STACK_MEAN = 3.88
PAPER_LAYERSKIP_ON_TOP = 1.58


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _lever_label(b: BenchmarkRecord) -> str:
    """The lever set as the suite named it (``stack``, ``compiled``), else the levers applied."""
    named = b.params.get("lever_set") if b.params else None
    if isinstance(named, str) and named:
        return named
    stack = b.id.rsplit("[", 1)[-1].rstrip("]") if "[" in b.id else ""
    if "stack" in stack:
        return "stack"
    return "+".join(b.optimizations) or "eager"


def _step(b: BenchmarkRecord) -> str | None:
    step = b.params.get("progression_step") if b.params else None
    return step if isinstance(step, str) and step in STEPS else None


def _speedup_text(b: BenchmarkRecord) -> str:
    s = b.speedup_vs_eager
    assert s is not None
    return f"{s.median:.2f}x [{s.ci_low:.2f}, {s.ci_high:.2f}]"


@dataclass(frozen=True)
class GeoMean:
    value: float
    ci_low: float
    ci_high: float
    count: int


def geometric_mean(records: Sequence[BenchmarkRecord], z: float = 1.96) -> GeoMean | None:
    """Geometric mean of speedups: first over a workload's tasks, then across workloads (each
    workload counts once, as in the paper's average). The interval combines each speedup's CI
    in log space (half-width / z as its standard error), treating benchmarks as independent."""
    by_workload: dict[str, list[tuple[float, float]]] = {}
    for b in records:
        s = b.speedup_vs_eager
        if s is None or s.median <= 0 or s.ci_low <= 0:
            continue
        se = (math.log(s.ci_high) - math.log(s.ci_low)) / (2 * z)
        by_workload.setdefault(b.workload or "?", []).append((math.log(s.median), se))
    if not by_workload:
        return None
    means, variances = [], []
    for values in by_workload.values():
        n = len(values)
        means.append(sum(m for m, _ in values) / n)
        variances.append(sum(se * se for _, se in values) / (n * n))
    k = len(means)
    center = sum(means) / k
    se = math.sqrt(sum(variances)) / k
    return GeoMean(math.exp(center), math.exp(center - z * se), math.exp(center + z * se), k)


def progression_table(doc: RunDocument) -> str:
    """Per batch size: one row per workload/task with each step's measured speedup and the
    paper's figure, then the geometric mean across workloads of the compile step, the stack
    and the stack with LayerSkip."""
    steps = [b for b in doc.benchmarks if _step(b) and b.speedup_vs_eager is not None]
    if not steps:
        return "(no benchmark of the progression (attention, compiled, stack) in this document)\n"
    out: list[str] = []
    for batch in sorted({b.batch_size for b in steps}):
        at_batch = [b for b in steps if b.batch_size == batch]
        out.append(f"### Progression at batch {batch}: speedup over eager, measured [95% CI] (paper)\n")
        head = ["workload/task", *(STEP_TITLES[s] for s in STEPS)]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        cells: dict[str, dict[str, str]] = {}
        for b in at_batch:
            step = _step(b)
            assert step is not None
            paper = PAPER_FIGURES.get((b.workload or "", step, batch))
            text = _speedup_text(b) + (f" (paper {paper.text()})" if paper else "")
            cells.setdefault(f"{b.workload}/{b.task}", {})[step] = text
        for key in sorted(cells):
            out.append("| " + " | ".join([_escape(key), *(_escape(cells[key].get(s, "-")) for s in STEPS)]) + " |")
        out.append("")
        out.append("| geometric mean across workloads | measured [95% CI] | workloads | paper |")
        out.append("|---|---|---|---|")
        paper_means = {
            "compiled": f"{PAPER_COMPILED_GEOMEAN:.2f}x",
            "stack": f"{PAPER_STACK_MEAN:.2f}x",
            # inferred: the abstract's stack mean times its LayerSkip gain on top
            "stack_layerskip": f"{PAPER_STACK_MEAN:.2f}x x {PAPER_LAYERSKIP_ON_TOP:.2f} = "
                               f"{PAPER_STACK_MEAN * PAPER_LAYERSKIP_ON_TOP:.2f}x (LLM only)",
        }
        for step in ("attention", "compiled", "stack", "stack_layerskip"):
            g = geometric_mean([b for b in at_batch if _step(b) == step])
            if g is None:
                continue
            paper_text = paper_means.get(step, "-") if batch == 1 else "-"
            out.append(f"| {STEP_TITLES[step]} | {g.value:.2f}x [{g.ci_low:.2f}, {g.ci_high:.2f}] "
                       f"| {g.count} | {_escape(paper_text)} |")
        out.append("")
    return "\n".join(out) + "\n"


def speedup_table(doc: RunDocument) -> str:
    """Every lever set's speedup over eager (batch 1), one column per lever set."""
    rows: dict[str, dict[str, str]] = {}
    levers: list[str] = []
    for b in doc.benchmarks:
        if b.batch_size != 1 or b.speedup_vs_eager is None:
            continue
        key = f"{b.workload}/{b.task}"
        label = _lever_label(b)
        if label not in levers:
            levers.append(label)
        rows.setdefault(key, {})[label] = _speedup_text(b)
    if not rows:
        return "(no benchmark with a speedup vs eager in this document)\n"
    head = ["workload/task", *levers]
    lines = ["| " + " | ".join(map(_escape, head)) + " |", "|" + "---|" * len(head)]
    for key in sorted(rows):
        lines.append("| " + " | ".join([_escape(key), *(rows[key].get(lv, "-") for lv in levers)]) + " |")
    return "\n".join(lines) + "\n"


def _per_round(m: MetricRecord, rounds: int) -> list[list[float]] | None:
    """The samples of ``m`` grouped by measured round, or None when that cannot be known
    (no round indices and a sample count that is not a whole number of rounds)."""
    if m.rounds is not None:
        groups: dict[int, list[float]] = {}
        for r, v in zip(m.rounds, m.samples):
            groups.setdefault(r, []).append(v)
        return [groups[r] for r in sorted(groups)]
    if rounds <= 0 or m.n % rounds:
        return None
    per = m.n // rounds
    return [list(m.samples[i * per:(i + 1) * per]) for i in range(rounds)]


def phase_shares(b: BenchmarkRecord, prefix: str = "") -> dict[str, float]:
    """Share of each phase in the latency: per measured round, the phase's summed time over
    that round's latency, then the median over rounds. Phases are timed inside the measured
    call, so a share never exceeds 100% (clamped against clock granularity)."""
    lat = b.metrics.get(prefix + "latency_ms")
    if lat is None or lat.median <= 0:
        return {}
    latencies = list(lat.samples)
    out: dict[str, float] = {}
    for name, m in b.metrics.items():
        if not name.startswith(prefix) or (not prefix and name.startswith(EAGER_PREFIX)):
            continue
        base = name.removeprefix(prefix)
        if (not base.endswith(PHASE_SUFFIX) or base in NOT_PHASES
                or base.endswith("_host_ms") or base.endswith("_device_ms")):
            continue
        if base == "tpot_ms" and b.metrics.get(prefix + "speculation_round_ms") is not None:
            continue  # derived per call (speculative decoding): not a timed phase
        groups = _per_round(m, len(latencies))
        if groups is None or len(groups) != len(latencies):
            continue
        shares = [min(1.0, sum(g) / total) for g, total in zip(groups, latencies) if total > 0]
        if shares:
            out[base.removesuffix(PHASE_SUFFIX)] = statistics.median(shares)
    return out


def phase_table(doc: RunDocument, benchmarks: Sequence[BenchmarkRecord] | None = None) -> str:
    lines = ["| benchmark | latency (median) | phase shares | operator classes |", "|---|---|---|---|"]
    for b in benchmarks if benchmarks is not None else doc.benchmarks:
        lat = b.metrics.get("latency_ms")
        if lat is None:
            continue
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(phase_shares(b).items(), key=lambda kv: -kv[1]))
        ops = ""
        if b.profile and isinstance(b.profile.get("op_share"), dict):
            top = sorted(b.profile["op_share"].items(), key=lambda kv: -kv[1])
            ops = ", ".join(f"{k} {v:.0%}" for k, v in top if v >= 0.005)
            if "ops_per_decode_step" in b.profile:
                ops += f"; {b.profile['ops_per_decode_step']:.0f} ops/step"
            if "device_busy_fraction" in b.profile:
                ops += f"; GPU busy {b.profile['device_busy_fraction']:.0%}"
        name = b.id.split("::")[-1]
        lines.append(f"| {_escape(name)} | {lat.median:.1f} ms | {shares or '-'} | {ops or '-'} |")
    return "\n".join(lines) + "\n"


def _op_share(b: BenchmarkRecord, op_class: str) -> float | None:
    """Share of an operator class (``measure.profiling.OP_CLASSES``) in the profiled call."""
    if not b.profile or not isinstance(b.profile.get("op_share"), dict):
        return None
    return float(b.profile["op_share"].get(op_class, 0.0))


def batch_table(doc: RunDocument) -> str:
    """The paper's batch findings, one row per (workload/task, batch): the attention share and
    the KV-cache operator share (index_select / copy_ / cat: speech's beam reorder) of eager's
    time (operator classes, needs --mmperf-profile), the
    KV-cache bytes, and the speedup of the attention lever (HSTU: fused vs naive attention)."""
    rows: dict[tuple[str, int], dict[str, str]] = {}
    for b in doc.benchmarks:
        key = (f"{b.workload}/{b.task}", b.batch_size)
        row = rows.setdefault(key, {})
        if not b.optimizations:
            attention = _op_share(b, "attention")
            reorder = _op_share(b, "kv_cache")  # index_select / copy_ of the beam reorder, cat
            if attention is not None:
                row["attention"] = f"{attention:.0%}"
            if reorder is not None:
                row["reorder"] = f"{reorder:.0%}"
            kv = b.metrics.get("kv_cache_bytes")
            if kv is not None:
                row["kv"] = f"{kv.median / 2**20:.2f} MiB"
        if _step(b) == "attention" and b.speedup_vs_eager is not None:
            row["attention_speedup"] = f"{_speedup_text(b)} ({'+'.join(b.optimizations)})"
    if not rows:
        return "(no benchmark in this document)\n"
    lines = ["| workload/task | batch | attention share (eager) | KV-cache ops share (eager) | KV cache | "
             "attention lever speedup |", "|---|---|---|---|---|---|"]
    for workload_task, batch in sorted(rows):
        r = rows[(workload_task, batch)]
        lines.append(f"| {_escape(workload_task)} | {batch} | {r.get('attention', '-')} | {r.get('reorder', '-')} | "
                     f"{r.get('kv', '-')} | {_escape(r.get('attention_speedup', '-'))} |")
    return "\n".join(lines) + "\n"
