"""``mmperf bisect``: the bisection over commits (pure), and the command on a real git repository
made by the test (a tiny benchmark suite whose code changes across commits, one commit that does
not build), measured by the instruction clock."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mmperf.commands import bisect as bisect_cmd
from pytest_mmperf.judge.bisection import BAD, GOOD, SKIP, bisect

ROOT = Path(__file__).resolve().parents[1]


def oracle_for(first_bad: int, skipped: set[int] = frozenset(), calls: list[int] | None = None):
    def oracle(commit: str) -> tuple[str, str]:
        i = int(commit)
        if calls is not None:
            calls.append(i)
        if i in skipped:
            return SKIP, "does not build"
        return (BAD if i >= first_bad else GOOD), ""

    return oracle


@pytest.mark.parametrize("first_bad", range(16))
def test_sixteen_commits_take_four_steps(first_bad):
    calls: list[int] = []
    result = bisect([str(i) for i in range(16)], oracle_for(first_bad, calls=calls))
    assert result.first_bad == str(first_bad)
    assert result.measured == len(calls) <= 4
    assert 15 not in calls  # the bad end is taken as bad, not measured


@pytest.mark.parametrize("broken", [0, 3, 5, 8, 9, 14])
def test_an_unbuildable_commit_is_skipped_not_blamed_and_costs_at_most_one_step(broken):
    calls: list[int] = []
    result = bisect([str(i) for i in range(16)], oracle_for(7, {broken}, calls))
    assert result.first_bad == "7"
    assert result.measured <= 5
    assert [s.outcome for s in result.steps].count(SKIP) <= 1


@pytest.mark.parametrize("broken", [6, 7])
def test_an_unbuildable_commit_next_to_the_first_bad_one_cannot_be_told_apart(broken):
    """As with git bisect skip: the answer is the range, never the skipped commit alone."""
    result = bisect([str(i) for i in range(16)], oracle_for(7, {broken}))
    assert result.first_bad is None
    assert result.suspects == ((str(broken), str(broken + 1)) if broken == 7 else ("6", "7"))


def test_skipped_commits_next_to_the_first_bad_one_leave_a_range():
    result = bisect([str(i) for i in range(8)], oracle_for(5, {4, 5}))
    assert result.first_bad is None
    assert result.suspects == ("4", "5", "6")


def test_a_range_of_one_commit_is_that_commit_without_measuring():
    assert bisect(["abc"], oracle_for(0)).first_bad == "abc"
    with pytest.raises(ValueError):
        bisect([], oracle_for(0))


# -- the command on a real repository -----------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str, **files: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


WORK = "N = {n}\n\n\ndef compute():\n    return sum(i * i for i in range({extra}N))\n"
TEST = "from work import compute\n\n\ndef test_work(mmperf):\n    mmperf(compute)\n"


def tiny_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """good, a neutral commit, one that does not build, its repair, the planted regression (4x
    the work), a neutral one (bad)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    shas = {"good": commit(repo, "a tiny benchmark", **{"work.py": WORK.format(n=2000, extra=""),
                                                         "test_work.py": TEST, "pytest.ini": "[pytest]\n"})}
    shas["neutral"] = commit(repo, "notes", **{"NOTES.md": "one\n"})
    shas["broken"] = commit(repo, "work: half-written", **{"work.py": "def compute(:\n"})
    shas["repair"] = commit(repo, "work: repaired", **{"work.py": WORK.format(n=2000, extra="")})
    shas["planted"] = commit(repo, "work: four times the work", **{"work.py": WORK.format(n=2000, extra="4 * ")})
    shas["bad"] = commit(repo, "more notes", **{"NOTES.md": "one\ntwo\n"})
    return repo, shas


def test_candidates_follow_the_first_parent_line_and_refuse_a_wrong_order(tmp_path):
    repo, shas = tiny_repo(tmp_path)
    order = ["neutral", "broken", "repair", "planted", "bad"]
    assert bisect_cmd.candidates(repo, shas["good"], shas["bad"]) == [shas[k] for k in order]
    with pytest.raises(bisect_cmd.BisectError, match="not an ancestor"):
        bisect_cmd.candidates(repo, shas["bad"], shas["good"])


def test_bad_refs_are_one_line_errors(tmp_path, capsys):
    repo, _ = tiny_repo(tmp_path)
    from pytest_mmperf import cli

    assert cli.main(["bisect", "--good", "nope", "--bad", "HEAD", "--repo", str(repo)]) == 2
    assert "unknown revision" in capsys.readouterr().err
    assert cli.main(["bisect", "--good", "HEAD", "--bad", "HEAD", "--repo", str(repo)]) == 2
    assert "same commit" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("setarch") is None,
                    reason="the instruction clock needs valgrind and setarch (scripts/install_system_deps.sh)")
def test_bisect_finds_the_planted_commit_and_skips_the_unbuildable_one(tmp_path):
    """The real thing: worktrees, pytest under callgrind, the gate's rule. Costs four measurements
    under valgrind (good, then the steps) and one native collection of the broken commit."""
    repo, shas = tiny_repo(tmp_path)
    json_dir = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_mmperf.cli", "bisect", "--good", shas["good"], "--bad", shas["bad"],
         "--pytest-args", "test_work.py", "--repo", str(repo), "--json-dir", str(json_dir)],
        cwd=repo, capture_output=True, text=True, timeout=1800,
        env={**_env(), "PYTHONPATH": str(ROOT)},
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"first bad commit: {shas['planted']} work: four times the work" in out
    assert f"skipped (cannot be built or measured): {shas['broken'][:12]}" in out
    assert "latency_instructions median +" in out  # the verdict that blamed it
    assert f"reproduce: mmperf bisect --good {shas['good'][:12]} --bad {shas['planted'][:12]}" in out
    assert "does not build" in proc.stderr and "SyntaxError" in proc.stderr
    # the planted commit's count is about 4x good's: the gate's rule decided, on real counts
    good_doc = json.loads(next(json_dir.glob(f"good-{shas['good'][:12]}.json")).read_text())
    bad_doc = json.loads(next(json_dir.glob(f"step-{shas['planted'][:12]}.json")).read_text())
    ratio = (bad_doc["benchmarks"][0]["metrics"]["latency_instructions"]["median"]
             / good_doc["benchmarks"][0]["metrics"]["latency_instructions"]["median"])
    assert 3.0 < ratio < 5.0
    assert f"step 1: {shas['broken'][:12]} skip" in proc.stderr
    assert proc.stderr.count("mmperf bisect: step ") <= 4


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("MMPERF_", "PYTEST_"))}
