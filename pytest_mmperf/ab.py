"""``mmperf ab``: measure two commits on one machine in one job, alternating, and judge head vs base.

What a pull-request gate needs (absolute medians drifted by up to 16% between sessions on a 2-core VM,
while head vs base alternated in one run cancels that drift):

1. both refs are checked out as detached ``git worktree``s in a temporary folder, removed again in
   every case (``finally``; Ctrl-C and SIGTERM, as a cancelled CI job sends, included);
2. each worktree's benchmarks run in a fresh ``python -m pytest --mmperf`` with the worktree as its
   working directory and first on ``PYTHONPATH``, so that the worktree's *own* code is measured,
   its suites and, when the repository is pytest-mmperf itself, its own plugin (checked before
   measuring: a worktree whose ``pytest_mmperf`` would not be imported from the worktree is
   refused). ``MMPERF_COMMIT`` stamps each document with its commit;
3. the K repeats alternate in ABBA order (base, head, head, base, base, head, ...), so a linear
   drift of the machine weighs on both sides alike; each side's repeats are pooled per benchmark
   and metric (:func:`pytest_mmperf.results.merge.pool`);
4. head is judged against base by the gate of ``--mmperf-compare`` (:class:`gating.Gate`:
   Mann-Whitney and the ratio-of-medians CI, Bonferroni over the run, output-quality drift), with
   one difference: the drift allowance for absolute timings defaults to 0, since both sides were
   measured in the same job, interleaved.

Exit status (:func:`run_ab`): 0 no regression, 1 a regression, an output drift, or a benchmark
test that failed on head; 2 bad input (unknown ref, uncommitted changes that would not be
measured, pytest usage errors), one line.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_mmperf.judge.compare import DEFAULT_CONFIDENCE, DEFAULT_THRESHOLD, Policy
from pytest_mmperf.judge.gate import Gate
from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.report.comparison import comparison_lines
from pytest_mmperf.results import atomic
from pytest_mmperf.results.merge import MergeError, pool
from pytest_mmperf.results.records import DocumentError, RunDocument
from pytest_mmperf.settings import Settings

SIDES = ("base", "head")
MARKER = "<!-- mmperf-ab -->"  # first line of the Markdown: a PR comment bot finds its comment by it


class ABError(Exception):
    """Bad input or a failed step; the message is one line (exit 2)."""


@dataclass(frozen=True)
class ABOptions:
    base: str
    head: str
    rounds: int = 10
    repeats: int = 2
    pytest_args: tuple[str, ...] = ()
    markdown: Path | None = None
    json_dir: Path | None = None
    threshold: float = DEFAULT_THRESHOLD
    confidence: float = DEFAULT_CONFIDENCE
    drift_allowance: float = 0.0  # both sides in one job, interleaved
    repo: Path = field(default_factory=Path.cwd)
    python: str = sys.executable


@dataclass
class ABResult:
    base_sha: str
    head_sha: str
    base: RunDocument  # pooled repeats
    head: RunDocument
    verdicts: list[Verdict]
    gate: Gate
    notes: list[str]
    head_failures: list[str]  # pytest runs on head whose benchmark tests failed

    @property
    def failed(self) -> bool:
        return bool(self.head_failures) or any(v.failed for v in self.verdicts)


# -- git -------------------------------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ABError(f"git {' '.join(args)}: {exc}") from None
    if out.returncode != 0:
        reason = (out.stderr.strip().splitlines() or ["failed"])[-1]
        raise ABError(f"git {' '.join(args)}: {reason}")
    return out.stdout.strip()


def resolve_ref(repo: Path, ref: str, flag: str) -> str:
    if not ref or ref.startswith("-"):
        raise ABError(f"{flag} {ref!r}: not a git revision")
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except ABError:
        raise ABError(f"{flag} {ref!r}: unknown revision in {repo} (fetch it first?)") from None


def check_clean(repo: Path, shas: Sequence[str]) -> None:
    """Refuse uncommitted changes when a ref is the checked-out commit: they would not be measured."""
    try:
        current = git(repo, "rev-parse", "--verify", "HEAD")
    except ABError:
        return
    if current not in shas:
        return
    changed = git(repo, "status", "--porcelain", "--untracked-files=no")
    if changed:
        first = changed.splitlines()[0][3:]
        raise ABError(
            f"uncommitted changes in {repo} ({first}, ...): ab measures commits, so they would not be "
            "measured; commit or stash them first"
        )


@contextlib.contextmanager
def worktrees(repo: Path, shas: dict[str, str], parent: Path) -> Iterator[dict[str, Path]]:
    """Detached worktrees of ``shas`` (side -> sha) under ``parent``; always removed again."""
    made: list[Path] = []
    try:
        out: dict[str, Path] = {}
        for side, sha in shas.items():
            path = parent / side
            git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
            made.append(path)
            out[side] = path
        yield out
    finally:
        for path in made:
            try:
                git(repo, "worktree", "remove", "--force", str(path))
            except ABError:
                shutil.rmtree(path, ignore_errors=True)
        if made:
            with contextlib.suppress(ABError):
                git(repo, "worktree", "prune")


# -- one pytest run ------------------------------------------------------------------------------
def pytest_command(python: str, json_path: Path, rounds: int, pytest_args: Sequence[str]) -> list[str]:
    return [
        python, "-m", "pytest", "--mmperf",
        f"--mmperf-json={json_path}",
        "--mmperf-history=off",
        f"--mmperf-rounds={rounds}",
        f"--mmperf-max-rounds={rounds}",
        "-p", "no:cacheprovider",
        *pytest_args,
    ]


def side_env(worktree: Path, sha: str, ref: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The worktree first on sys.path (its plugin and suites win over any installed copy)."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join([str(worktree), *filter(None, [out.get("PYTHONPATH", "")])])
    out["MMPERF_COMMIT"] = sha
    out["MMPERF_BRANCH"] = ref
    for key in ("MMPERF_JSON", "MMPERF_HISTORY", "MMPERF_SHARD", "MMPERF_COMPARE", "MMPERF_SAVE_BASELINE"):
        out.pop(key, None)  # ab decides these; a stray environment variable must not
    return out


def check_plugin_source(python: str, worktree: Path, env: dict[str, str]) -> None:
    """A worktree of pytest-mmperf itself must measure with its own plugin, not the installed one."""
    if not (worktree / "pytest_mmperf" / "__init__.py").is_file():
        return  # a project that uses the installed plugin
    probe = subprocess.run(
        [python, "-c", "import pytest_mmperf; print(pytest_mmperf.__file__)"],
        cwd=worktree, env=env, capture_output=True, text=True, timeout=120,
    )
    where = Path(probe.stdout.strip() or "?").resolve()
    if probe.returncode != 0 or worktree.resolve() not in where.parents:
        raise ABError(f"{worktree.name}: pytest_mmperf would be imported from {where}, not from the "
                      "worktree; the worktree's own plugin must be measured")


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def run_side(
    label: str,
    worktree: Path,
    env: dict[str, str],
    json_path: Path,
    options: ABOptions,
    *,
    runner: Runner = subprocess.run,
    log: Callable[[str], None],
) -> tuple[RunDocument, int]:
    """One pytest run in ``worktree``: (its results document, pytest's exit status)."""
    cmd = pytest_command(options.python, json_path, options.rounds, options.pytest_args)
    proc = runner(cmd, cwd=worktree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout or ""
    json_path.with_suffix(".log").write_text(output, encoding="utf-8")
    last = next((ln.strip(" =") for ln in reversed(output.splitlines()) if ln.strip()), "no output")
    log(f"mmperf ab: {label}: {last}")
    if proc.returncode not in (0, 1):
        what = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
        raise ABError(f"{label}: pytest exited {proc.returncode} "
                      f"({what.get(proc.returncode, 'failed')}): {last} (log {json_path.with_suffix('.log')})")
    try:
        doc = RunDocument.load(json_path)
    except DocumentError as exc:
        raise ABError(f"{label}: no results document ({exc})") from None
    if not doc.benchmarks:
        raise ABError(f"{label}: no benchmark ran (check --pytest-args)")
    return doc, proc.returncode


def schedule(repeats: int) -> list[str]:
    """ABBA order: base, head, head, base, base, head, ... (``repeats`` runs of each side)."""
    order: list[str] = []
    for i in range(repeats):
        order += list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
    return order


# -- judging ---------------------------------------------------------------------------------------
@dataclass
class ABGate(Gate):
    """The ``--mmperf-compare`` gate with base as its baseline and its own drift allowance."""

    drift_allowance: float = 0.0

    def policy(self, settings: Settings | None = None) -> Policy:
        return replace(super().policy(settings), drift_allowance=self.drift_allowance)


def holds_across_repeats(bench_id: str, runs: dict[str, list[RunDocument]], metric: str = "latency_ms") -> bool:
    """Is head slower than base in every pair of repeats (each repeat a separate process)?

    Rounds within one process are not independent of that process: on a shared VM a whole
    process can run 20-40% slower (seen here: two identical commits, one slow process, +38.7%
    "significant" on the pooled rounds). Pooled samples then overstate the evidence, so a timing
    regression must also show as min(head repeat medians) > max(base repeat medians).
    """
    medians: dict[str, list[float]] = {}
    for side in SIDES:
        values = []
        for doc in runs.get(side, []):
            record = doc.by_id().get(bench_id)
            if record is not None and metric in record.metrics:
                values.append(record.metrics[metric].median)
        medians[side] = values
    if len(medians["base"]) < 2 or len(medians["head"]) < 2:
        return True  # one repeat a side: nothing to check against
    return min(medians["head"]) > max(medians["base"])


def judge(
    base: RunDocument,
    head: RunDocument,
    options: ABOptions,
    base_label: str,
    runs: dict[str, list[RunDocument]] | None = None,
) -> tuple[list[Verdict], ABGate]:
    settings = Settings(enabled=True, threshold=options.threshold, compare_confidence=options.confidence)
    gate = ABGate(settings, head.environment, base, base_label,
                  tuple(b.id for b in head.benchmarks), [], drift_allowance=options.drift_allowance)
    if base.fingerprint != head.fingerprint:
        gate.notes.append(f"base and head report different environments ({base.fingerprint} vs "
                          f"{head.fingerprint}): did head change a setting that enters the fingerprint?")
    verdicts = [gate.check(record) for record in head.benchmarks]
    for verdict in verdicts:
        timing_only = "output drift" not in verdict.message
        if runs and verdict.failed and timing_only and not holds_across_repeats(verdict.benchmark, runs):
            verdict.failed = False
            verdict.message = (f"{verdict.benchmark}: inconclusive: the slowdown does not hold in every pair of "
                               f"repeats (process-to-process noise); pooled rounds said: {verdict.message}")
            verdict.details["ab_repeat_check"] = "failed"
            gate.notes.append(f"{verdict.benchmark}: regression not consistent across repeats; not failing")
    head_ids = {b.id for b in head.benchmarks}
    removed = [b.id for b in base.benchmarks if b.id not in head_ids]
    if removed:
        gate.notes.append(f"{len(removed)} benchmark(s) only in base (removed by head?): {', '.join(removed)}")
    return verdicts, gate


def measure(
    options: ABOptions,
    *,
    runner: Runner = subprocess.run,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> ABResult:
    """Everything but the output: worktrees, the alternating runs, pooling and judging."""
    if options.rounds < 1 or options.repeats < 1:
        raise ABError("--rounds and --repeats must be positive integers")
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
    scratch = Path(tempfile.mkdtemp(prefix="mmperf-ab-"))
    try:
        json_dir = options.json_dir.resolve() if options.json_dir else scratch / "results"
        json_dir.mkdir(parents=True, exist_ok=True)
        with worktrees(top, shas, scratch) as trees:
            envs = {s: side_env(trees[s], shas[s], refs[s]) for s in SIDES}
            for s in SIDES:
                check_plugin_source(options.python, trees[s] / subdir, envs[s])
            runs: dict[str, list[RunDocument]] = {s: [] for s in SIDES}
            head_failures: list[str] = []
            notes: list[str] = []
            counter = {s: 0 for s in SIDES}
            order = schedule(options.repeats)
            for step, side in enumerate(order, 1):
                counter[side] += 1
                label = f"[{step}/{len(order)}] {side} {shas[side][:12]} repeat {counter[side]}"
                doc, rc = run_side(label, trees[side] / subdir, envs[side],
                                   json_dir / f"{side}-{counter[side]}.json", options, runner=runner, log=log)
                runs[side].append(doc)
                if rc == 1:
                    msg = f"{side} repeat {counter[side]}: a benchmark test failed (log {side}-{counter[side]}.log)"
                    (head_failures if side == "head" else notes).append(msg)
        try:
            pooled = {s: pool(runs[s], [f"{s} repeat {i + 1}" for i in range(len(runs[s]))]) for s in SIDES}
        except MergeError as exc:
            raise ABError(f"pooling repeats: {exc}") from None
        if options.json_dir:
            for s in SIDES:
                atomic.write_text(json_dir / f"{s}.json", pooled[s].dumps())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the worktrees' folder, and results unless --json-dir
    base_label = f"base {options.base}" if options.base != shas["base"] else "base"
    verdicts, gate = judge(pooled["base"], pooled["head"], options, base_label, runs)
    return ABResult(shas["base"], shas["head"], pooled["base"], pooled["head"], verdicts, gate,
                    notes, head_failures)


# -- output ----------------------------------------------------------------------------------------
def markdown(result: ABResult, options: ABOptions) -> str:
    from pytest_mmperf.report.markdown import escape, render

    verdict = "❌ regression" if result.failed else "✅ no regression"
    lines = [
        MARKER,
        f"## pytest-mmperf A/B: {verdict}",
        "",
        f"head `{result.head_sha[:12]}` ({escape(options.head)}) vs base `{result.base_sha[:12]}` "
        f"({escape(options.base)}), measured on the same machine in one job: {options.repeats} "
        f"repeat(s) of each side alternating (ABBA), {options.rounds} rounds each, samples pooled.",
        "",
    ]
    for failure in result.head_failures:
        lines.append(f"> ❌ {escape(failure)}")
    for note in result.notes:
        lines.append(f"> {escape(note)}")
    if result.head_failures or result.notes:
        lines.append("")
    body = render(result.head, result.verdicts, result.gate)
    body = body.replace("## pytest-mmperf\n", "", 1).replace("### Comparison with the baseline", "### Head vs base", 1)
    return "\n".join(lines) + body


def terminal_lines(result: ABResult) -> list[str]:
    lines = comparison_lines(result.gate, result.verdicts)
    lines = [ln.replace("pytest-mmperf comparison:", "mmperf ab: head vs base:", 1) for ln in lines]
    for v in result.verdicts:
        if v.failed:
            lines.append(f"REGRESSED {v.message}")
    for failure in result.head_failures:
        lines.append(f"FAILED {failure}")
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"mmperf ab: {'regression' if result.failed else 'no regression'} "
                 f"(head {result.head_sha[:12]} vs base {result.base_sha[:12]})")
    return lines


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A cancelled CI job gets SIGTERM: unwind like Ctrl-C so the worktrees are removed."""
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
    for line in terminal_lines(result):
        out(line)
    if options.markdown:
        atomic.write_text(options.markdown, markdown(result, options))
        out(f"mmperf ab: Markdown summary: {options.markdown}")
    return 1 if result.failed else 0


def split_args(values: Sequence[str]) -> tuple[str, ...]:
    """``--pytest-args "suites -k llm"`` (repeatable) into arguments."""
    return tuple(arg for value in values for arg in shlex.split(value))
