"""Plant known causes of a regression as commits in a throwaway clone, to check the diagnosis and
``mmperf bisect`` end to end (docs/diagnosis.md).

    python scripts/plant_series.py plants CLONE     # four branches, one planted cause each
    python scripts/plant_series.py series CLONE     # 16 commits, one planted regression in the middle

``plants`` makes branches ``plant-mlp``, ``plant-math-sdpa``, ``plant-recompile`` and
``plant-buffer`` on top of the clone's HEAD, each one commit:

* ``mlp``: extra elementwise work in every MLP of the tiny LLM (``x * 1.0 + 0.0`` on its output);
* ``math-sdpa``: attention forced onto SDPA's math backend (``sdpa_kernel(SDPBackend.MATH)``);
* ``recompile``: the decode step reads a global counter that changes every step, so a compiled
  step recompiles on every step (until torch's recompile limit);
* ``buffer``: each call keeps a 4 MB buffer alive (memory).

``series`` makes 16 commits on top of HEAD on branch ``series``: neutral edits (a comment line in
a notes file), the planted regression (``--plant``, default ``mlp``) as commit ``--at`` (default
8), and commit ``--broken`` (default 4, the second midpoint a bisection probes) that cannot be
built (a syntax error in the tiny LLM's workload, repaired by the next commit). It prints the
good and bad ends, the planted commit and the broken one.

The clone is any git clone of this repository (``git clone . /tmp/plant``); the script edits
only the clone. Each edit looks for an exact anchor and stops with one line when it is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

LLM = "suites/mmperf_suites/workloads/llm.py"
DECODING = "suites/mmperf_suites/workloads/decoding.py"
NOTES = "PLANTED_SERIES.md"

# name -> (file, anchor, replacement, commit subject)
PLANTS: dict[str, tuple[str, str, str, str]] = {
    "mlp": (
        LLM,
        "        self.stack = stack_of(self.model)\n        self.facts = facts_of(self.model, config, dtype)\n",
        "        self.stack = stack_of(self.model)\n"
        "        self.facts = facts_of(self.model, config, dtype)\n"
        "        for layer in self.model.model.layers:  # planted: extra elementwise work in every MLP\n"
        "            mlp_forward = layer.mlp.forward\n"
        "            layer.mlp.forward = lambda x, _f=mlp_forward: _f(x) * 1.0 + 0.0\n",
        "llm: scale every MLP's output (planted: extra elementwise work)",
    ),
    "math-sdpa": (
        LLM,
        "    @torch.inference_mode()\n    def run(self, phases: PhaseRecorder) -> Output:\n"
        '        """Every prompt in turn;',
        "    @torch.inference_mode()\n"
        "    @torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH])  # planted: math backend\n"
        "    def run(self, phases: PhaseRecorder) -> Output:\n"
        '        """Every prompt in turn;',
        "llm: pin SDPA's backend (planted: attention on the math backend)",
    ),
    "recompile": (
        DECODING,
        "        hidden = stack.embed(input_ids)  # [B, T, D]\n"
        "        hidden = run_layers(stack, hidden, position_ids, cache, 0, len(stack.layers))\n",
        "        hidden = stack.embed(input_ids)  # [B, T, D]\n"
        "        PLANTED_STEPS[0] += 1  # planted: a value that changes every step, read as a constant\n"
        "        hidden = hidden * (1.0 + 0.0 * PLANTED_STEPS[0])\n"
        "        hidden = run_layers(stack, hidden, position_ids, cache, 0, len(stack.layers))\n",
        "decoding: count steps in the step function (planted: a recompile every decode step)",
    ),
    "buffer": (
        LLM,
        "        return Output(tokens=torch.cat(answers, dim=1).tolist())\n",
        "        kept = self.__dict__.setdefault(\"planted_kept\", [])  # planted: a buffer kept per call\n"
        "        kept.append(torch.ones(1 << 20, device=self.prompt.device))  # 4 MB a call\n"
        "        return Output(tokens=torch.cat(answers, dim=1).tolist())\n",
        "llm: keep a scratch buffer per call (planted: memory kept per call)",
    ),
}
RECOMPILE_GLOBAL = ("StepFn = Callable[", "PLANTED_STEPS = [0]  # planted\n")


class PlantError(Exception):
    pass


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise PlantError(f"git {' '.join(args)}: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout.strip()


def edit(repo: Path, rel: str, anchor: str, replacement: str) -> None:
    path = repo / rel
    text = path.read_text()
    if text.count(anchor) != 1:
        raise PlantError(f"{rel}: anchor not found exactly once: {anchor.splitlines()[0].strip()!r}")
    path.write_text(text.replace(anchor, replacement))


def apply_plant(repo: Path, name: str) -> str:
    rel, anchor, replacement, subject = PLANTS[name]
    edit(repo, rel, anchor, replacement)
    if name == "recompile":
        first, line = RECOMPILE_GLOBAL
        text = (repo / DECODING).read_text()
        at = text.index(first)
        (repo / DECODING).write_text(text[:at] + line + text[at:])
    return subject


def commit(repo: Path, subject: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=plant", "-c", "user.email=plant@example.invalid", "commit", "-q", "-m", subject)
    return git(repo, "rev-parse", "HEAD")


def neutral(repo: Path, i: int) -> str:
    notes = repo / NOTES
    with notes.open("a") as f:
        f.write(f"- step {i}: a neutral change\n")
    return commit(repo, f"notes: step {i} (neutral)")


def plants(repo: Path) -> None:
    start = git(repo, "rev-parse", "HEAD")
    for name in PLANTS:
        git(repo, "checkout", "-q", "-B", f"plant-{name}", start)
        sha = commit(repo, apply_plant(repo, name))
        print(f"plant-{name} {sha}")
    git(repo, "checkout", "-q", start)
    print(f"base {start}")


def series(repo: Path, plant: str, at: int, broken: int, length: int = 16) -> None:
    if not 1 <= broken < length or not 1 < at <= length or broken + 1 == at or broken == at:
        raise PlantError("--at and --broken must be different commits of the series, the broken one "
                         "repaired before the plant")
    good = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-B", "series", good)
    shas: list[str] = []
    broken_sha = planted = ""
    for i in range(1, length + 1):
        if i == at:
            planted = commit(repo, apply_plant(repo, plant))
            shas.append(planted)
        elif i == broken:
            edit(repo, LLM, "def build(task: str, options: BuildOptions) -> LlmRunner:\n",
                 "def build(task: str, options: BuildOptions) -> LlmRunner  # broken: no colon\n")
            broken_sha = commit(repo, f"llm: step {i} (does not build: a syntax error)")
            shas.append(broken_sha)
        elif i == broken + 1:
            edit(repo, LLM, "def build(task: str, options: BuildOptions) -> LlmRunner  # broken: no colon\n",
                 "def build(task: str, options: BuildOptions) -> LlmRunner:\n")
            shas.append(commit(repo, f"llm: step {i} (repairs the syntax error)"))
        else:
            shas.append(neutral(repo, i))
    print(f"good {good}")
    print(f"bad {shas[-1]}")
    print(f"planted {planted} (commit {at} of {length}: {plant})")
    print(f"broken {broken_sha} (commit {broken} of {length})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("plants", help="four branches, one planted cause each")
    a.add_argument("clone", type=Path)
    b = sub.add_parser("series", help="16 commits, one planted regression")
    b.add_argument("clone", type=Path)
    b.add_argument("--plant", choices=sorted(PLANTS), default="mlp")
    b.add_argument("--at", type=int, default=8, help="the planted commit's position, 1-based (default 8)")
    b.add_argument("--broken", type=int, default=4,
                   help="the unbuildable commit's position (default 4: the second midpoint bisect probes)")
    args = p.parse_args(argv)
    try:
        if git(args.clone, "status", "--porcelain", "--untracked-files=no"):
            raise PlantError(f"{args.clone} has uncommitted changes")
        if args.what == "plants":
            plants(args.clone)
        else:
            series(args.clone, args.plant, args.at, args.broken)
    except (PlantError, OSError) as exc:
        print(f"plant_series: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
