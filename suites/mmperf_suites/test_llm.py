"""The llm workload of Lee et al. (2024): every task x every lever set, each against eager."""

import pytest

from mmperf_suites.harness import lever_id, lever_sets, run_benchmark

WORKLOAD = "llm"
TASKS = ("t2t",)


@pytest.mark.parametrize("levers", lever_sets(WORKLOAD), ids=lever_id)
@pytest.mark.parametrize("task", TASKS)
def test_llm(mmperf, task, levers, batch_size):
    run_benchmark(mmperf, WORKLOAD, task, levers, batch_size=batch_size)


@pytest.mark.parametrize("levers", [(), ("sdpa",), ("stack",)], ids=lever_id)
@pytest.mark.parametrize("batch_size", [4])
def test_llm_batched(mmperf, batch_size, levers):
    """Batch > 1: attention and KV cache grow with batch (paper: attention share rises with batch)."""
    if mmperf.settings.batch:
        pytest.skip("--mmperf-batch sets the batch sizes of every llm benchmark")
    run_benchmark(mmperf, WORKLOAD, "t2t", levers, batch_size=batch_size)


def _longest_first(sets):
    """The trained model's lever sets, the slowest first (LayerSkip: ~3x eager's rounds at this
    model's 1.5% acceptance; then the compiled ones, ~2 min of cold inductor compile; int8
    dynamic ~2x eager), so pytest-xdist workers start them first and the cheap ones fill in:
    in a cold run the stack, started last, ran alone on one core for its last 74 s."""
    def cost(levers):
        return (not any("layerskip" in lever for lever in levers),
                not any(lever in ("stack", "compiled") for lever in levers),
                "int8_dynamic" not in levers)

    return sorted(sets, key=cost)


@pytest.mark.parametrize("levers", _longest_first(lever_sets(WORKLOAD)), ids=lever_id)
def test_llm_trained(mmperf, trained_model, levers):
    """A trained checkpoint (``--mmperf-model=llm=smollm2``, a Hugging Face folder or a GGUF
    file) answering the scale's HumanEval problems: every lever set against eager, with
    pass@1 of each arm's answers; its id names the model, so baselines never mix models."""
    run_benchmark(mmperf, WORKLOAD, "t2t", levers, pretrained=trained_model)
