"""The regression gate of ``--mmperf-compare``: the baseline of this environment, judged per test.

:meth:`Gate.open` loads ``<baseline_dir>/<fingerprint>.json`` once, at session start (an xdist
controller never collects); the Bonferroni family is computed later, when first needed after
:meth:`Gate.expect` has the benchmarks this run collected (after ``-k``/``-m``/shards; on the
controller every worker's):

* no baseline for this fingerprint: the gate still opens; every benchmark gets the verdict
  *inconclusive (no baseline)*, which passes, and the summary says
  "no baseline for <fingerprint>: nothing to compare; run with --mmperf-save-baseline". A first CI
  run on a new machine must not fail, and it must not look like a pass either;
* a corrupt, truncated, newer-schema or foreign file: :class:`records.DocumentError` (one line
  naming the file); the plugin turns it into a usage error (exit 4); the file is not touched;
* a baseline from another environment (comparable keys differ; also when ``--mmperf-baseline-dir``
  names a ``.json`` file directly): :class:`GateError` naming the differing keys, unless
  ``--mmperf-compare-force``.

:meth:`Gate.check` compares one record with its baseline entry through
:func:`pytest_mmperf.judge.compare.compare_benchmarks` (per-round statistics on the primary
metrics, thresholds, the drift allowance for absolute timings, Bonferroni over the run's family and
the looks). Timings and speedups are judged across sessions only against a baseline of this host
(:func:`host_trust`) whose drift is known: learned from the history's earlier sessions here
(:attr:`Gate.sessions`, read by the session; :mod:`pytest_mmperf.judge.allowance`) or configured;
elsewhere they are reported, not gated, and the verdict says why. Output fingerprints go through
:func:`pytest_mmperf.judge.drift.compare_outputs`. It returns a :class:`Verdict`; it fails only for
a regression, an output drift, a lever whose health count got worse
(:func:`pytest_mmperf.judge.health.compare_health`: ``recompiles_count 0 -> 7``), or
(``--mmperf-inconclusive=fail``) a gated metric left undecided.

Adaptive rounds: when a gated metric is inconclusive because the rounds cannot decide (too few,
a change beyond the threshold that is not yet significant, an interval reaching beyond the band) and a ``rerun``
callable is given, the benchmark is measured again (up to ``adaptive_reruns`` times, within
``adaptive_time`` seconds per benchmark), its rounds pooled with the first measurement's, and
judged again; every look is paid for in ``alpha`` (Bonferroni over the looks). With
``confirm_reruns`` > 0, a timing regression fails only when every confirmation rerun is
regressed too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mmperf.judge import allowance, compare, drift, health
from pytest_mmperf.judge.policy import policy_from_settings
from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.measure import host
from pytest_mmperf.results import baselines
from pytest_mmperf.results.fingerprint import differences
from pytest_mmperf.results.merge import pool_records
from pytest_mmperf.results.metrics import SPEEDUP
from pytest_mmperf.results.records import BenchmarkRecord, DocumentError, RunDocument
from pytest_mmperf.settings import Settings, baseline_dir


class GateError(Exception):
    """The baseline cannot be used for this run; one line."""


@dataclass
class Gate:
    settings: Settings
    environment: Mapping[str, Any]
    baseline: RunDocument | None
    path: str  # for messages: the baseline file, relative to rootdir when inside it
    expected_ids: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic  # the adaptive time budget's clock
    # the history's earlier sessions on this fingerprint and host: benchmark -> metric -> medians
    sessions: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    host_reason: str = ""  # not "": the baseline is from another or an unknown host (why)
    _family: int | None = field(default=None, repr=False)
    _allowances: dict[str, dict[str, allowance.Allowance]] = field(default_factory=dict, repr=False)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        settings: Settings,
        rootdir: Path,
        environment: Mapping[str, Any],
        expected_ids: Sequence[str],
    ) -> Gate:
        where = baseline_dir(settings, rootdir)
        fingerprint = str(environment.get("fingerprint", ""))
        notes: list[str] = []
        if where.suffix == ".json":  # an explicit file: must match, unless forced
            path = where
            if not path.exists():
                raise GateError(f"{_show(path, rootdir)}: no such baseline file")
            doc = baselines.load(path)
            _check_environment(doc, environment, path, rootdir, settings.compare_force, notes)
        else:
            path = baselines.path_for(fingerprint, where)
            if path.exists():
                doc = baselines.load(path)
                _check_environment(doc, environment, path, rootdir, settings.compare_force, notes)
            else:
                others = [b for b in baselines.list_baselines(where) if b.error is None]
                if settings.compare_force and len(others) == 1:
                    path = others[0].path
                    doc = baselines.load(path)
                    _check_environment(doc, environment, path, rootdir, True, notes)
                else:
                    notes.append(
                        f"no baseline for {fingerprint} in {_show(where, rootdir)}: nothing to "
                        "compare; run with --mmperf-save-baseline"
                        + (f" (baselines there are for: {', '.join(b.fingerprint for b in others)})"
                           if others else "")
                        + nearest_hint(others, environment, _show(where, rootdir))
                    )
                    return cls(settings, environment, None, _show(path, rootdir), tuple(expected_ids), notes)
        gate = cls(settings, environment, doc, _show(path, rootdir), tuple(expected_ids), notes)
        gate.host_reason = host_trust(doc, environment, gate.path)
        return gate

    @property
    def learns(self) -> bool:
        """Would this host's history teach a drift allowance (same host, the time clock)?"""
        return self.baseline is not None and not self.host_reason and self.settings.clock == "time"

    def expect(self, benchmark_ids: Sequence[str]) -> None:
        """The benchmarks this run collected (after -k/-m and sharding; on the xdist controller,
        every worker's): the family is theirs, computed when first needed after this."""
        self.expected_ids = tuple(benchmark_ids)
        self._family = None

    def power_notes(self) -> list[str]:
        """Say so when the configured rounds cannot reach the family's alpha even with a perfect
        separation (the first look would always be inconclusive)."""
        if self.baseline is None or self.settings.clock == "instructions":
            return []  # counts are judged by a noise check and the threshold, not by a test
        alpha = self.policy().alpha
        need = compare.rounds_to_reach(alpha)
        if self.settings.rounds >= need:
            return []
        return [f"with {self.settings.rounds} rounds a side no test can reach alpha {alpha:.2g} "
                f"(family of {self.family_size()}); use --mmperf-rounds={need} or more"]

    # -- per benchmark -------------------------------------------------------------------------
    @property
    def commit(self) -> str:
        return _short_commit(self.baseline.commit if self.baseline else None)

    def family_size(self) -> int:
        """The gated statistical comparisons of the collected benchmarks (computed once)."""
        if self.baseline is None:
            return 1
        if self._family is None:
            def judged(bid: str, metric: str) -> bool:
                return self._policy_for(self.settings, 1, bid).allowance_for(metric).known

            self._family = compare.family_size(self.baseline, set(self.expected_ids) or None,
                                               gate_absolute=self._gate_absolute(self.settings), judged=judged,
                                               at_least_one=False)
        return max(1, self._family)

    def statistical_comparisons(self) -> int:
        """The family's true size (0 when no timing or speedup is tested: another host)."""
        self.family_size()
        return self._family or 0

    def allowances(self, benchmark_id: str) -> dict[str, allowance.Allowance]:
        """Per metric of one benchmark: the drift allowance learned from this host's sessions, or
        why there is none (too few sessions under ``auto``; a spread too wide)."""
        if benchmark_id not in self._allowances:
            # only what crosses sessions with the host's drift: timings and the in-run speedup
            history = {m: v for m, v in self.sessions.get(benchmark_id, {}).items()
                       if m == SPEEDUP or compare.is_timing(m)}
            learned, _ = allowance.learn_all(history)
            if self.settings.drift_allowance is None:  # auto: no history, no judgement across sessions
                for metric, values in history.items():
                    learned.setdefault(metric, allowance.unknown(allowance.no_estimate(len(values))))
            self._allowances[benchmark_id] = learned
        return self._allowances[benchmark_id]

    def _policy_for(self, settings: Settings, looks: int, benchmark_id: str | None,
                    session: Settings | None = None, family: int = 1) -> compare.Policy:
        return policy_from_settings(
            settings, family_size=family, looks=looks, session=session,
            allowances=self.allowances(benchmark_id) if benchmark_id else {}, host_reason=self.host_reason,
        )

    @staticmethod
    def _gate_absolute(s: Settings) -> bool:
        # --mmperf-absolute=gate|report; gate by default: the documented contract is that latency
        # regressions fail, and dedicated runners drift less than the allowance
        return s.gate_absolute_timings

    def looks(self, settings: Settings | None = None, adaptive: bool = True) -> int:
        """How many measurements of one benchmark may be judged: the first and the adaptive ones."""
        return 1 + ((settings or self.settings).adaptive_reruns if adaptive else 0)

    def policy(
        self, settings: Settings | None = None, looks: int | None = None, benchmark_id: str | None = None,
    ) -> compare.Policy:
        """The decision rule for one benchmark (:func:`policy_from_settings`): its marker's
        threshold wins over the per-metric mapping, which wins over the session's threshold; its
        drift allowances are this host's (learned) and the family is the collected run's."""
        return self._policy_for(
            settings or self.settings,
            self.looks(settings) if looks is None else looks,
            benchmark_id,
            session=self.settings if settings is not None else None,
            family=self.family_size(),
        )

    def check(
        self,
        record: BenchmarkRecord,
        rerun: Callable[[], BenchmarkRecord] | None = None,
        settings: Settings | None = None,
    ) -> Verdict:
        return self.judge(record, rerun, settings)[0]

    def judge(
        self,
        record: BenchmarkRecord,
        rerun: Callable[[], BenchmarkRecord] | None = None,
        settings: Settings | None = None,
    ) -> tuple[Verdict, BenchmarkRecord]:
        """The verdict, and the record it was reached on (the first measurement pooled with any
        adaptive extra measurements: what the results document should keep)."""
        if self.baseline is None:
            return self._inconclusive(record.id, "no baseline for this environment"), record
        base = self.baseline.by_id().get(record.id)
        if base is None:
            return self._inconclusive(record.id, "no baseline entry (a new benchmark)"), record
        s = settings or self.settings
        policy = self.policy(settings, looks=self.looks(settings, adaptive=rerun is not None),
                             benchmark_id=record.id)
        comp = compare.compare_benchmarks(base, record, policy)
        pooled, added = self._adapt(base, record, comp, policy, rerun, s)
        if added:
            comp = compare.compare_benchmarks(base, pooled, policy)
        outputs = drift.compare_outputs(_output(base), _output(pooled))
        worse = health.compare_health(base.metrics, pooled.metrics)
        reruns = list(added)
        confirm = s.confirm_reruns
        if comp.regressions and rerun is not None and confirm > 0:
            for i in range(confirm):
                again = compare.compare_benchmarks(base, rerun(), policy)
                if not again.regressions:
                    reruns.append(f"rerun {i + 1}: not regressed")
                    break
                reruns.append(f"rerun {i + 1}: still regressed")
        return self._verdict(record.id, comp, outputs, reruns, policy, worse), pooled

    def _adapt(
        self,
        base: BenchmarkRecord,
        record: BenchmarkRecord,
        comp: compare.BenchmarkComparison,
        policy: compare.Policy,
        rerun: Callable[[], BenchmarkRecord] | None,
        s: Settings,
    ) -> tuple[BenchmarkRecord, list[str]]:
        """Measure again while the rounds cannot decide, within the budget; rounds pooled."""
        notes: list[str] = []
        if rerun is None or s.adaptive_reruns < 1:
            return record, notes
        parts = [record]
        start = self.clock()
        for i in range(s.adaptive_reruns):
            if comp.regressions or not comp.more_rounds_help:
                break
            spent = self.clock() - start
            if spent >= s.adaptive_time:
                notes.append(f"adaptive: time budget of {s.adaptive_time:g} s spent after {i} extra measurement(s)")
                break
            parts.append(rerun())
            pooled = pool_records(parts)
            comp = compare.compare_benchmarks(base, pooled, policy)
            rounds = len(pooled.metrics["latency_ms"].per_round()) if "latency_ms" in pooled.metrics else 0
            notes.append(f"adaptive: extra measurement {i + 1}, {rounds} rounds pooled, still {comp.category.value}"
                         if comp.category is compare.Category.INCONCLUSIVE
                         else f"adaptive: extra measurement {i + 1}, {rounds} rounds pooled: {comp.category.value}")
        return pool_records(parts), notes

    def _vs(self, benchmark_id: str) -> str:
        assert self.baseline is not None
        return f"vs baseline {self.path} @ {_short_commit(baselines.entry_commit(self.baseline, benchmark_id))}"

    def _verdict(
        self,
        bid: str,
        comp: compare.BenchmarkComparison,
        outputs: list[drift.OutputChange],
        reruns: list[str],
        policy: compare.Policy,
        worse: list[health.HealthChange] | None = None,
    ) -> Verdict:
        category = comp.category
        regressions = comp.regressions
        confirmations = [r for r in reruns if r.startswith("rerun ")]
        unconfirmed = bool(confirmations) and confirmations[-1].endswith("not regressed")
        failures: list[str] = []
        if regressions and not unconfirmed:
            failures += [f"{m.describe()}" for m in regressions]
        failures += [f"output drift: {c.message}" for c in outputs]
        failures += [f"lever health: {c.message}" for c in worse or []]
        details: dict[str, Any] = {
            "category": (compare.Category.REGRESSED.value if failures
                         else compare.Category.INCONCLUSIVE.value if unconfirmed else category.value),
            "baseline": self.path,
            "baseline_commit": baselines.entry_commit(self.baseline, bid) if self.baseline else None,
            "metrics": [m.to_json() for m in comp.metrics],
            "drift": [c.to_json() for c in outputs],
            "health": [c.to_json() for c in worse or []],
            "notes": list(comp.notes),
            "reruns": reruns,
            "alpha": policy.alpha,
            "family_size": policy.family_size,
            "looks": policy.looks,
            "interval": policy.interval_label,
        }
        not_gated = not_gated_text(comp)
        if not_gated:
            details["not_gated"] = not_gated
            details["not_gated_reasons"] = sorted({m.reason for m in _untrusted(comp)})
        tail = f"; not gated: {not_gated}" if not_gated else ""
        if failures:
            message = f"{bid} " + "; ".join(failures) + f" {self._vs(bid)}"
            if confirmations:
                message += f" (confirmed by {len(confirmations)} rerun(s))"
            return Verdict(bid, True, message, details)
        if unconfirmed:
            first = "; ".join(m.describe() for m in regressions)
            reason = f"regressed at first ({first}), not confirmed: {confirmations[-1]}"
            details["reason"] = reason
            return Verdict(bid, False, f"{bid}: inconclusive: {reason} {self._vs(bid)}", details)
        if category is compare.Category.INCONCLUSIVE:
            details["reason"] = _reasons([m for m in comp.gated if m.category is compare.Category.INCONCLUSIVE]) \
                or not_gated or "no comparable metric"
            extra = [r for r in reruns if r.startswith("adaptive: extra")]
            if extra:
                details["reason"] += f" ({extra[-1].removeprefix('adaptive: ')})"
            fail = self.settings.inconclusive == "fail" and bool(comp.gated)
            rule = " (--mmperf-inconclusive=fail)" if fail else ""
            return Verdict(bid, fail, f"{bid}: inconclusive ({details['reason']}){rule} {self._vs(bid)}"
                           + (tail if details["reason"] != not_gated else ""), details)
        key = _key_metric(comp)
        shown = f": {key.change_text()}{key.band_text()}" if key else ""
        return Verdict(bid, False, f"{bid}: {category.value}{shown} {self._vs(bid)}{tail}", details)

    def _inconclusive(self, bid: str, reason: str) -> Verdict:
        return Verdict(bid, False, f"{bid}: inconclusive ({reason})",
                       {"category": compare.Category.INCONCLUSIVE.value, "reason": reason,
                        "baseline": self.path if self.baseline else None, "metrics": [], "drift": []})

def _reasons(metrics: Sequence[compare.MetricComparison]) -> str:
    """One line: the metrics with the same reason together."""
    by_reason: dict[str, list[str]] = {}
    for m in metrics:
        by_reason.setdefault(m.reason, []).append(m.metric)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())


def not_gated_text(comp: compare.BenchmarkComparison) -> str:
    """The primary timings and speedup this comparison reported without judging, and why
    (another host, no drift estimate, a spread too wide)."""
    return _reasons(_untrusted(comp))


def _untrusted(comp: compare.BenchmarkComparison) -> list[compare.MetricComparison]:
    return [m for m in comp.metrics if m.untrusted and gates_if_trusted(m)]


def gates_if_trusted(m: compare.MetricComparison) -> bool:
    """Would this metric gate on a host whose drift is known? (primary, not reported-only)"""
    return compare.is_primary(m.metric) and m.reason != "" and m.kind in (compare.TIMING, compare.IN_RUN)


def nearest_hint(others: Sequence[baselines.BaselineInfo], environment: Mapping[str, Any],
                 shown_dir: str = "baselines") -> str:
    """Why no stored baseline matched: the nearest one of this clock (fewest differing
    fingerprint keys) and what differs, so that a new package release (``transformers_version``)
    or another CPU reads as such instead of a silent "nothing to compare"; "" when none is near."""
    clock = environment.get("clock", "time")
    best: tuple[int, str, dict[str, tuple[Any, Any]]] | None = None
    for info in others:
        if info.clock != clock:
            continue
        try:
            diff = differences(baselines.load(info.path).environment, environment)
        except DocumentError:
            continue
        if diff and (best is None or len(diff) < best[0]):
            best = (len(diff), info.fingerprint, diff)
    if best is None:
        return ""
    _, name, diff = best
    said = ", ".join(f"{key} ({there} there, {here} here)" for key, (there, here) in sorted(diff.items()))
    return (f"; the nearest, {name}, differs in {said}: install its stack, or compare against it with "
            f"--mmperf-compare-force --mmperf-baseline-dir={shown_dir.rstrip('/')}/{name}.json")


def host_trust(doc: RunDocument | None, environment: Mapping[str, Any], path: str) -> str:
    """Why timings against this baseline cannot be judged across sessions ("" when they can:
    both name the same host)."""
    if doc is None:
        return ""
    now = environment.get(host.KEY)
    then = doc.environment.get(host.KEY)
    way_out = allowance.no_estimate()
    if now is None:
        return f"this machine has no host id (no machine id): {way_out}"
    if then is None:
        return f"the baseline {path} records no host (made on another or an unknown host): {way_out}"
    if then != now:
        return f"the baseline {path} is from host {then}, this is host {now}: {way_out}"
    return ""


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "unknown commit"
    dirty = commit.endswith("-dirty")
    return commit[:7] + ("-dirty" if dirty else "")


def _show(path: Path, rootdir: Path) -> str:
    try:
        return str(path.resolve().relative_to(rootdir.resolve()))
    except ValueError:
        return str(path)


def _check_environment(
    doc: RunDocument, env: Mapping[str, Any], path: Path, rootdir: Path, force: bool, notes: list[str]
) -> None:
    diff = differences(doc.environment, env)
    if not diff and doc.fingerprint == env.get("fingerprint"):
        return
    keys = ", ".join(f"{k} {a!r} (baseline) vs {b!r} (now)" for k, (a, b) in sorted(diff.items())) or (
        f"fingerprint {doc.fingerprint!r} (baseline) vs {env.get('fingerprint')!r} (now)"
    )
    if not force:
        raise GateError(
            f"{_show(path, rootdir)} was measured on a different environment: {keys}; "
            "use --mmperf-compare-force to compare anyway"
        )
    notes.append(f"WARNING comparing with a baseline from a different environment (forced): {keys}")


def _output(rec: BenchmarkRecord) -> Mapping[str, Any] | None:
    q = rec.quality
    if not isinstance(q, Mapping):
        return None
    out = q.get(drift.KEY)
    return out if isinstance(out, Mapping) else None


def _key_metric(comp: compare.BenchmarkComparison) -> compare.MetricComparison | None:
    gated = {m.metric: m for m in comp.gated}
    for name in (SPEEDUP, "latency_ms", "tpot_ms", "ttft_ms"):
        if name in gated:
            return gated[name]
    return next(iter(gated.values()), None)


__all__ = ["DocumentError", "Gate", "GateError"]
