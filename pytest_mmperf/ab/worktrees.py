"""The two sides' checkouts: detached git worktrees, always removed, and each side's environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from pytest_mmperf.ab.options import ABError


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


def side_env(worktree: Path, sha: str, ref: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The worktree first on sys.path (its plugin and suites win over any installed copy)."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join([str(worktree), *filter(None, [out.get("PYTHONPATH", "")])])
    out["MMPERF_COMMIT"] = sha
    out["MMPERF_BRANCH"] = ref
    for key in ("MMPERF_JSON", "MMPERF_HISTORY", "MMPERF_SHARD", "MMPERF_COMPARE", "MMPERF_SAVE_BASELINE",
                "MMPERF_LOCKSTEP"):
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
