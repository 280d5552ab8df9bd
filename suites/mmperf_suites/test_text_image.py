"""The text_image workload of Lee et al. (2024): every task x every lever set, each against eager."""

import pytest

from mmperf_suites.harness import lever_id, lever_sets, run_benchmark

WORKLOAD = "text_image"
TASKS = ("i2t", "it2t", "t2i")


@pytest.mark.parametrize("levers", lever_sets(WORKLOAD), ids=lever_id)
@pytest.mark.parametrize("task", TASKS)
def test_text_image(mmperf, task, levers, batch_size):
    run_benchmark(mmperf, WORKLOAD, task, levers, batch_size=batch_size)
