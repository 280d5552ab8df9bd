"""The regression gate of ``--mmperf-compare``: the baseline of this environment, judged per test.

:meth:`Gate.open` loads ``<baseline_dir>/<fingerprint>.json`` once, after collection:

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
:func:`pytest_mmperf.compare.compare_benchmarks` (statistics, thresholds, the drift allowance for
absolute timings, Bonferroni over the whole run) and :func:`pytest_mmperf.drift.compare_outputs`
(output fingerprints), and returns a :class:`session.Verdict`; it fails only for a regression or an
output drift. With ``confirm_reruns`` > 0 and a ``rerun`` callable, a timing regression fails only
when every confirmation rerun is regressed too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mmperf import baselines, compare, drift
from pytest_mmperf.environment import differences
from pytest_mmperf.records import BenchmarkRecord, DocumentError, RunDocument
from pytest_mmperf.session import Verdict
from pytest_mmperf.settings import Settings, baseline_dir
from pytest_mmperf.summary import short_id


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
                    )
                    return cls(settings, environment, None, _show(path, rootdir), tuple(expected_ids), notes)
        return cls(settings, environment, doc, _show(path, rootdir), tuple(expected_ids), notes)

    # -- per benchmark -------------------------------------------------------------------------
    @property
    def commit(self) -> str:
        return _short_commit(self.baseline.commit if self.baseline else None)

    def family_size(self) -> int:
        if self.baseline is None:
            return 1
        return compare.family_size(self.baseline, set(self.expected_ids) or None,
                                   gate_absolute=self._gate_absolute(self.settings))

    @staticmethod
    def _gate_absolute(s: Settings) -> bool:
        # --mmperf-absolute=gate|report; gate by default: INTERFACE.md promises latency
        # regressions fail, and dedicated runners drift less than the allowance
        return s.gate_absolute_timings

    def policy(self, settings: Settings | None = None) -> compare.Policy:
        """The decision rule for one benchmark: its marker's threshold wins over the per-metric
        mapping, which wins over the session's threshold."""
        s = settings or self.settings
        per_metric: Mapping[str, float] = dict(s.metric_thresholds)
        if settings is not None and settings.threshold != self.settings.threshold:
            per_metric = {}  # a marker keyword threshold= applies to every metric of its test
        return compare.Policy(
            threshold=s.threshold,
            thresholds=dict(per_metric),
            confidence=s.compare_confidence,
            family_size=self.family_size(),
            drift_allowance=s.drift_allowance,
            gate_absolute=self._gate_absolute(s),
        )

    def check(
        self,
        record: BenchmarkRecord,
        rerun: Callable[[], BenchmarkRecord] | None = None,
        settings: Settings | None = None,
    ) -> Verdict:
        if self.baseline is None:
            return self._inconclusive(record.id, "no baseline for this environment")
        base = self.baseline.by_id().get(record.id)
        if base is None:
            return self._inconclusive(record.id, "no baseline entry (a new benchmark)")
        policy = self.policy(settings)
        comp = compare.compare_benchmarks(base, record, policy)
        outputs = drift.compare_outputs(_output(base), _output(record))
        reruns: list[str] = []
        confirm = (settings or self.settings).confirm_reruns
        if comp.regressions and rerun is not None and confirm > 0:
            for i in range(confirm):
                again = compare.compare_benchmarks(base, rerun(), policy)
                if not again.regressions:
                    reruns.append(f"rerun {i + 1}: not regressed")
                    break
                reruns.append(f"rerun {i + 1}: still regressed")
        return self._verdict(record.id, comp, outputs, reruns)

    def _vs(self, benchmark_id: str) -> str:
        assert self.baseline is not None
        return f"vs baseline {self.path} @ {_short_commit(baselines.entry_commit(self.baseline, benchmark_id))}"

    def _verdict(
        self,
        bid: str,
        comp: compare.BenchmarkComparison,
        outputs: list[drift.OutputChange],
        reruns: list[str],
    ) -> Verdict:
        category = comp.category
        regressions = comp.regressions
        unconfirmed = bool(reruns) and reruns[-1].endswith("not regressed")
        failures: list[str] = []
        if regressions and not unconfirmed:
            failures += [f"{m.describe()}" for m in regressions]
        failures += [f"output drift: {c.message}" for c in outputs]
        details: dict[str, Any] = {
            "category": (compare.Category.REGRESSED.value if failures
                         else compare.Category.INCONCLUSIVE.value if unconfirmed else category.value),
            "baseline": self.path,
            "baseline_commit": baselines.entry_commit(self.baseline, bid) if self.baseline else None,
            "metrics": [m.to_json() for m in comp.metrics],
            "drift": [c.to_json() for c in outputs],
            "notes": list(comp.notes),
            "reruns": reruns,
            "alpha": self.policy().alpha,
        }
        if failures:
            message = f"{bid} " + "; ".join(failures) + f" {self._vs(bid)}"
            if reruns:
                message += f" (confirmed by {len(reruns)} rerun(s))"
            return Verdict(bid, True, message, details)
        if unconfirmed:
            first = "; ".join(m.describe() for m in regressions)
            reason = f"regressed at first ({first}), not confirmed: {reruns[-1]}"
            details["reason"] = reason
            return Verdict(bid, False, f"{bid}: inconclusive: {reason} {self._vs(bid)}", details)
        if category is compare.Category.INCONCLUSIVE:
            why = [f"{m.metric}: {m.reason}" for m in comp.gated if m.category is compare.Category.INCONCLUSIVE]
            details["reason"] = "; ".join(why) or "no comparable metric"
            return Verdict(bid, False, f"{bid}: inconclusive ({details['reason']}) {self._vs(bid)}", details)
        key = _key_metric(comp)
        shown = f": {key.change_text()}" if key else ""
        return Verdict(bid, False, f"{bid}: {category.value}{shown} {self._vs(bid)}", details)

    def _inconclusive(self, bid: str, reason: str) -> Verdict:
        return Verdict(bid, False, f"{bid}: inconclusive ({reason})",
                       {"category": compare.Category.INCONCLUSIVE.value, "reason": reason,
                        "baseline": self.path if self.baseline else None, "metrics": [], "drift": []})

    # -- the end -------------------------------------------------------------------------------
    def summary_lines(self, verdicts: Sequence[Verdict]) -> list[str]:
        lines = [f"pytest-mmperf comparison: {len(verdicts)} benchmark(s)"]
        lines += [f"  {n}" for n in self.notes]
        if self.baseline is not None:
            lines.append(
                f"  baseline {self.path} @ {self.commit}; regression = Mann-Whitney p < "
                f"{self.policy().alpha:.2g} (Bonferroni: {self.settings.compare_confidence:.0%} over "
                f"{self.family_size()} comparisons) AND beyond the threshold "
                f"({self.settings.threshold:.0%}; absolute timings "
                f"{max(self.settings.threshold, self.policy().drift_allowance):.0%} for cross-session drift)"
            )
        counts = {c.value: 0 for c in compare.Category}
        for v in verdicts:
            cat = str(v.details.get("category", "inconclusive"))
            counts[cat] = counts.get(cat, 0) + 1
        lines.append("  " + ", ".join(f"{counts[c.value]} {c.value}" for c in compare.Category))
        q_by_verdict = _q_values(verdicts)
        rows = [["benchmark", "verdict", "detail", "BH q"]]
        for v in sorted(verdicts, key=lambda v: v.benchmark):
            q = q_by_verdict.get(v.benchmark)
            rows.append([short_id(v.benchmark), str(v.details.get("category", "?")),
                         detail_text(v), f"{q:.2g}" if q is not None else "-"])
        if len(rows) > 1:
            widths = [max(len(r[j]) for r in rows) for j in range(4)]
            for r in rows:
                lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if self.baseline is not None:
            seen = {v.benchmark for v in verdicts}
            missing = sorted(b.id for b in self.baseline.benchmarks if b.id not in seen)
            if missing:
                lines.append(f"  {len(missing)} baseline entr{'y' if len(missing) == 1 else 'ies'} not "
                             "compared in this run (removed, deselected or in another shard):")
                lines += [f"    {short_id(m)}" for m in missing]
        return lines


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
    for name in (compare.SPEEDUP, "latency_ms", "tpot_ms", "ttft_ms"):
        if name in gated:
            return gated[name]
    return next(iter(gated.values()), None)


def detail_text(v: Verdict) -> str:
    """One cell: what decided a verdict (drift, the regressed metrics, the reason, the key change)."""
    metrics = v.details.get("metrics") or []
    cat = v.details.get("category")
    if v.details.get("drift"):
        return "; ".join(str(d.get("message")) for d in v.details["drift"])
    if cat == "regressed":
        bad = [m for m in metrics if m.get("category") == "regressed" and m.get("gated")]
        return "; ".join(_metric_text(m) for m in bad)
    if cat == "inconclusive":
        return str(v.details.get("reason", ""))
    if cat == "improved":
        good = [m for m in metrics if m.get("category") == "improved" and m.get("gated")]
        return "; ".join(_metric_text(m) for m in good)
    pick = next((m for m in metrics if m.get("metric") in (compare.SPEEDUP, "latency_ms")), None)
    return _metric_text(pick) if pick else ""


def _metric_text(m: Mapping[str, Any]) -> str:
    def pct(x: Any) -> str:
        return "?" if x is None else f"{float(x) * 100:+.1f}%"

    ci = f" [{pct(m.get('ci_low'))}..{pct(m.get('ci_high'))}]" if m.get("ci_low") is not None else ""
    return f"{m.get('metric')} {pct(m.get('change'))}{ci}"


def _q_values(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Smallest BH q-value per benchmark over its gated metrics' p-values."""
    pairs: list[tuple[str, float]] = []
    for v in verdicts:
        for m in v.details.get("metrics") or []:
            if m.get("gated") and m.get("p_value") is not None:
                pairs.append((v.benchmark, float(m["p_value"])))
    if not pairs:
        return {}
    qs = compare.q_values([p for _, p in pairs])
    out: dict[str, float] = {}
    for (bid, _), q in zip(pairs, qs):
        out[bid] = min(q, out.get(bid, 1.0))
    return out


__all__ = ["DocumentError", "Gate", "GateError"]
