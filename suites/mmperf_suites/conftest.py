"""The bundled suites: library warnings are reported, never turned into errors; every workload
test is parametrized by ``--mmperf-batch`` (without it, each workload runs at its own batch
size and the node ids stay as they were, so stored baselines still match)."""

import pytest

from mmperf_suites.harness import DEFAULT_BATCH
from pytest_mmperf.plugin import SETTINGS_KEY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("default"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
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
