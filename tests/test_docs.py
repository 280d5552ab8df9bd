"""The README keeps its promises: the example runs, the options table is complete, and the
project's text cites only the project's own documents."""

import json
import re
import subprocess
from pathlib import Path

from pytest_mmperf.settings import OPTIONS

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _first_python_block(text: str) -> str:
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "the README has no python example"
    return match.group(1)


def test_readme_example_runs_and_measures_its_phases(pytester):
    example = _first_python_block(README)
    assert len(example.strip().splitlines()) <= 20
    pytester.makepyfile(test_example=example)
    result = pytester.runpytest("--mmperf", "--mmperf-history=off", "--mmperf-rounds=5",
                                "--mmperf-max-time=0.2", "--mmperf-json=r.json")
    result.assert_outcomes(passed=1)
    (bench,) = json.loads((pytester.path / "r.json").read_text())["benchmarks"]
    metrics = bench["metrics"]
    assert {"latency_ms", "ttft_ms", "tpot_ms", "peak_memory_bytes", "process_peak_rss_bytes"} <= set(metrics)
    assert metrics["tpot_ms"]["n"] == 16 * metrics["ttft_ms"]["n"]  # one sample per decode step


def test_readme_options_table_lists_every_option():
    table = "\n".join(line for line in README.splitlines() if line.startswith("| `--mmperf"))
    flags = set(re.findall(r"`(--mmperf[a-z-]*)", table))
    assert {spec.flag for spec in OPTIONS} <= flags, "add the missing options to the README's table"


def test_no_citation_of_documents_outside_the_repository():
    names = ["STYLE" + ".md", "MEASURING" + ".md", "INTERFACE" + ".md", "../" + "shared", "shared/" + "MEASURING"]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    files = tracked.stdout.split() if tracked.returncode == 0 else [
        str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts
    ]
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".yml", ".yaml", ".toml", ".sh", "") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        hits += [f"{name}: {n}" for n in names if n in text]
    assert hits == []
