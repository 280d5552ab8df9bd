"""The bundled suites: library warnings are reported, never turned into errors; every workload
test is parametrized by ``--mmperf-batch`` (without it, each workload runs at its own batch
size and the node ids stay as they were, so stored baselines still match); the trained-model
tests by the models of ``--mmperf-model`` (checked by :mod:`mmperf_suites.plugin`), each id
naming its model."""

import os

import pytest
from mmperf_levers.contract import PretrainedOptions

from mmperf_suites.harness import DEFAULT_BATCH
from mmperf_suites.plugin import trained_setup
from pytest_mmperf.plugin import SETTINGS_KEY

NO_MODEL = "no trained model given: --mmperf-model=llm=smollm2, a Hugging Face folder or a GGUF file"
# The CI's short run on the real model (tests/): the first N problems, a smaller cap per answer.
PROBLEMS_ENV = "MMPERF_TRAINED_PROBLEMS"
MAX_NEW_TOKENS_ENV = "MMPERF_TRAINED_MAX_NEW_TOKENS"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("default"))


def _trained_models(metafunc: pytest.Metafunc) -> None:
    setup = trained_setup(metafunc.config)
    workload = metafunc.module.WORKLOAD
    sources = [s for s in setup.sources if s.workload == workload] if setup is not None else []
    if not sources:
        metafunc.parametrize("trained_model", [pytest.param(None, marks=pytest.mark.skip(reason=NO_MODEL),
                                                            id="no-model")])
        return
    problems, cap = os.environ.get(PROBLEMS_ENV), os.environ.get(MAX_NEW_TOKENS_ENV)
    options = [PretrainedOptions(label=s.label, kind=s.kind, path=s.path, cache_dir=setup.cache_dir,
                                 prompts=setup.prompts, problems=int(problems) if problems else None,
                                 max_new_tokens=int(cap) if cap else None, random_weights=s.random_weights)
               for s in sources]
    metafunc.parametrize("trained_model", options, ids=[s.label for s in sources])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "trained_model" in metafunc.fixturenames:
        _trained_models(metafunc)
    if "batch_size" not in metafunc.fixturenames:
        return
    if any("batch_size" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test names its own sizes (test_llm_batched)
    settings = metafunc.config.stash.get(SETTINGS_KEY, None)
    sizes = settings.batch if settings is not None else ()
    if sizes:
        metafunc.parametrize("batch_size", sizes, ids=lambda size: f"bs{size}")


@pytest.fixture
def batch_size(request: pytest.FixtureRequest) -> int:
    """The workload's own batch size (used when --mmperf-batch is not given)."""
    return DEFAULT_BATCH[request.module.WORKLOAD]
