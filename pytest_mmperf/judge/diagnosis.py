"""Why a benchmark regressed: its causes, ranked, from the base and head data of one benchmark.

Pure: two :class:`BenchmarkRecord` (and, when there, their compact operator profiles, made by
:func:`pytest_mmperf.measure.profiling.compact_profile`) in, a :class:`Diagnosis` out; no torch,
no pytest. Three views of the change, each from data the gate already has or one profiled call:

* **lever health** (recompiles, graph breaks, SDPA calls per backend, CUDA-graph replays, the
  drafts' acceptance rate, bytes of the weights): a lever that stopped working changes one of
  these exactly, so a changed value is the strongest evidence and comes first;
* **operators** (one profiled call per side): per operator its calls per decode step and its self
  time; new and vanished operators, a vanished and a new operator of the same class paired as a
  swap (``aten::_scaled_dot_product_flash_attention_for_cpu -> aten::_scaled_dot_product_attention_math``,
  sized by the inclusive time of the two, since a decomposed operator's own self time is small).
  A change in calls is a change of the code, a change of self time at equal calls may be one
  profiled call's noise: a structural change is costed as its extra calls at the operator's mean
  cost a call over both profiles, weighs :data:`STRUCTURAL_WEIGHT` times that, and ranks above every
  time-only change once it costs :data:`MIN_STRUCTURAL_SHARE` of the call; a time-only change counts
  only when it costs more (a cheaper operator does not explain a regression);
* **phases** (the measured rounds): each phase's share of the change of the latency per call
  (prefill vs decode vs encoder ...), a phase's time per call being its median times its
  occurrences per call (``tpot_ms`` x decode steps).

When the regressed metric is a byte count (``peak_memory_bytes``), operators are ranked by the
change of the bytes they allocate per call instead of their time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.measure.profiling import classify
from pytest_mmperf.results.metrics import EAGER_PREFIX, SPEEDUP, MetricNameError, unit_of
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord

PROFILE_KEY = "operators"  # where a record's compact operator profile lives: record.profile[...]
PROFILE_VERSION = 1
STRUCTURAL_WEIGHT = 3.0  # a change in calls or a new/vanished operator outranks a same-size time change
MIN_STRUCTURAL_SHARE = 0.001  # ... and every time-only change once it costs 0.1% of the call
MIN_TIME_SHARE = 0.02  # an operator's time change below 2% of the profiled call is noise, not shown
MIN_TIME_CHANGE = 0.10  # ... and so is one below 10% of that operator's own time
MIN_BYTES_SHARE = 0.01  # of the call's allocated bytes, for the memory ranking

# Under the instruction clock: self instructions per function per call (record.profile[...]),
# every function with at least FUNCTION_SHARE of the call's count, the rest summed as "other"
FUNCTIONS_KEY = "functions"
FUNCTION_SHARE = 0.001
MIN_FUNCTION_SHARE = 0.05  # a function's change is named when it is 5% of the call's change or more
FUNCTIONS_SHOWN = 3

# Lever health: metrics that say whether a lever does its job. A changed value is a cause.
HEALTH_EXACT = frozenset({
    "recompiles_count", "graph_breaks_count", "compiled_steps_count", "quantized_layers_count",
    "cuda_graphs_recorded_count", "cuda_graph_rerecords_count", "cuda_graph_skips_count",
    "cuda_graphs_replayed_count", "weight_norms_folded_count", "draft_tokens_count",
    "weight_bytes", "kv_cache_bytes",
})
HEALTH_RATES = frozenset({"acceptance_rate"})
# which way is worse, where the name does not say it through its unit
WORSE_WHEN_HIGHER = frozenset({"recompiles_count", "graph_breaks_count", "cuda_graph_rerecords_count",
                               "cuda_graph_skips_count", "weight_bytes", "kv_cache_bytes"})
WORSE_WHEN_LOWER = frozenset({"compiled_steps_count", "quantized_layers_count", "cuda_graphs_replayed_count",
                              "cuda_graphs_recorded_count", "weight_norms_folded_count", "acceptance_rate"})
RATE_TOLERANCE = 0.01  # an acceptance rate that moved by less than 1 point did not change

NOT_PHASES = frozenset({"latency", "first_call", "compile", "lever_setup", "phase_entry_cost"})


def is_health(name: str) -> bool:
    if name.startswith(EAGER_PREFIX):
        return False
    return name in HEALTH_EXACT or name in HEALTH_RATES or (name.startswith("sdpa_") and name.endswith("_count"))


# -- the result --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cause:
    kind: str  # "lever", "operator", "phase"
    subject: str  # the metric, operator or phase named
    text: str  # one line a person reads
    score: float  # what ranks it (bigger first)
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "text": self.text,
                "score": _round(self.score), **{k: _jsonable(v) for k, v in self.data.items()}}


@dataclass(frozen=True)
class PhaseShare:
    phase: str  # the metric, e.g. "tpot_ms"
    unit: str
    base_per_call: float
    head_per_call: float
    per_call: float  # occurrences per call on head (decode steps for tpot)
    share: float | None  # of the latency's change per call; None when the latency did not change

    @property
    def delta(self) -> float:
        return self.head_per_call - self.base_per_call

    def text(self) -> str:
        share = f"{self.share:.0%} of the change: " if self.share is not None else ""
        times = f" x {self.per_call:g}" if abs(self.per_call - 1) > 1e-9 else ""
        return (f"{self.phase} {share}{_fmt(self.base_per_call)} -> {_fmt(self.head_per_call)} "
                f"{self.unit} a call{times and f' ({times.strip()} per call)'}")


@dataclass(frozen=True)
class Diagnosis:
    benchmark: str
    causes: tuple[Cause, ...]  # ranked, biggest first
    phases: tuple[PhaseShare, ...]  # biggest share first
    latency: tuple[str, float, float] | None  # (metric, base, head) per call
    notes: tuple[str, ...] = ()
    memory: bool = False  # a byte count regressed: operators ranked by bytes, no time split shown
    functions: tuple[FunctionChange, ...] = ()  # instruction clock: where the count changed

    @property
    def empty(self) -> bool:
        return not self.causes and not self.phases and not self.functions

    def lines(self, limit: int = 4) -> list[str]:
        """A few lines for a failure message: the biggest causes, then where the time went."""
        out = [f"  {i}. {c.text}" for i, c in enumerate(self.causes[:limit], 1)]
        if len(self.causes) > limit:
            out.append(f"  ... and {len(self.causes) - limit} smaller change(s)")
        if self.phases and self.latency is not None and not self.memory:
            metric, base, head = self.latency
            where = "; ".join(p.text() for p in self.phases[:3])
            out.append(f"  where: {metric} {_fmt(base)} -> {_fmt(head)} a call; {where}")
        if self.functions:
            shown = "; ".join(f.text() for f in self.functions[:FUNCTIONS_SHOWN])
            out.append(f"  functions (self instructions a call): {shown}")
        out += [f"  ({n})" for n in self.notes]
        return ["diagnosis (biggest cause first):", *out] if out else []

    def to_json(self) -> dict[str, Any]:
        return {
            "causes": [c.to_json() for c in self.causes],
            "phases": [{"phase": p.phase, "unit": p.unit, "base_per_call": _round(p.base_per_call),
                        "head_per_call": _round(p.head_per_call), "per_call": _round(p.per_call),
                        "share": _round(p.share) if p.share is not None else None} for p in self.phases],
            "latency": list(self.latency) if self.latency else None,
            "notes": list(self.notes),
            "functions": [{"function": f.name, "base_per_call": _round(f.base), "head_per_call": _round(f.head)}
                          for f in self.functions],
        }


# -- phases ------------------------------------------------------------------------------------------
def _latency_name(rec: BenchmarkRecord) -> str | None:
    for name in ("latency_ms", "latency_instructions"):
        if name in rec.metrics:
            return name
    return None


def _calls(rec: BenchmarkRecord, latency: str) -> int:
    return max(1, len(rec.metrics[latency].samples))


def _is_phase(name: str, unit_suffix: str) -> bool:
    if name.startswith(EAGER_PREFIX) or not name.endswith(unit_suffix):
        return False
    stem = name.removesuffix(unit_suffix)
    return stem not in NOT_PHASES and not stem.endswith(("_host", "_device"))


def phase_shares(base: BenchmarkRecord, head: BenchmarkRecord) -> tuple[tuple[str, float, float] | None,
                                                                        list[PhaseShare]]:
    """Each phase's time per call on both sides and its share of the latency's change."""
    latency = _latency_name(head)
    if latency is None or latency not in base.metrics:
        return None, []
    suffix = "_ms" if latency.endswith("_ms") else "_instructions"
    unit = head.metrics[latency].unit
    b_calls, h_calls = _calls(base, latency), _calls(head, latency)
    lat_b, lat_h = base.metrics[latency].median, head.metrics[latency].median
    change = lat_h - lat_b
    out: list[PhaseShare] = []
    for name, h in head.metrics.items():
        b = base.metrics.get(name)
        if b is None or not _is_phase(name, suffix) or not h.samples or not b.samples:
            continue
        h_per = len(h.samples) / h_calls
        b_total = b.median * len(b.samples) / b_calls
        h_total = h.median * h_per
        share = (h_total - b_total) / change if change and lat_b > 0 and abs(change) / lat_b > 1e-4 else None
        out.append(PhaseShare(name, unit, b_total, h_total, h_per, share))
    phase_sum = sum(p.delta for p in out)
    if out and change and (phase_sum * change <= 0 or any(p.share is not None and abs(p.share) > 1.5 for p in out)):
        # the phases' medians do not add up to the latency's (rounds of a noisy machine): shares
        # of the phases' own total change instead of the latency's
        whole = sum(abs(p.delta) for p in out) or 1.0
        out = [replace(p, share=p.delta / whole) for p in out]
    out.sort(key=lambda p: -abs(p.delta))
    return (latency, lat_b, lat_h), out


# -- operators ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    calls: float
    self_us: float
    total_us: float
    self_bytes: float


def operators_of(rec: BenchmarkRecord | Mapping[str, Any] | None) -> tuple[dict[str, Op], Mapping[str, Any]] | None:
    """The compact operator profile of a record (or the profile mapping itself), or None."""
    if rec is None:
        return None
    prof = rec.profile if isinstance(rec, BenchmarkRecord) else rec
    if not isinstance(prof, Mapping):
        return None
    compact = prof.get(PROFILE_KEY, prof)
    if not isinstance(compact, Mapping) or not isinstance(compact.get("ops"), Mapping):
        return None
    ops: dict[str, Op] = {}
    for name, v in compact["ops"].items():
        if isinstance(v, Mapping):
            ops[str(name)] = Op(float(v.get("calls", 0)), float(v.get("self_us", 0.0)),
                                float(v.get("total_us", v.get("self_us", 0.0))), float(v.get("self_bytes", 0.0)))
    return ops, compact


def operator_causes(base: Mapping[str, Any], head: Mapping[str, Any], *, memory: bool = False) -> list[Cause]:
    """Ranked operator changes between two compact profiles (see the module docstring)."""
    b_parsed, h_parsed = operators_of(base), operators_of(head)
    if b_parsed is None or h_parsed is None:
        return []
    b_ops, b_meta = b_parsed
    h_ops, h_meta = h_parsed
    b_rest, h_rest = _rest_calls(b_meta), _rest_calls(h_meta)
    b_steps, h_steps = float(b_meta.get("steps") or 0), float(h_meta.get("steps") or 0)
    # truncated: operators below the top N are not known by name (profiles without ``rest_calls``)
    b_cut = bool(b_meta.get("truncated")) and b_rest is None
    h_cut = bool(h_meta.get("truncated")) and h_rest is None
    # an operator below one side's top N is there with its calls; its time is at most that
    # side's smallest kept one, taken as it (so a change shown is at least what it says)
    shown = set(b_ops) | set(h_ops)
    for ops_, rest in ((b_ops, b_rest), (h_ops, h_rest)):
        cut = min((o.self_us for o in ops_.values()), default=0.0)
        for name, calls in (rest or {}).items():
            if name not in ops_ and name in shown:
                ops_[name] = Op(calls, cut, cut, 0.0)
    total = max(float(b_meta.get("total_self_us") or 0.0), sum(o.self_us for o in b_ops.values()), 1e-9)
    total_bytes = max(float(b_meta.get("total_self_bytes") or 0.0),
                      sum(max(o.self_bytes, 0) for o in b_ops.values()), 1.0)

    def size(b: Op | None, h: Op | None, inclusive: bool = False) -> float:
        """The change a call: microseconds (or bytes when ranking memory)."""
        if memory:
            return (h.self_bytes if h else 0.0) - (b.self_bytes if b else 0.0)
        def pick(o: Op | None) -> float:
            return 0.0 if o is None else o.total_us if inclusive else o.self_us

        return pick(h) - pick(b)

    def calls_text(name: str, b: Op | None, h: Op | None) -> str:
        bc, hc = (b.calls if b else 0.0), (h.calls if h else 0.0)
        if b_steps and h_steps and abs(hc / h_steps - bc / b_steps) >= 0.5:  # a change in every step
            return f"calls per step {_fmt(bc / b_steps)} -> {_fmt(hc / h_steps)}"
        return f"calls per call {_fmt(bc)} -> {_fmt(hc)}"

    def amount(delta: float) -> str:
        if memory:
            return f"{_signed_bytes(delta)} allocated a call"
        return f"self time {'+' if delta >= 0 else '-'}{_fmt(abs(delta) / 1000)} ms a call"

    causes: list[Cause] = []
    vanished = [n for n in b_ops if n not in h_ops and not h_cut and n not in (h_rest or {})]
    new = [n for n in h_ops if n not in b_ops and n not in (b_rest or {})]
    # a vanished and a new operator of the same class: one operator replaced another
    paired: set[str] = set()
    swaps: list[Cause] = []  # scored below, once the scale is known
    for v in sorted(vanished, key=lambda n: -b_ops[n].total_us):
        cls = classify(v)
        match = next((n for n in sorted(new, key=lambda n: -h_ops[n].total_us)
                      if n not in paired and classify(n) == cls), None)
        if match is None:
            continue
        paired |= {v, match}
        delta = size(b_ops[v], h_ops[match], inclusive=True)
        swaps.append(Cause("operator", f"{v} -> {match}",
                           f"{v} -> {match} ({cls}; {amount(delta)}, inclusive)", delta,
                           {"base": v, "head": match, "change": delta, "structural": True}))
    scale = total_bytes if memory else total
    b_floor = min((o.self_us for o in b_ops.values()), default=0.0)  # the baseline's smallest kept time

    def structural(change: float) -> float:
        """A structural change outranks every time-only one once it costs 0.1% of the call; one
        that makes the call cheaper ranks as a time change would."""
        share = change / scale
        return STRUCTURAL_WEIGHT * share + (1.0 if share >= MIN_STRUCTURAL_SHARE else 0.0) if share > 0 \
            else abs(share)

    for name in sorted(set(b_ops) | set(h_ops)):
        if name in paired:
            continue
        b, h = b_ops.get(name), h_ops.get(name)
        if b is None and h is None:
            continue
        if h is None and h_cut:
            continue  # below head's top N: not known to have vanished
        delta = size(b, h)
        if b is None and b_cut and h is not None:
            # the baseline kept only its top N without the others' names: the operator may have been
            # there below the cut, so only its time above the cut is known to be new
            grown = (h.self_bytes if memory else h.self_us) - (0.0 if memory else b_floor)
            if grown > 0 and grown / scale >= (MIN_BYTES_SHARE if memory else MIN_TIME_SHARE):
                causes.append(Cause("operator", name, f"{name} (below the baseline's top operators): "
                                    f"{amount(grown)} at least", grown / scale,
                                    {"change": grown, "structural": False}))
            continue
        if b is None:
            causes.append(Cause("operator", name, f"new operator {name}: {calls_text(name, b, h)}, "
                                f"{amount(delta)}", structural(delta),
                                {"change": delta, "structural": True, "calls": [0, h.calls if h else 0]}))
            continue
        if h is None:
            causes.append(Cause("operator", name, f"vanished operator {name}: {calls_text(name, b, h)}, "
                                f"{amount(delta)}", structural(delta),
                                {"change": delta, "structural": True, "calls": [b.calls, 0]}))
            continue
        if round(b.calls * (h_steps or 1)) != round(h.calls * (b_steps or 1)):
            # the cost of the extra calls at the operator's mean cost a call over both profiles:
            # calls are exact, one profiled call's time is not (bytes are: the measured change)
            per_call = (b.self_us + h.self_us) / max(b.calls + h.calls, 1.0)
            cost = delta if memory else (h.calls - b.calls) * per_call
            est = f", {amount(cost)}" if memory else \
                f" (about {'+' if cost >= 0 else '-'}{_fmt(abs(cost) / 1000)} ms a call)"
            causes.append(Cause("operator", name, f"{name} {calls_text(name, b, h)}{est}",
                                structural(cost),
                                {"change": cost, "structural": True, "calls": [b.calls, h.calls]}))
            continue
        own = b.self_bytes if memory else b.self_us
        # at equal calls only a change that costs more counts as a cause of a regression
        if delta > 0 and delta / scale >= (MIN_BYTES_SHARE if memory else MIN_TIME_SHARE) and (
                own <= 0 or delta / own >= MIN_TIME_CHANGE):
            rel = f" ({delta / own:+.0%})" if own > 0 else ""
            causes.append(Cause("operator", name, f"{name} {amount(delta)}{rel} at equal calls",
                                delta / scale, {"change": delta, "structural": False}))
    causes += [replace(c, score=structural(c.score)) for c in swaps]
    causes.sort(key=lambda c: -c.score)
    return causes


def _rest_calls(meta: Mapping[str, Any]) -> dict[str, float] | None:
    rest = meta.get("rest_calls")
    if not isinstance(rest, Mapping):
        return None
    return {str(k): float(v) for k, v in rest.items() if isinstance(v, (int, float))}


# -- functions (instruction clock) --------------------------------------------------------------------
# Code compiled at run time lives in shared objects named by a hash: inductor writes each graph's
# kernels to ``<cache>/<xx>/c<52 base-32 characters>.main.so`` (``kernel (cqoyu...main.so)`` in
# callgrind's names), and the hash differs between two compiles of the same graph in two
# folders. Seen on an ops4 plant outside the compiled step: the stack's diagnosis named three
# "new" kernels of +33..44M each, the same kernels under other names. They are pooled under one
# name per function, so only a real change in compiled code shows.
_COMPILED_OBJECT = re.compile(r"\((?:[^()]*/)?c[a-z0-9]{40,}(?:\.main)?\.so\)$")
COMPILED_OBJECT = "(inductor-compiled code)"


def stable_function_name(name: str) -> str:
    """``kernel (c<hash>.main.so)`` -> ``kernel (inductor-compiled code)``; others unchanged."""
    return _COMPILED_OBJECT.sub(COMPILED_OBJECT, name)


def _pooled(functions: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, cost in functions.items():
        key = stable_function_name(name)
        out[key] = out.get(key, 0.0) + float(cost)
    return out


def compact_functions(functions: Mapping[str, float], calls: int) -> dict[str, Any]:
    """Self instructions per function per call, the functions with at least
    :data:`FUNCTION_SHARE` of the total each (largest first), the rest as ``other``; run-time
    compiled kernels pooled per function name (:func:`stable_function_name`)."""
    functions = _pooled(functions)
    total = sum(functions.values())
    per_call = {k: v / max(calls, 1) for k, v in functions.items()}
    floor = FUNCTION_SHARE * total / max(calls, 1)
    kept = {k: round(v, 1) for k, v in sorted(per_call.items(), key=lambda kv: -kv[1]) if v >= floor}
    other = sum(per_call.values()) - sum(kept.values())
    return {"version": 1, "unit": "instructions per call", "total": round(total / max(calls, 1), 1),
            "other": round(other, 1), "self": kept}


@dataclass(frozen=True)
class FunctionChange:
    name: str
    base: float
    head: float

    @property
    def delta(self) -> float:
        return self.head - self.base

    def text(self) -> str:
        rel = f" ({self.delta / self.base:+.1%})" if self.base else " (new)"
        return f"{self.name} {_signed_count(self.delta)}{rel}"


def function_changes(base: Mapping[str, Any] | None, head: Mapping[str, Any] | None) -> list[FunctionChange]:
    """The functions whose self instructions a call changed most, in the direction of the call's
    change, each at least :data:`MIN_FUNCTION_SHARE` of it (a function kept on one side only
    counts as 0 on the other: it was below :data:`FUNCTION_SHARE` there)."""
    b, h = (p.get(FUNCTIONS_KEY) if isinstance(p, Mapping) else None for p in (base, head))
    if not isinstance(b, Mapping) or not isinstance(h, Mapping):
        return []
    bs, hs = _pooled(b.get("self") or {}), _pooled(h.get("self") or {})  # baselines saved unpooled
    change = float(h.get("total", 0)) - float(b.get("total", 0))
    if not change:
        return []
    out = [FunctionChange(n, float(bs.get(n, 0.0)), float(hs.get(n, 0.0))) for n in set(bs) | set(hs)]
    out = [c for c in out if c.delta * change > 0 and abs(c.delta) >= MIN_FUNCTION_SHARE * abs(change)]
    out.sort(key=lambda c: -abs(c.delta))
    return out


def _signed_count(delta: float) -> str:
    return _signed_scaled(delta, ("G", "M", "k"), "", "")


# -- lever health ------------------------------------------------------------------------------------
def _worse(name: str, b: float, h: float, rec: MetricRecord) -> bool | None:
    if name in WORSE_WHEN_HIGHER:
        return h > b
    if name in WORSE_WHEN_LOWER:
        return h < b
    return None  # sdpa_<backend>_count: a move between backends; the pair of counts says which


def health_causes(base: BenchmarkRecord, head: BenchmarkRecord) -> list[Cause]:
    causes: list[Cause] = []
    names = sorted(n for n in set(base.metrics) | set(head.metrics) if is_health(n))
    for name in names:
        b_rec, h_rec = base.metrics.get(name), head.metrics.get(name)
        b = b_rec.median if b_rec is not None else 0.0
        h = h_rec.median if h_rec is not None else 0.0
        rec = h_rec or b_rec
        assert rec is not None
        if name in HEALTH_RATES:
            if abs(h - b) < RATE_TOLERANCE:
                continue
        elif math.isclose(b, h, rel_tol=1e-9, abs_tol=1e-9):
            continue
        worse = _worse(name, b, h, rec)
        rel = abs(h - b) / abs(b) if b else 1.0
        mark = " (worse)" if worse else " (better)" if worse is False else ""
        shown = (f"{name} {_signed_bytes(h - b)} ({_fmt(b)} -> {_fmt(h)} bytes)" if name.endswith("_bytes")
                 else f"{name} {_fmt(b)} -> {_fmt(h)}")
        causes.append(Cause("lever", name, f"lever health: {shown}{mark}",
                            # a worse health value ranks above any operator; a better one below
                            (100.0 if worse or worse is None else 0.01) * (1 + min(rel, 10.0)),
                            {"base": b, "head": h, "worse": worse}))
    causes.sort(key=lambda c: -c.score)
    return causes


# -- all of it ---------------------------------------------------------------------------------------
def _memory_regressed(regressed: Sequence[str]) -> bool:
    def is_bytes(name: str) -> bool:
        try:
            return unit_of(name).suffix == "_bytes"
        except MetricNameError:
            return False

    return bool(regressed) and all(is_bytes(m) for m in regressed if m != SPEEDUP)


def diagnose(
    base: BenchmarkRecord,
    head: BenchmarkRecord,
    *,
    regressed: Sequence[str] = (),
    base_profile: Mapping[str, Any] | None = None,
    head_profile: Mapping[str, Any] | None = None,
) -> Diagnosis:
    """The ranked causes of head's change against base. ``regressed``: the metrics the judge
    found regressed (a byte count ranks operators by allocated bytes); the profiles default to
    the records' own (``record.profile["operators"]``)."""
    latency, phases = phase_shares(base, head)
    causes = health_causes(base, head)
    b_prof = base_profile if base_profile is not None else (base.profile if isinstance(base.profile, Mapping) else None)
    h_prof = head_profile if head_profile is not None else (head.profile if isinstance(head.profile, Mapping) else None)
    notes: list[str] = []
    if operators_of(b_prof) is None or operators_of(h_prof) is None:
        missing = [side for side, p in (("baseline", b_prof), ("head", h_prof)) if operators_of(p) is None]
        notes.append(f"no operator profile for the {' and the '.join(missing)}: operators not compared"
                     + ("; re-save the baseline to store one" if "baseline" in missing else ""))
    else:
        assert b_prof is not None and h_prof is not None
        causes += operator_causes(b_prof, h_prof, memory=_memory_regressed(regressed))
    causes.sort(key=lambda c: -c.score)
    functions = tuple(function_changes(b_prof, h_prof))
    if functions:  # under the instruction clock a missing operator profile is not the whole story
        notes = [n for n in notes if not n.startswith("no operator profile")]
    return Diagnosis(head.id, tuple(causes), tuple(phases), latency, tuple(notes), _memory_regressed(regressed),
                     functions)


# -- on a failed verdict ------------------------------------------------------------------------------
def regressed_metrics(verdict: Verdict) -> list[str]:
    metrics = verdict.details.get("metrics") or []
    return [str(m.get("metric")) for m in metrics
            if isinstance(m, Mapping) and m.get("category") == "regressed" and m.get("gated", True)]


def explain(
    verdict: Verdict,
    base: BenchmarkRecord | None,
    head: BenchmarkRecord,
    profile: Callable[[], Mapping[str, Any] | None] | None = None,
) -> tuple[Verdict, BenchmarkRecord]:
    """A failed verdict with its diagnosis: lines appended to the message, the causes in
    ``details["diagnosis"]``; ``head`` with the profile taken. ``profile`` makes ONE extra
    profiled call of head (only when the baseline has an operator profile to compare with and
    head has none yet); a passing verdict is returned untouched, and nothing is called."""
    if not verdict.failed or base is None:
        return verdict, head
    if operators_of(base) is not None and operators_of(head) is None and profile is not None:
        compact = profile()
        if compact is not None:
            head = replace(head, profile={**(head.profile or {}), PROFILE_KEY: compact})
    found = diagnose(base, head, regressed=regressed_metrics(verdict))
    if found.empty:
        return verdict, head
    message = "\n".join([verdict.message, *found.lines()])
    return Verdict(verdict.benchmark, verdict.failed, message,
                   {**verdict.details, "diagnosis": found.to_json()}), head


# -- formatting --------------------------------------------------------------------------------------
def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e6:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.3g}"
    return f"{x:.2g}"


def _signed_bytes(delta: float) -> str:
    return _signed_scaled(delta, ("GB", "MB", "kB"), " ", " B")


def _signed_scaled(delta: float, units: tuple[str, str, str], sep: str, plain: str) -> str:
    """``+1.23 MB`` / ``+1.23M``: the delta in the largest of 1e9, 1e6, 1e3 it reaches."""
    sign = "+" if delta >= 0 else "-"
    a = abs(delta)
    for unit, size in zip(units, (1e9, 1e6, 1e3)):
        if a >= size:
            return f"{sign}{a / size:.3g}{sep}{unit}"
    return f"{sign}{a:.0f}{plain}"


def _round(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.4g}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return _round(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


__all__ = ["PROFILE_KEY", "Cause", "Diagnosis", "PhaseShare", "diagnose", "explain", "health_causes", "operator_causes",
           "phase_shares"]
