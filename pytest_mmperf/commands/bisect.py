"""``mmperf bisect --good REF --bad REF --pytest-args ARGS``: the first commit whose verdict against
``good`` is a regression, found with the gate itself.

The commits of ``good..bad`` (first-parent ancestry path, oldest first; ``bad`` taken as bad) are
bisected (:mod:`pytest_mmperf.judge.bisection`). Each commit is checked out as a temporary git
worktree (always removed) and measured by the benchmark tests that ``--pytest-args`` select (as
``mmperf ab`` takes them):

* ``--clock instructions`` (the default): instructions counted by valgrind's callgrind, where a
  count decides in one run: ``good`` is measured once, then each midpoint, and every benchmark is
  compared with good's by the gate's rule (:func:`pytest_mmperf.judge.compare.compare_benchmarks`);
* ``--clock lockstep``: wall or device time, the midpoint and ``good`` in lockstep process pairs
  (``mmperf ab``'s machinery and its paired test), for what counts cannot see (a GPU).

A commit that cannot be built or measured (pytest does not start or collect, no benchmark ran) is
skipped, never blamed, as ``git bisect skip`` does. At the end: the first bad commit, its subject,
its diagnosis (:mod:`pytest_mmperf.judge.diagnosis`) and the command that reproduces its verdict.

Exit status: 0 a first bad commit was found; 1 none of the range regressed against good, or
skipped commits hide which one is first; 2 bad input or a failed step (one line on stderr).
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mmperf.settings import POLICY_DESTS, Settings, UsageError, add_cli_options, settings_from_cli

CLOCKS = ("instructions", "lockstep")
BISECT_POLICY_DESTS = tuple(d for d in POLICY_DESTS if d != "drift_allowance")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bisect",
        help="find the first commit whose verdict against a good commit is a regression",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog='example: mmperf bisect --good v1.2 --bad HEAD --pytest-args "suites -k \'test_llm and t2t-eager\'"',
    )
    p.add_argument("--good", required=True, metavar="REF", help="a commit known to be good")
    p.add_argument("--bad", required=True, metavar="REF", help="a commit known to be bad (e.g. HEAD)")
    p.add_argument("--pytest-args", action="append", default=[], metavar="ARGS",
                   help='arguments for pytest in each worktree, one shell-quoted string, as mmperf ab takes '
                        'them, e.g. "suites -k llm" (repeatable)')
    p.add_argument("--clock", choices=CLOCKS, default="instructions",
                   help="instructions: counts decide in one run per commit (CPU, valgrind); lockstep: time, "
                        "each commit against good in lockstep process pairs (mmperf ab) (default instructions)")
    p.add_argument("--rounds", type=int, default=None, metavar="N",
                   help="measured rounds per benchmark (default: 2 under instructions, 10 in lockstep)")
    p.add_argument("--repeats", type=int, default=3, metavar="K",
                   help="lockstep process pairs per step (default 3)")
    p.add_argument("--timeout", type=int, default=3600, metavar="SECONDS",
                   help="stop a measurement that takes longer (default 3600)")
    p.add_argument("--json-dir", type=Path, metavar="DIR", help="keep each commit's results document and log in DIR")
    p.add_argument("--repo", type=Path, default=Path("."),
                   help="the repository (or a folder inside it, where pytest runs) (default .)")
    add_cli_options(p, BISECT_POLICY_DESTS)
    p.set_defaults(func=run)


class BisectError(Exception):
    """Bad input or a failed step; one line (exit 2)."""


@dataclass(frozen=True)
class Options:
    good: str
    bad: str
    pytest_args: tuple[str, ...] = ()
    clock: str = "instructions"
    rounds: int | None = None
    repeats: int = 3
    timeout_s: float = 3600.0
    json_dir: Path | None = None
    repo: Path = field(default_factory=Path.cwd)
    settings: Settings = field(default_factory=Settings)
    python: str = sys.executable


# -- measuring one commit ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    doc: Any | None  # RunDocument, or None when the commit could not be built or measured
    reason: str = ""  # why not
    log: str = ""


def pytest_command(options: Options, json_path: Path, *, profile: bool = False) -> list[str]:
    """One measurement under the instruction clock; ``profile``: instead mmperf ab's short native
    run with ``--mmperf-profile`` (one profiled call per benchmark), for the operators of the diagnosis."""
    from pytest_mmperf.ab.options import profile_command

    if profile:
        return profile_command(options.python, json_path, options.pytest_args)
    rounds = options.rounds or 2
    return [options.python, "-m", "pytest", "--mmperf", "--mmperf-clock=instructions",
            f"--mmperf-json={json_path}", "--mmperf-history=off", f"--mmperf-rounds={rounds}",
            f"--mmperf-max-rounds={rounds}", "--mmperf-diagnose=off", "-p", "no:cacheprovider",
            *options.pytest_args]


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _first_error(path: Path) -> str:
    """The first line that names an error in a pytest log (else its last line)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    named = re.compile(r"\b[A-Z]\w*(Error|Exception)\b:")  # "E   SyntaxError: invalid syntax"
    for line in lines:
        if named.search(line):
            return line.strip().removeprefix("E").strip()
    for line in lines:
        if line.startswith("E "):
            return line.removeprefix("E").strip()
    return lines[-1].strip() if lines else ""


def measure_commit(options: Options, top: Path, subdir: Path, sha: str, scratch: Path, label: str,
                   profile: bool = False, only: Path | None = None) -> Measured:
    """Run the selected benchmarks at ``sha`` under the instruction clock, in a worktree
    (``profile``: natively, with one profiled call each; ``only``: a file of the node ids to run)."""
    import subprocess

    from pytest_mmperf.ab.options import ABError
    from pytest_mmperf.ab.worktrees import check_plugin_source, side_env, worktrees
    from pytest_mmperf.results.records import DocumentError, RunDocument
    from pytest_mmperf.sharding import ONLY_IDS_ENV

    out_dir = options.json_dir.resolve() if options.json_dir else scratch
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, log_path = out_dir / f"{label}-{sha[:12]}.json", out_dir / f"{label}-{sha[:12]}.log"
    json_path.unlink(missing_ok=True)
    try:
        with worktrees(top, {label: sha}, scratch / "trees") as trees:
            cwd = trees[label] / subdir
            env = side_env(trees[label], sha, label)
            if only is not None:
                env[ONLY_IDS_ENV] = str(only)
            check_plugin_source(options.python, trees[label] / subdir, env)  # its own plugin, not ours
            # does it build? collecting natively takes seconds, a measurement under valgrind minutes
            with log_path.open("w") as log:
                collect = subprocess.run(
                    [options.python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                     *options.pytest_args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                    timeout=options.timeout_s)
            if collect.returncode != 0:
                return Measured(None, f"does not build: pytest --collect-only exit {collect.returncode}: "
                                      f"{_first_error(log_path)}", str(log_path))
            cmd = pytest_command(options, json_path, profile=profile)
            with log_path.open("a") as log:
                try:
                    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          timeout=options.timeout_s)
                except subprocess.TimeoutExpired:
                    return Measured(None, f"timed out after {options.timeout_s:g} s", str(log_path))
    except ABError as exc:
        return Measured(None, str(exc))
    if proc.returncode not in (0, 1):  # 2 interrupted (collection errors), 3 internal, 4 usage, 5 none
        return Measured(None, f"pytest exit {proc.returncode}: {_tail(log_path)}", str(log_path))
    try:
        doc = RunDocument.load(json_path)
    except DocumentError as exc:
        return Measured(None, f"no results document ({exc})", str(log_path))
    if not doc.benchmarks:
        return Measured(None, f"no benchmark ran: {_first_error(log_path)}", str(log_path))
    return Measured(doc, "", str(log_path))


def judge(good: Any, head: Any, settings: Settings) -> tuple[bool, list[str], list[tuple[Any, Any, list[str]]]]:
    """Head's verdict against good, by the gate's rule: (regressed, one line per failure,
    (good record, head record, regressed metrics) per failed benchmark)."""
    from pytest_mmperf.judge import compare, drift, health
    from pytest_mmperf.judge.policy import policy_from_settings

    ids = {b.id for b in head.benchmarks}
    family = compare.family_size(good, ids, gate_absolute=settings.gate_absolute_timings)
    policy = policy_from_settings(settings, family_size=family)
    comps, _, _ = compare.compare_documents(good, head, policy)
    g_by, h_by = good.by_id(), head.by_id()
    lines: list[str] = []
    failed: list[tuple[Any, Any, list[str]]] = []
    for comp in comps:
        g, h = g_by[comp.benchmark], h_by[comp.benchmark]
        outputs = drift.compare_outputs(
            g.quality.get(drift.KEY) if isinstance(g.quality, dict) else None,
            h.quality.get(drift.KEY) if isinstance(h.quality, dict) else None)
        why = ([m.describe() for m in comp.regressions] + [f"output drift: {o.message}" for o in outputs]
               + [f"lever health: {w.message}" for w in health.compare_health(g.metrics, h.metrics)])
        if why:
            lines.append(f"{comp.benchmark}: " + "; ".join(why))
            failed.append((g, h, [m.metric for m in comp.regressions]))
    return bool(lines), lines, failed


# -- the command -----------------------------------------------------------------------------------------
def _git(top: Path, *args: str) -> str:
    from pytest_mmperf.ab.options import ABError
    from pytest_mmperf.ab.worktrees import git

    try:
        return git(top, *args)
    except ABError as exc:
        raise BisectError(str(exc)) from None


def candidates(top: Path, good: str, bad: str) -> list[str]:
    """The commits after good up to bad, oldest first, along bad's first-parent line."""
    if _git(top, "merge-base", good, bad) != good:
        raise BisectError(f"--good {good[:12]} is not an ancestor of --bad {bad[:12]}")
    out = _git(top, "rev-list", "--first-parent", "--ancestry-path", "--reverse", f"{good}..{bad}")
    shas = out.split()
    if not shas:
        raise BisectError("--good and --bad are the same commit: nothing to bisect")
    return shas


def reproduce_command(options: Options, good: str, bad: str) -> str:
    args = " ".join(shlex.quote(a) for a in options.pytest_args)
    if options.clock == "lockstep":
        return (f"mmperf ab --base {good[:12]} --head {bad[:12]} --repeats {options.repeats} "
                f"--pytest-args {shlex.quote(args)}")
    return f"mmperf bisect --good {good[:12]} --bad {bad[:12]} --pytest-args {shlex.quote(args)}"


def run_bisect(options: Options, out: Callable[[str], None] = print,
               log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> int:
    from pytest_mmperf.ab.options import ABError
    from pytest_mmperf.ab.worktrees import resolve_ref
    from pytest_mmperf.judge import bisection
    from pytest_mmperf.judge.diagnosis import diagnose

    repo = options.repo.resolve()
    try:
        top = Path(_git(repo, "rev-parse", "--show-toplevel"))
        good = resolve_ref(top, options.good, "--good")
        bad = resolve_ref(top, options.bad, "--bad")
        shas = candidates(top, good, bad)
    except (ABError, BisectError) as exc:
        print(f"mmperf bisect: {exc}", file=sys.stderr)
        return 2
    subdir = repo.relative_to(top) if repo != top else Path()
    scratch = Path(tempfile.mkdtemp(prefix="mmperf-bisect-"))
    verdicts: dict[str, list[str]] = {}
    diagnoses: dict[str, list[str]] = {}
    failures: dict[str, list[tuple[Any, Any, list[str]]]] = {}
    try:
        reference = None
        if options.clock == "instructions":
            log(f"mmperf bisect: {len(shas)} commits after good {good[:12]}; measuring good once "
                "(instruction clock)")
            ref = measure_commit(options, top, subdir, good, scratch, "good")
            if ref.doc is None:
                print(f"mmperf bisect: good {good[:12]} cannot be measured: {ref.reason}", file=sys.stderr)
                return 2
            reference = ref.doc

        def oracle(sha: str) -> tuple[str, str]:
            if options.clock == "lockstep":
                return _lockstep(options, good, sha, verdicts, diagnoses)
            m = measure_commit(options, top, subdir, sha, scratch, "step")
            if m.doc is None:
                return bisection.SKIP, m.reason
            regressed, lines, failed = judge(reference, m.doc, options.settings)
            if regressed:
                verdicts[sha] = lines
                failures[sha] = failed
                return bisection.BAD, lines[0]
            return bisection.GOOD, f"{len(m.doc.benchmarks)} benchmark(s) not regressed"

        def progress(step: bisection.Step, left: int, n: int) -> None:
            subject = _git(top, "log", "-1", "--format=%s", step.commit)
            log(f"mmperf bisect: step {n}: {step.commit[:12]} {step.outcome}"
                f"{f' ({step.reason})' if step.reason else ''} - {subject}; {left} commit(s) left to test")

        result = bisection.bisect(shas, oracle, on_step=progress)
        first_bad = result.first_bad
        if first_bad in failures:
            # the operators: one short native run with one profiled call per benchmark, of the
            # first bad commit and of its parent (counts say how much, a profile says where)
            parent = _git(top, "rev-parse", f"{first_bad}^")
            log(f"mmperf bisect: profiling {first_bad[:12]} and its parent {parent[:12]} for the diagnosis")
            only = scratch / "profiled-ids.txt"  # the failed benchmarks only: none for the passing ones
            only.write_text("".join(f"{h.id}\n" for _, h, _ in failures[first_bad][:3]))
            profiled = {k: measure_commit(options, top, subdir, c, scratch, f"profile-{k}", profile=True, only=only)
                        for k, c in (("parent", parent), ("bad", first_bad))}
            ops = {k: (m.doc.by_id() if m.doc is not None else {}) for k, m in profiled.items()}
            for g, h, metrics in failures[first_bad][:3]:
                b_prof, h_prof = (ops[k][h.id].profile if h.id in ops[k] else None for k in ("parent", "bad"))
                found = diagnose(g, h, regressed=metrics, base_profile=b_prof, head_profile=h_prof)
                diagnoses[first_bad] = [*diagnoses.get(first_bad, []), f"{h.id}:", *found.lines()[1:]]
    except KeyboardInterrupt:
        print("mmperf bisect: interrupted; worktrees removed", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    skipped = [s.commit for s in result.steps if s.outcome == bisection.SKIP]
    out(f"mmperf bisect: {result.measured} measured step(s)"
        + (" + good measured once" if options.clock == "instructions" else "")
        + f" over {len(shas)} commit(s); skipped (cannot be built or measured): "
        + (", ".join(s[:12] for s in skipped) or "none"))
    if result.first_bad is None:
        out("mmperf bisect: the first bad commit is one of: "
            + ", ".join(f"{s[:12]} {_git(top, 'log', '-1', '--format=%s', s)}" for s in result.suspects))
        return 1
    first = result.first_bad
    if first == bad and first not in verdicts:
        out(f"mmperf bisect: every commit before bad {bad[:12]} is good; bad itself was not measured "
            "(taken as bad): check it with the command below")
    subject = _git(top, "log", "-1", "--format=%s", first)
    out(f"mmperf bisect: first bad commit: {first} {subject}")
    for line in verdicts.get(first, []):
        out(f"  {line}")
    for line in diagnoses.get(first, []):
        out(f"  {line}")
    parent = _git(top, "rev-parse", f"{first}^")
    since = parent if options.clock == "lockstep" else good
    out(f"mmperf bisect: reproduce: {reproduce_command(options, since, first)}")
    return 0


def _lockstep(options: Options, good: str, sha: str, verdicts: dict[str, list[str]],
              diagnoses: dict[str, list[str]]) -> tuple[str, str]:
    """One step in lockstep against good (mmperf ab's machinery)."""
    from pytest_mmperf.ab import ABOptions
    from pytest_mmperf.ab.options import ABError
    from pytest_mmperf.ab.run import measure
    from pytest_mmperf.judge import bisection
    from pytest_mmperf.judge.diagnosis import diagnose

    ab = ABOptions(base=good, head=sha, rounds=options.rounds or 10, repeats=options.repeats,
                   pytest_args=options.pytest_args, threshold=options.settings.threshold,
                   confidence=options.settings.compare_confidence, settings=options.settings,
                   timeout_s=options.timeout_s, repo=options.repo, python=options.python)
    try:
        result = measure(ab, log=lambda s: None)
    except ABError as exc:
        return bisection.SKIP, str(exc)
    if not result.failed:
        return bisection.GOOD, "no regression in lockstep"
    lines = [f"{c.benchmark}: {c.describe()}" for c in result.regressions]
    lines += [f"{b}: output drift: {'; '.join(m)}" for b, m in result.drifts.items()]
    lines += result.head_failures
    verdicts[sha] = lines
    g_by = result.base.by_id()
    for c in result.regressions[:3]:
        h = result.head.by_id().get(c.benchmark)
        g = g_by.get(c.benchmark)
        if g is not None and h is not None:
            diagnoses.setdefault(sha, []).extend([f"{h.id}:", *diagnose(g, h, regressed=[c.metric]).lines()[1:]])
    return bisection.BAD, lines[0] if lines else "failed"


def run(args: argparse.Namespace) -> int:
    from pytest_mmperf.ab import split_args

    try:
        settings = settings_from_cli(args, BISECT_POLICY_DESTS)
    except UsageError as exc:
        print(f"mmperf bisect: {exc}", file=sys.stderr)
        return 2
    for name in ("rounds", "repeats", "timeout"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"mmperf bisect: --{name} must be a positive integer", file=sys.stderr)
            return 2
    options = Options(good=args.good, bad=args.bad, pytest_args=split_args(args.pytest_args), clock=args.clock,
                      rounds=args.rounds, repeats=args.repeats, timeout_s=float(args.timeout),
                      json_dir=args.json_dir, repo=args.repo, settings=settings)
    return run_bisect(options)
