"""``mmperf ab`` end to end on a throwaway git repository, plus its parts without processes.

The repository's benchmark does real CPU work (a pure-Python loop of ~10 ms); one commit makes it
twice as slow. Noise robustness: the gate's threshold is 20% here (the injected change is 100%;
a 50% change measured +28% with a CI of -4..+38% once on this loaded machine), both sides are
pooled over 2 repeats x 10 rounds in ABBA order, and the unchanged case compares two
commits with identical trees, so only noise separates them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_mmperf import ab
from pytest_mmperf.cli import main
from pytest_mmperf.results.records import RunDocument

CONFTEST = '''
def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
'''

BENCH = '''
import pytest
from conftest import work

STEPS = {steps}


@pytest.mark.mmperf(workload="llm", task="t2t")
def test_loop(mmperf):
    mmperf(work, STEPS)
'''

STEPS = 150_000
FAST = ["--rounds", "10", "--repeats", "2", "--threshold", "20%"]


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=mmperf", "-c", "user.email=mmperf@example.invalid", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def commit(repo: Path, message: str, steps: int | None = None) -> str:
    if steps is not None:
        (repo / "test_bench.py").write_text(BENCH.format(steps=steps))
        git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    (path / "conftest.py").write_text(CONFTEST)
    return path


def worktree_count(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


def test_slower_commit_is_reported_and_exits_1(repo, tmp_path, capsys):
    base = commit(repo, "fast", STEPS)
    head = commit(repo, "twice as slow", STEPS * 2)
    md = tmp_path / "ab.md"
    out_dir = tmp_path / "json"
    rc = main(["ab", "--repo", str(repo), "--base", base, "--head", head, *FAST,
               "--markdown", str(md), "--json-dir", str(out_dir)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "REGRESSED test_bench.py::test_loop latency_ms" in out
    assert "1 regressed" in out
    text = md.read_text()
    assert text.startswith(ab.MARKER) and "regression" in text and "test\\_loop" in text
    pooled = RunDocument.load(out_dir / "head.json")
    (rec,) = pooled.benchmarks
    assert rec.metrics["latency_ms"].n == 20  # 2 repeats x 10 rounds pooled
    assert pooled.commit == head and RunDocument.load(out_dir / "base.json").commit == base
    assert sorted(p.name for p in out_dir.glob("*-?.json")) == ["base-1.json", "base-2.json", "head-1.json",
                                                               "head-2.json"]
    assert worktree_count(repo) == 1  # only the main worktree is left


def test_identical_commits_exit_0(repo, capsys):
    base = commit(repo, "one", STEPS)
    head = commit(repo, "same tree")
    rc = main(["ab", "--repo", str(repo), "--base", base, "--head", head, *FAST])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "no regression" in out
    assert worktree_count(repo) == 1


def test_unknown_ref_exits_2_with_one_line(repo, capsys):
    commit(repo, "one", STEPS)
    rc = main(["ab", "--repo", str(repo), "--base", "no-such-branch", "--head", "HEAD"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "--base 'no-such-branch': unknown revision" in err


def test_uncommitted_changes_exit_2(repo, capsys):
    commit(repo, "one", STEPS)
    (repo / "test_bench.py").write_text(BENCH.format(steps=1))
    rc = main(["ab", "--repo", str(repo), "--base", "HEAD~0", "--head", "HEAD"])
    err = capsys.readouterr().err
    assert rc == 2 and "uncommitted changes" in err and err.count("\n") == 1


def test_not_a_repository_exits_2(tmp_path, capsys):
    rc = main(["ab", "--repo", str(tmp_path), "--base", "a", "--head", "b"])
    assert rc == 2 and "not inside a git repository" in capsys.readouterr().err


def test_worktrees_removed_on_ctrl_c(repo):
    base = commit(repo, "one", STEPS)
    seen: list[Path] = []

    def interrupted(cmd, cwd, **kwargs):
        seen.append(Path(cwd))
        assert worktree_count(repo) == 3  # both worktrees exist while measuring
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ab.measure(ab.ABOptions(base=base, head=base, repo=repo), runner=interrupted, log=lambda s: None)
    assert worktree_count(repo) == 1
    assert seen and not seen[0].exists() and not seen[0].parent.exists()


def test_pytest_usage_error_exits_2(repo, capsys):
    base = commit(repo, "one", STEPS)
    rc = main(["ab", "--repo", str(repo), "--base", base, "--head", base, "--rounds", "1",
               "--pytest-args=--no-such-option"])
    err = capsys.readouterr().err
    assert rc == 2 and "pytest exited 4 (usage error)" in err
    assert worktree_count(repo) == 1


def test_schedule_is_abba():
    assert ab.schedule(1) == ["base", "head"]
    assert ab.schedule(3) == ["base", "head", "head", "base", "base", "head"]


def test_command_and_environment_measure_the_worktree(tmp_path):
    cmd = ab.pytest_command("py", tmp_path / "r.json", 5, ab.split_args(["suites -k 'llm and not int8'"]))
    assert cmd[:4] == ["py", "-m", "pytest", "--mmperf"]
    assert "--mmperf-history=off" in cmd and "--mmperf-rounds=5" in cmd and "--mmperf-max-rounds=5" in cmd
    assert cmd[-3:] == ["suites", "-k", "llm and not int8"]
    env = ab.side_env(tmp_path, "abc", "main", {"PYTHONPATH": "/elsewhere", "MMPERF_SHARD": "1/2"})
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path)
    assert env["MMPERF_COMMIT"] == "abc" and "MMPERF_SHARD" not in env


def _doc(latency: float) -> RunDocument:
    from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord

    metrics = {"latency_ms": MetricRecord.from_samples("latency_ms", [latency] * 5)}
    bench = BenchmarkRecord(id="t::b", workload=None, task=None, optimizations=(), scale="tiny", device="cpu",
                            batch_size=1, metrics=metrics)
    return RunDocument(environment={"fingerprint": "x"}, benchmarks=(bench,))


def test_a_timing_regression_must_hold_in_every_pair_of_repeats():
    # one slow process among four (base 10, 10; head 14, 10): pooled rounds could look significant
    noisy = {"base": [_doc(10), _doc(10)], "head": [_doc(14), _doc(10)]}
    assert not ab.holds_across_repeats("t::b", noisy)
    real = {"base": [_doc(10), _doc(11)], "head": [_doc(20), _doc(19)]}
    assert ab.holds_across_repeats("t::b", real)
    single = {"base": [_doc(10)], "head": [_doc(10.5)]}
    assert ab.holds_across_repeats("t::b", single)  # nothing to check with one repeat a side
