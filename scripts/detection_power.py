"""Detection power and false alarms of the regression gate and of ``mmperf ab``, on the real suites.

Not a timed test: a script that plants regressions inside the model and reports how often each
way of judging catches them, and how often it fails an unchanged commit.

Plants (each a temporary commit in a scratch clone of this repository's committed HEAD, so every
path measures real code that differs only by the plant):

* ``none``: an empty commit (the same tree): every "catch" is a false alarm;
* ``slowF`` (e.g. ``slow10``): busy work in every decode step of the decoder workloads,
  F% of that step's own CPU time (``time.thread_time``, so contention stretches the plant as it
  stretches the step), inside the ``tpot`` phase of ``decoding.greedy_decode``;
* ``opsN`` (e.g. ``ops4``): N extra small tensor ops (``logits * 1.0``) in every decode step:
  deterministic work for the instruction clock, about +1% of a tiny decode step with N = 4;
* ``memF`` (e.g. ``mem20``): each measured call of the llm workload allocates and touches F% of the
  benchmark's own memory figure (its gated memory metric as measured on base first) and frees it
  at the end of the call.

Paths, each run ``--trials`` times per plant:

* ``ab``: ``mmperf ab --base BASE --head PLANT`` (process pairs in lockstep, the paired test);
* ``session``: the gate against a baseline saved by base just before (``--mmperf-save-baseline``
  then ``--mmperf-compare`` in the plant's checkout, one process each);
* ``absolute``: the gate against a baseline saved by base once, at the start of the script (an
  earlier session);
* ``learned``: the gate with a drift allowance learned from this host's history: base is first
  measured ``--sessions`` times in a row (default 8, the gate's minimum), each session recorded in
  one history and the first saving the baseline; every trial then judges its head against that
  baseline with a copy of that history, so each trial learns from the same base sessions and no
  planted session enters the history of the next.

A trial counts as caught when the command exits 1 (a regression), as a false alarm when the
plant is ``none`` and it exits 1. Results are written to ``--json`` after every trial, so an
interrupted run keeps what it measured. A smoke run:

    python scripts/detection_power.py --trials 1 --plants none,slow10 --paths ab --rounds 5 --repeats 2

The runs behind docs/ab.md's table (llm eager only, tiny, quiet machine, mmperf ab's defaults):

    python scripts/detection_power.py --trials 5 --plants none,slow10,slow5 --paths ab --json abA.json
    python scripts/detection_power.py --trials 5 --plants none,slow10 --paths ab --json abB.json
    python scripts/detection_power.py --trials 10 --plants mem20 --paths ab --json abM.json

The instruction clock (docs/instructions.md), with deterministic plants (``opsN``: N extra small
tensor ops in every decode step) against a baseline base saved once:

    python scripts/detection_power.py --trials 10 --plants none,ops4 --paths absolute \
        --pytest-extra=--mmperf-clock=instructions --json instr.json

The tiny LLM suite (12 benchmarks) with a learned allowance (docs/gate.md):

    python scripts/detection_power.py --trials 5 --plants none,slow10 --paths learned \
        --select "suites -k llm" --json learned.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_mmperf.judge.allowance import MIN_SESSIONS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SELECT = "suites/mmperf_suites/test_llm.py::test_llm[t2t-eager]"

SLOW_ANCHOR = """        with phases.phase("tpot"):
            logits = step(token, positions(batch, prompt_len + i - 1, 1, prompt.device), cache)
            token = pick_greedy(logits, logit_bias)
"""
SLOW_PATCH = """        with phases.phase("tpot"):
            _cpu0 = _plant_time.thread_time()
            logits = step(token, positions(batch, prompt_len + i - 1, 1, prompt.device), cache)
            token = pick_greedy(logits, logit_bias)
            _until = _plant_time.thread_time() + {fraction!r} * (_plant_time.thread_time() - _cpu0)
            while _plant_time.thread_time() < _until:  # planted: busy work, a fraction of the step
                pass
"""
# opsN: N extra small tensor ops in every decode step, deterministic work for the instruction
# clock (a busy loop on a timer is not: its length follows the clock under valgrind)
OPS_ANCHOR = """            token = pick_greedy(logits, logit_bias)
        out.append(token)
"""
OPS_PATCH = """            token = pick_greedy(logits, logit_bias)
            for _ in range({count}):  # planted: extra small ops per decode step
                logits = logits * 1.0
        out.append(token)
"""
MEMORY_ANCHOR = """    def run(self, phases: PhaseRecorder) -> Output:
        \"\"\"Every prompt in turn; each row's tokens are its answers, concatenated.\"\"\"
"""
MEMORY_PATCH = MEMORY_ANCHOR + """        _planted = torch.ones({elements})  # planted: memory per call
"""
MEMORY_RETURN = """        return Output(tokens=torch.cat(answers, dim=1).tolist())
"""


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
       timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def git(repo: Path, *args: str) -> str:
    out = sh(["git", "-c", "user.name=mmperf", "-c", "user.email=mmperf@example.invalid", *args], repo)
    if out.returncode != 0:
        raise SystemExit(f"detection_power: git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def env_for(checkout: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [checkout, checkout / "suites", checkout / "optimizations"]
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    for key in ("MMPERF_LOCKSTEP", "MMPERF_JSON", "MMPERF_COMPARE", "MMPERF_SAVE_BASELINE"):
        env.pop(key, None)
    return env


PYTEST_EXTRA: list[str] = []  # --pytest-extra: e.g. --mmperf-clock=instructions, for every run


def pytest_cmd(select: str, rounds: int | None, *extra: str) -> list[str]:
    """The gate's own command; ``rounds`` None keeps its defaults (12 rounds, adaptive reruns)."""
    fixed = [] if rounds is None else [f"--mmperf-rounds={rounds}", f"--mmperf-max-rounds={rounds}"]
    return [sys.executable, "-m", "pytest", *shlex.split(select), "--mmperf", "--mmperf-history=off",
            "-p", "no:cacheprovider", *fixed, "-q", *PYTEST_EXTRA, *extra]


def plant_commit(clone: Path, base: str, name: str, memory_bytes: float) -> str:
    """A commit on top of ``base`` with the plant ``name`` applied; its sha."""
    git(clone, "checkout", "-q", "--detach", base)
    decoding = clone / "suites/mmperf_suites/workloads/decoding.py"
    llm = clone / "suites/mmperf_suites/workloads/llm.py"
    if name.startswith("slow"):
        fraction = int(name[4:]) / 100
        text = decoding.read_text()
        if SLOW_ANCHOR not in text:
            raise SystemExit("detection_power: decoding.greedy_decode changed; update SLOW_ANCHOR")
        text = text.replace(SLOW_ANCHOR, SLOW_PATCH.format(fraction=fraction))
        text = text.replace("from __future__ import annotations\n",
                            "from __future__ import annotations\n\nimport time as _plant_time\n", 1)
        decoding.write_text(text)
    elif name.startswith("mem"):
        fraction = int(name[3:]) / 100
        text = llm.read_text()
        if MEMORY_ANCHOR not in text or MEMORY_RETURN not in text:
            raise SystemExit("detection_power: LlmRunner.run changed; update MEMORY_ANCHOR")
        elements = max(1, int(fraction * memory_bytes / 4))  # float32
        text = text.replace(MEMORY_ANCHOR, MEMORY_PATCH.format(elements=elements))
        text = text.replace(MEMORY_RETURN, "        del _planted\n" + MEMORY_RETURN, 1)
        llm.write_text(text)
    elif name.startswith("ops"):
        count = int(name[3:])
        text = decoding.read_text()
        if OPS_ANCHOR not in text:
            raise SystemExit("detection_power: decoding.greedy_decode changed; update OPS_ANCHOR")
        decoding.write_text(text.replace(OPS_ANCHOR, OPS_PATCH.format(count=count)))
    elif name != "none":
        raise SystemExit(f"detection_power: unknown plant {name!r} (none, slowN, memN, opsN)")
    git(clone, "commit", "-q", "-a", "--allow-empty", "-m", f"plant {name}")
    return git(clone, "rev-parse", "HEAD")


def memory_metric(doc: dict[str, Any], needed: bool = True) -> tuple[str, float]:
    """The benchmark's own memory figure: its gated memory metric (preferring the allocator's)."""
    (bench, *_) = doc["benchmarks"]
    metrics = bench["metrics"]
    gated = [n for n, m in metrics.items() if n.endswith("_bytes") and m.get("gated", True)
             and not n.startswith("eager_")]
    for name in ("peak_memory_bytes", "peak_rss_bytes", *sorted(gated)):
        if name in gated:
            return name, float(metrics[name]["median"])
    if not needed:
        return "none", 0.0
    raise SystemExit("detection_power: the benchmark has no gated memory metric")


def outcome(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    text = proc.stdout + proc.stderr
    lines = [ln for ln in text.splitlines() if re.search(r"REGRESSED|regressed|FAILED|DRIFT|not gated", ln)]
    if proc.returncode not in (0, 1):
        tail = [ln for ln in text.splitlines() if ln.strip()][-3:]
        raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}")
    return {"rc": proc.returncode, "lines": lines[:8]}


def record_sessions(clone: Path, checkouts: Path, base: str, args: argparse.Namespace, where: Path,
                    history: Path) -> None:
    """The learned path's history: base measured ``--sessions`` times in a row, each a session in
    ``history``; the first also saves the baseline in ``where``."""
    base_dir = checkouts / "base-sessions"
    partial = history.with_name(history.name + ".partial")  # renamed when complete: a resume restarts it
    partial.unlink(missing_ok=True)
    git(clone, "worktree", "add", "-q", "--detach", str(base_dir), base)
    try:
        for i in range(args.sessions):
            save = ["--mmperf-save-baseline", f"--mmperf-baseline-dir={where}"] if i == 0 else []
            t0 = time.monotonic()
            out = sh(pytest_cmd(args.select, args.gate_rounds, *save, f"--mmperf-history={sqlite_url(partial)}"),
                     base_dir, env_for(base_dir))
            if out.returncode != 0:
                raise SystemExit(f"detection_power: history session {i + 1} of base failed: {out.stdout[-500:]}")
            print(f"history session {i + 1} of {args.sessions} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
        partial.replace(history)
    finally:
        git(clone, "worktree", "remove", "--force", str(base_dir))


def sqlite_url(path: Path) -> str:
    """The history option's form of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


def run_path(path: str, clone: Path, checkouts: Path, base: str, head: str, args: argparse.Namespace,
             earlier: Path, tag: str) -> dict[str, Any]:
    """One trial of one path; ``tag`` names its kept files (ab: the verdicts and every document)."""
    if path == "ab":
        cmd = [sys.executable, "-m", "pytest_mmperf.cli", "ab", "--repo", str(clone), "--base", base,
               "--head", head, "--rounds", str(args.rounds), "--repeats", str(args.repeats),
               f"--pytest-args={args.select} {shlex.join(PYTEST_EXTRA)}",
               "--json-dir", str(checkouts.parent / f"ab-{tag}")]
        return outcome(sh(cmd, ROOT, env_for(ROOT)))
    head_dir = checkouts / "head"
    git(clone, "worktree", "add", "-q", "--detach", str(head_dir), head)
    try:
        if path == "session":
            where = checkouts / "baseline-now"
            shutil.rmtree(where, ignore_errors=True)
            base_dir = checkouts / "base"
            git(clone, "worktree", "add", "-q", "--detach", str(base_dir), base)
            try:
                saved = sh(pytest_cmd(args.select, args.gate_rounds, "--mmperf-save-baseline",
                                      f"--mmperf-baseline-dir={where}"), base_dir, env_for(base_dir))
                if saved.returncode != 0:
                    raise RuntimeError(f"saving the same-session baseline: exit {saved.returncode}")
            finally:
                git(clone, "worktree", "remove", "--force", str(base_dir))
        elif path == "learned":
            where = checkouts.parent / "baseline-learned"
            trial_history = checkouts / "history-trial.db"  # a copy: the trial's own session stays out
            shutil.copyfile(checkouts.parent / "history-base.db", trial_history)
            extra = [f"--mmperf-history={sqlite_url(trial_history)}",
                     f"--mmperf-json={checkouts.parent / f'learned-{tag}.json'}"]
        else:
            where = earlier
        cmd = pytest_cmd(args.select, args.gate_rounds, "--mmperf-compare", f"--mmperf-baseline-dir={where}",
                         *(extra if path == "learned" else []))
        return outcome(sh(cmd, head_dir, env_for(head_dir)))
    finally:
        git(clone, "worktree", "remove", "--force", str(head_dir))


def report(results: list[dict[str, Any]]) -> list[str]:
    table: dict[tuple[str, str], list[int]] = {}
    for r in results:
        if "rc" in r:
            table.setdefault((r["path"], r["plant"]), []).append(r["rc"])
    errors = sum(1 for r in results if "error" in r)
    out = ["", f"{'path':<10} {'plant':<8} {'failed the gate':>16}   (none: false alarms; others: catches)"]
    for (path, plant), rcs in sorted(table.items()):
        out.append(f"{path:<10} {plant:<8} {sum(rc == 1 for rc in rcs):>9} of {len(rcs):<4}")
    if errors:
        out.append(f"{errors} trial(s) errored (see the JSON)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3, help="trials per plant and path (default 3)")
    ap.add_argument("--plants", default="none,slow5,slow10,slow20,mem20")
    ap.add_argument("--paths", default="ab,session,absolute")
    ap.add_argument("--rounds", type=int, default=10, help="mmperf ab rounds per process (default 10, as mmperf ab)")
    ap.add_argument("--gate-rounds", type=int, default=None,
                    help="fixed rounds for the session and absolute paths (default: the gate's own, adaptive)")
    ap.add_argument("--repeats", type=int, default=5, help="mmperf ab process pairs (default 5, as mmperf ab)")
    ap.add_argument("--select", default=DEFAULT_SELECT, help="pytest node id or arguments (default llm eager)")
    ap.add_argument("--pytest-extra", default="", metavar="ARGS",
                    help='more pytest arguments for every run, e.g. "--mmperf-clock=instructions" (with opsN plants)')
    ap.add_argument("--sessions", type=int, default=MIN_SESSIONS,
                    help=f"base sessions recorded before the learned path's trials (default {MIN_SESSIONS}, "
                         "the fewest the gate learns from)")
    ap.add_argument("--json", type=Path, help="write every trial's outcome here (after each trial)")
    ap.add_argument("--keep", type=Path, help="scratch folder to use and keep (default: a temporary one)")
    args = ap.parse_args()
    PYTEST_EXTRA[:] = shlex.split(args.pytest_extra)
    plants = args.plants.split(",")
    paths = args.paths.split(",")

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="mmperf-power-"))
    scratch.mkdir(parents=True, exist_ok=True)
    clone = scratch / "repo"
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    try:
        if not clone.exists():
            git(ROOT, "clone", "-q", str(ROOT), str(clone))
        base = git(clone, "rev-parse", "HEAD")
        checkouts = scratch / "checkouts"
        checkouts.mkdir(exist_ok=True)
        # the earlier session: a baseline of base, saved once; also the memory figure of the plant
        earlier = scratch / "baseline-earlier"
        metric, value = "none", 0.0
        sizing = any(p.startswith("mem") for p in plants)
        if sizing or "absolute" in paths:  # only these need base measured first (ab and session do not)
            base_dir = checkouts / "base0"
            git(clone, "worktree", "add", "-q", "--detach", str(base_dir), base)
            first = sh(pytest_cmd(args.select, args.gate_rounds, "--mmperf-save-baseline",
                                  f"--mmperf-baseline-dir={earlier}",
                                  f"--mmperf-json={scratch / 'base0.json'}"), base_dir, env_for(base_dir))
            git(clone, "worktree", "remove", "--force", str(base_dir))
            if first.returncode != 0:
                raise SystemExit(f"detection_power: the first base run failed: {first.stdout[-500:]}")
            metric, value = memory_metric(json.loads((scratch / "base0.json").read_text()), needed=sizing)
        print(f"base {base[:12]}; memory plant sized on {metric} = {value / 2**20:.1f} MiB", file=sys.stderr)
        if "learned" in paths and not (scratch / "history-base.db").exists():
            record_sessions(clone, checkouts, base, args, scratch / "baseline-learned", scratch / "history-base.db")
        heads = {p: plant_commit(clone, base, p, value) for p in plants}
        for trial in range(1, args.trials + 1):
            for plant in plants:
                for path in paths:
                    t0 = time.monotonic()
                    row: dict[str, Any] = {"trial": trial, "plant": plant, "path": path}
                    try:
                        row.update(run_path(path, clone, checkouts, base, heads[plant], args, earlier,
                                            f"{plant}-{trial}"))
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        row["error"] = str(exc)
                    row["seconds"] = round(time.monotonic() - t0, 1)
                    results.append(row)
                    print(f"trial {trial} {plant:<7} {path:<9} -> {row.get('rc', row.get('error'))} "
                          f"({row['seconds']} s, {time.monotonic() - started:.0f} s in all)", file=sys.stderr)
                    if args.json:
                        args.json.write_text(json.dumps({"memory_metric": metric, "memory_bytes": value,
                                                         "args": {k: str(v) for k, v in vars(args).items()},
                                                         "trials": results}, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    for line in report(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
