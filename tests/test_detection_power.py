"""scripts/detection_power.py plants regressions by replacing anchors in the suites' source: when
the source moves, the script must notice before a long run, not an hour into it."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("detection_power", ROOT / "scripts/detection_power.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plant_anchors_are_in_the_suites() -> None:
    dp = _script()
    decoding = (ROOT / "suites/mmperf_suites/workloads/decoding.py").read_text()
    llm = (ROOT / "suites/mmperf_suites/workloads/llm.py").read_text()
    assert dp.SLOW_ANCHOR in decoding and dp.OPS_ANCHOR in decoding
    assert dp.MEMORY_ANCHOR in llm and dp.MEMORY_RETURN in llm


def test_plants_apply_and_compile(tmp_path: Path) -> None:
    """Each plant is a commit whose planted files still compile."""
    dp = _script()
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    for git_cfg in (["user.email", "t@example.invalid"], ["user.name", "t"]):
        subprocess.run(["git", "-C", str(clone), "config", *git_cfg], check=True)
    base = dp.git(clone, "rev-parse", "HEAD")
    for plant, planted_file in (("slow10", "decoding.py"), ("mem20", "llm.py"), ("ops4", "decoding.py")):
        sha = dp.plant_commit(clone, base, plant, memory_bytes=1 << 20)
        diff = dp.git(clone, "diff", "--stat", base, sha)
        assert planted_file in diff, (plant, diff)
        source = (clone / "suites/mmperf_suites/workloads" / planted_file).read_text()
        compile(source, planted_file, "exec")
        assert "planted" in source


def test_every_plant_series_anchor_is_in_the_suites_exactly_once() -> None:
    """scripts/plant_series.py stops at an anchor that is missing or ambiguous; a second runner
    with the same line (the trained-model runner) once made the default ``mlp`` plant unusable."""
    spec = importlib.util.spec_from_file_location("plant_series", ROOT / "scripts/plant_series.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, (path, anchor, _replacement, _subject) in module.PLANTS.items():
        text = (ROOT / path).read_text()
        assert text.count(anchor) == 1, (name, path, text.count(anchor))
