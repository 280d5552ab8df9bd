"""``mmperf ab`` from refs to an exit status: worktrees, R process pairs in lockstep, the paired test.

Exit status (:func:`run_ab`): 0 no regression or inconclusive (said so; 1 with
``--inconclusive=fail`` where that option exists); 1 a regression, an output drift, or a benchmark test
that failed on head; 2 bad input or a failed step (unknown ref, uncommitted changes that would not
be measured, a pytest usage error, a worker that died or hung), one line on stderr.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_mmperf.ab import coordinator, paired, summary
from pytest_mmperf.ab.options import SIDES, ABError, ABOptions, profile_command, pytest_command
from pytest_mmperf.ab.result import DECIDED, MAX_REPEATS, NO_HELP, REGRESSION, TIME_BUDGET, ABResult
from pytest_mmperf.ab.worktrees import check_clean, check_plugin_source, git, resolve_ref, side_env, worktrees
from pytest_mmperf.judge import drift, health
from pytest_mmperf.judge.compare import Category, Policy
from pytest_mmperf.judge.policy import policy_from_settings
from pytest_mmperf.results import atomic
from pytest_mmperf.results.merge import MergeError, pool
from pytest_mmperf.results.records import BenchmarkRecord, DocumentError, RunDocument
from pytest_mmperf.settings import Settings


def _output(rec: BenchmarkRecord | None) -> Any:
    q = rec.quality if rec is not None else None
    return q.get(drift.KEY) if isinstance(q, dict) else None


def output_drifts(base: RunDocument, head: RunDocument) -> dict[str, list[str]]:
    """Benchmarks whose output fingerprint differs between base and head (first pair)."""
    base_by_id = base.by_id()
    out: dict[str, list[str]] = {}
    for rec in head.benchmarks:
        changes = drift.compare_outputs(_output(base_by_id.get(rec.id)), _output(rec))
        if changes:
            out[rec.id] = [c.message for c in changes]
    return out


def health_changes(base: RunDocument, head: RunDocument) -> dict[str, list[str]]:
    """Benchmarks whose lever health counts got worse from base to head (first pair: counts are exact)."""
    base_by_id = base.by_id()
    out: dict[str, list[str]] = {}
    for rec in head.benchmarks:
        b = base_by_id.get(rec.id)
        worse = health.compare_health(b.metrics, rec.metrics) if b is not None else []
        if worse:
            out[rec.id] = [w.message for w in worse]
    return out


def _load(path: Path, label: str) -> RunDocument:
    try:
        doc = RunDocument.load(path)
    except DocumentError as exc:
        raise ABError(f"{label}: no results document ({exc})") from None
    if not doc.benchmarks:
        raise ABError(f"{label}: no benchmark ran (check --pytest-args)")
    return doc


def _policy(options: ABOptions) -> Policy:
    # the one front door (judge.policy): per-metric thresholds and defaults as the gate reads them
    return policy_from_settings(
        options.settings or Settings(threshold=options.threshold, compare_confidence=options.confidence),
        cross_session=False,
    )


def next_pair(r: int, options: ABOptions, comparisons: list[paired.PairedComparison],
              pair_seconds: list[float]) -> str | None:
    """After ``r`` pairs: None to measure another, else why the run stops (the sequential design:
    pairs are added while no gated metric regressed and one is undecided, more pairs could decide it, ``--max-repeats``
    is not reached and the next pair, as long as the mean pair so far, fits ``--time-budget``)."""
    if r < options.repeats:
        return None
    if any(c.category is Category.REGRESSED for c in comparisons):
        return REGRESSION  # decided at a paid-for look: more pairs would not change the verdict
    open_ = [c for c in comparisons if c.category is Category.INCONCLUSIVE]
    if not open_:
        return DECIDED
    if not any(c.more_pairs_help for c in open_):
        return NO_HELP
    if r >= options.most_pairs:
        return MAX_REPEATS
    if pair_seconds and sum(pair_seconds) + sum(pair_seconds) / len(pair_seconds) > options.time_budget_s:
        return TIME_BUDGET
    return None


def measure(
    options: ABOptions,
    *,
    spawn: coordinator.Spawn = coordinator.ProcessWorker,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> ABResult:
    """Everything but the output: worktrees, the process pairs (sequentially), judging."""
    if options.rounds < 1 or options.repeats < 1:
        raise ABError("--rounds and --repeats must be positive integers")
    if options.max_repeats is not None and options.max_repeats < options.repeats:
        raise ABError(f"--max-repeats {options.max_repeats} is below --repeats {options.repeats}")
    repo = options.repo.resolve()
    try:
        top = Path(git(repo, "rev-parse", "--show-toplevel"))
    except ABError:
        raise ABError(f"{repo} is not inside a git repository") from None
    shas = {"base": resolve_ref(top, options.base, "--base"), "head": resolve_ref(top, options.head, "--head")}
    refs = {"base": options.base, "head": options.head}
    check_clean(top, list(shas.values()))
    subdir = repo.relative_to(top) if repo != top else Path()
    if shas["base"] == shas["head"]:
        log(f"mmperf ab: base and head are the same commit {shas['base'][:12]} (an A/A run)")
    policy = _policy(options)
    looks = options.looks
    scratch = Path(tempfile.mkdtemp(prefix="mmperf-ab-"))
    notes: list[str] = []
    head_failures: list[str] = []
    runs: dict[str, list[RunDocument]] = {s: [] for s in SIDES}
    pair_seconds: list[float] = []
    comparisons: list[paired.PairedComparison] = []
    stopped = DECIDED
    try:
        json_dir = options.json_dir.resolve() if options.json_dir else scratch / "results"
        json_dir.mkdir(parents=True, exist_ok=True)
        with worktrees(top, shas, scratch) as trees:
            envs = {s: side_env(trees[s], shas[s], refs[s]) for s in SIDES}
            for s in SIDES:
                check_plugin_source(options.python, trees[s] / subdir, envs[s])
            r = 0
            while True:
                r += 1
                order = SIDES if r % 2 == 1 else SIDES[::-1]  # who starts and moves first: ABBA over pairs
                specs = [coordinator.WorkerSpec(
                    s, r, tuple(pytest_command(options.python, json_dir / f"{s}-{r}.json", options.rounds,
                                               options.pytest_args)),
                    trees[s] / subdir, envs[s], json_dir / f"{s}-{r}.log") for s in order]
                total = str(options.repeats) if r <= options.repeats else f"{options.most_pairs} at most"
                started = time.monotonic()
                try:
                    report = coordinator.run_pair(specs, scratch, spawn=spawn, timeout_s=options.timeout_s,
                                                  progress=lambda line: log(f"mmperf ab: {line}"),
                                                  repeats=total)
                except coordinator.WorkerError as exc:
                    raise ABError(str(exc)) from None
                pair_seconds.append(time.monotonic() - started)
                notes += [f"pair {r}: {n}" for n in report.notes]
                for s in SIDES:
                    runs[s].append(_load(json_dir / f"{s}-{r}.json", f"{s} (pair {r})"))
                    if report.returncodes[s] == 1:
                        msg = f"{s} (pair {r}): a benchmark test failed (log {s}-{r}.log)"
                        (head_failures if s == "head" else notes).append(msg)
                log(f"mmperf ab: pair {r}/{total} done: {report.turns['base']} base and "
                    f"{report.turns['head']} head rounds")
                if r < options.repeats:
                    continue
                comparisons = paired.compare_runs(runs["base"], runs["head"], policy, looks=looks)
                why = next_pair(r, options, comparisons, pair_seconds)
                if why is not None:
                    stopped = why
                    break
                undecided = sum(c.category is Category.INCONCLUSIVE for c in comparisons)
                log(f"mmperf ab: {undecided} gated metric(s) undecided after {r} pair(s): one more pair")
            drifts = output_drifts(runs["base"][0], runs["head"][0])
            worse = health_changes(runs["base"][0], runs["head"][0])
            failed_ids = sorted({c.benchmark for c in comparisons if c.category is Category.REGRESSED}
                                | set(drifts) | set(worse))
            profiles = profile_failed(options, trees, subdir, envs, failed_ids, runs, json_dir, log)
        try:
            pooled = {s: pool(runs[s], [f"{s} pair {i + 1}" for i in range(len(runs[s]))]) for s in SIDES}
        except MergeError as exc:
            raise ABError(f"pooling pairs: {exc}") from None
        if options.json_dir:
            for s in SIDES:
                atomic.write_text(json_dir / f"{s}.json", pooled[s].dumps())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # worktrees, sockets, and results unless --json-dir
    if pooled["base"].fingerprint != pooled["head"].fingerprint:
        notes.append(f"base and head report different environments ({pooled['base'].fingerprint} vs "
                     f"{pooled['head'].fingerprint}): did head change a setting that enters the fingerprint?")
    base_ids, head_ids = ({b.id for b in pooled[s].benchmarks} for s in SIDES)
    for label, ids in (("base (removed by head?)", base_ids - head_ids), ("head (new)", head_ids - base_ids)):
        if ids:
            notes.append(f"{len(ids)} benchmark(s) only in {label}, not compared: {', '.join(sorted(ids))}")
    inconclusive = getattr(options.settings, "inconclusive", "pass") if options.settings else "pass"
    result = ABResult(shas["base"], shas["head"], pooled["base"], pooled["head"], comparisons,
                      drifts, notes, head_failures,
                      pairs=len(runs["base"]), looks=looks, stopped=stopped, pair_seconds=pair_seconds,
                      inconclusive_fails=inconclusive == "fail", profiles=profiles, health=worse)
    if options.json_dir:
        atomic.write_text(options.json_dir.resolve() / "ab.json", json.dumps(result.to_json(), indent=1) + "\n")
    return result


def profile_failed(options: ABOptions, trees: dict[str, Path], subdir: Path, envs: dict[str, dict[str, str]],
                   ids: list[str], runs: dict[str, list[RunDocument]], json_dir: Path,
                   log: Callable[[str], None]) -> dict[str, tuple[Any, Any]]:
    """The operators of the diagnosis, both sides live in the same job: for each failed benchmark
    whose pairs carry no profile (``--mmperf-profile`` not among the pytest arguments), one short
    native run per side of only those benchmarks (a warm-up call, one round, one profiled call).
    A profiled run that fails costs the diagnosis its operators, never the verdict: noted in the log."""
    import subprocess

    from pytest_mmperf.judge.diagnosis import operators_of
    from pytest_mmperf.sharding import ONLY_IDS_ENV

    heads = runs["head"][0].by_id()
    # no operators yet (an instruction-clock record carries only its functions)
    wanted = [i for i in ids if i in heads and operators_of(heads[i]) is None]
    if not wanted:
        return {}
    log(f"mmperf ab: profiling {len(wanted)} failed benchmark(s) on both sides for the diagnosis")
    only = json_dir / "profiled-ids.txt"
    only.write_text("".join(f"{i}\n" for i in wanted))
    found: dict[str, dict[str, Any]] = {}
    for s in SIDES:
        path, log_path = json_dir / f"{s}-profile.json", json_dir / f"{s}-profile.log"
        cmd = profile_command(options.python, path, options.pytest_args)
        try:
            with log_path.open("w") as out:
                subprocess.run(cmd, cwd=trees[s] / subdir, env={**envs[s], ONLY_IDS_ENV: str(only)},
                               stdout=out, stderr=subprocess.STDOUT, timeout=options.timeout_s)
            doc = RunDocument.load(path)
        except (OSError, subprocess.TimeoutExpired, DocumentError) as exc:
            log(f"mmperf ab: the profiled run of {s} gave no profiles ({exc}); the diagnosis shows no operators")
            return {}
        found[s] = {b.id: b.profile for b in doc.benchmarks if b.profile is not None}
    return {i: (found["base"].get(i), found["head"].get(i)) for i in wanted
            if found["base"].get(i) is not None and found["head"].get(i) is not None}


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A cancelled CI job gets SIGTERM: unwind like Ctrl-C so workers and worktrees go away."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_ab(options: ABOptions, *, out: Callable[[str], None] = print) -> int:
    try:
        with _sigterm_as_interrupt():
            result = measure(options)
    except ABError as exc:
        print(f"mmperf ab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmperf ab: interrupted; workers stopped, worktrees removed", file=sys.stderr)
        return 2
    for line in summary.terminal_lines(result):
        out(line)
    if options.markdown:
        atomic.write_text(options.markdown, summary.markdown(result, options))
        out(f"mmperf ab: Markdown summary: {options.markdown}")
    return 1 if result.failed else 0
