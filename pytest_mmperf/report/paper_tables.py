"""The paper's two views of a results document, as Markdown tables.

* speedups: per workload/task, the speedup over eager of each lever set and of the stack (the
  paper's speedup figure), with the CI;
* phases: per benchmark, the share of each phase in the latency and, with ``--mmperf-profile``,
  the share of each operator class (the paper's characterization).
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_mmperf.results.records import BenchmarkRecord, RunDocument

# Per-call phases (one sample each per round); per-step phases (tpot) are summed per call.
PHASE_SUFFIX = "_ms"
NOT_PHASES = {"latency_ms", "first_call_ms", "latency_device_ms", "latency_host_ms", "lever_setup_ms",
              "compile_ms", "memory_floor_ms"}


def _lever_label(b: BenchmarkRecord) -> str:
    stack = b.id.rsplit("[", 1)[-1].rstrip("]") if "[" in b.id else ""
    if "stack" in stack:
        return "stack"
    return "+".join(b.optimizations) or "eager"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def speedup_table(doc: RunDocument) -> str:
    rows: dict[str, dict[str, str]] = {}
    levers: list[str] = []
    for b in doc.benchmarks:
        if b.batch_size != 1 or b.speedup_vs_eager is None:
            continue
        key = f"{b.workload}/{b.task}"
        label = _lever_label(b)
        if label not in levers:
            levers.append(label)
        s = b.speedup_vs_eager
        rows.setdefault(key, {})[label] = f"{s.median:.2f}x [{s.ci_low:.2f}, {s.ci_high:.2f}]"
    if not rows:
        return "(no benchmark with a speedup vs eager in this document)\n"
    head = ["workload/task", *levers]
    lines = ["| " + " | ".join(map(_escape, head)) + " |", "|" + "---|" * len(head)]
    for key in sorted(rows):
        lines.append("| " + " | ".join([_escape(key), *(rows[key].get(lv, "-") for lv in levers)]) + " |")
    return "\n".join(lines) + "\n"


def phase_shares(b: BenchmarkRecord) -> dict[str, float]:
    """Share of each phase in the median latency: per-call phases at their median, per-step
    phases (several samples per round) at their median times the steps per round."""
    lat = b.metrics.get("latency_ms")
    if lat is None or lat.median <= 0:
        return {}
    rounds = lat.n
    out: dict[str, float] = {}
    for name, m in b.metrics.items():
        if (not name.endswith(PHASE_SUFFIX) or name in NOT_PHASES or name.startswith("eager_")
                or name.endswith("_host_ms") or name.endswith("_device_ms")):
            continue
        per_round = m.n / rounds if rounds else 1
        if name == "tpot_ms" and m.n % rounds:
            continue  # derived per call (speculative decoding): not a per-step phase
        out[name.removesuffix(PHASE_SUFFIX)] = m.median * per_round / lat.median
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
