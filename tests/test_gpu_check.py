"""scripts/gpu_check on a machine without a GPU, and its report on a synthetic results document."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
assert spec is not None and spec.loader is not None
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@no_gpu
def test_without_a_gpu_it_says_so_in_one_line_and_exits_3() -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "gpu_check")], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == gpu_check.NO_GPU
    assert proc.stdout.strip().splitlines() == [
        "gpu_check: no GPU (torch.cuda.is_available() is False); nothing checked"]


@no_gpu
def test_dry_prints_the_plan_and_exits_0() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("gpu_check: no GPU")
    assert any("static_cache+cuda_graphs" in line for line in lines)
    assert any("test_speech[s2st-eager]" in line for line in lines)


def metric(*samples: float) -> dict[str, Any]:
    return {"median": sorted(samples)[len(samples) // 2], "samples": list(samples)}


DOC = {
    "benchmarks": [
        {
            "id": "test_llm[t2t-static_cache+cuda_graphs]", "scale": "tiny",
            "metrics": {
                "latency_ms": metric(10.0, 11.0, 12.0), "tpot_ms": metric(0.1, 0.1, 0.1),
                "cuda_graphs_recorded_count": metric(2.0), "cuda_graphs_replayed_count": metric(1.0),
                "cuda_graph_rerecords_count": metric(0.0), "cuda_graph_skips_count": metric(0.0),
                "sdpa_flash_count": metric(0.0), "sdpa_efficient_count": metric(0.0),
                "peak_memory_bytes": metric(2.0 * 2**30), "gpu_sm_clock_mhz": metric(1980.0),
                "gpu_temperature_celsius": metric(40.0), "gpu_throttled_count": metric(0.0, 1.0, 0.0),
            },
            "speedup_vs_eager": {"median": 3.0, "ci_low": 2.8, "ci_high": 3.2},
            "quality": {"verdict": "pass"},
            "profile": {"device_busy_fraction": 0.85},
        },
        {
            "id": "test_llm[t2t-stack]", "scale": "tiny",
            "metrics": {"latency_ms": metric(5.0), "cuda_graphs_recorded_count": metric(3.0),
                        "cuda_graphs_replayed_count": metric(0.0), "sdpa_flash_count": metric(4.0)},
            "quality": {"verdict": "fail"},
        },
    ]
}


def test_summary_lines() -> None:
    first, second = gpu_check.summarize(DOC)
    assert "speedup 3.00x [2.80, 3.20]" in first and "replayed yes" in first
    assert "busy/step 85%" in first and "SM 1980 MHz" in first and "THROTTLED rounds 1" in first
    assert "sdpa none" in first and "peak 2.00 GiB" in first
    assert "replayed NO" in second and "sdpa flash" in second
    assert gpu_check.problems(DOC) == ["test_llm[t2t-stack]: quality failed",
                                       "test_llm[t2t-stack]: CUDA graphs were not replayed"]


def test_main_on_a_fake_gpu_writes_the_report_and_fails_on_problems(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "results-tiny.json"
    doc.write_text(json.dumps(DOC))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path)
    monkeypatch.setattr(gpu_check, "device_facts", lambda: ["facts: gpu_name=fake"])
    monkeypatch.setattr(gpu_check, "timing", lambda: ["timing: fake"])
    monkeypatch.setattr(gpu_check, "run_benchmarks", lambda out: ([doc], ["pytest tiny: rc=1"]))
    assert gpu_check.main(["--out", "check"]) == 1
    report = (tmp_path / "check" / "report.txt").read_text()
    assert "facts: gpu_name=fake" in report and "problems: test_llm[t2t-stack]: quality failed" in report
    assert report.strip() == capsys.readouterr().out.strip()
