"""The bundled suites' own pytest plugin (entry point ``mmperf_suites``): checks
``--mmperf-model`` and ``--mmperf-prompts`` when pytest starts, before any test is collected,
so that a bad path, a folder that is not a model or an architecture no workload runs is pytest's
one-line usage error (exit 4) and nothing is measured or written. Imports neither torch nor
transformers (a GGUF header is read with the ``gguf`` package only when one is given).

The checked sources ride on ``config.stash`` for the suites' ``pytest_generate_tests``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_mmperf.plugin import SETTINGS_KEY


@dataclass(frozen=True)
class TrainedSetup:
    sources: tuple  # tuple[ModelSource, ...]
    prompts: str | None  # a checked JSONL file, or None for HumanEval
    cache_dir: str  # where GGUF files are converted to (safetensors), keyed by their sha256


TRAINED_KEY = pytest.StashKey[TrainedSetup]()


@pytest.hookimpl(trylast=True)  # after pytest-mmperf's own pytest_configure resolved the settings
def pytest_configure(config: pytest.Config) -> None:
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None or (not settings.model and settings.prompts is None):
        return
    from mmperf_suites import model_sources, prompts

    base = Path(str(config.invocation_params.dir))
    try:
        sources = model_sources.parse_all(settings.model, base)
    except model_sources.ModelSourceError as exc:
        raise pytest.UsageError(f"--mmperf-model: {exc}") from None
    prompts_file = None
    if settings.prompts is not None:
        path = Path(settings.prompts).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            prompts.read_jsonl(path)
        except prompts.PromptsError as exc:
            raise pytest.UsageError(f"--mmperf-prompts: {exc}") from None
        prompts_file = str(path.resolve())
    cache = str(model_sources.model_cache(Path(str(config.rootpath))))
    config.stash[TRAINED_KEY] = TrainedSetup(sources=sources, prompts=prompts_file, cache_dir=cache)


def trained_setup(config: pytest.Config) -> TrainedSetup | None:
    return config.stash.get(TRAINED_KEY, None)
