"""One GPU per pytest-xdist worker (``pytest_mmperf.gpu_pinning``), with fakes: no GPU, no xdist."""

from __future__ import annotations

import pytest

from pytest_mmperf.gpu_pinning import ENV, pin, visible_gpus, worker_index
from pytest_mmperf.settings import UsageError


def gpus(n: int):
    return lambda: n


def never() -> bool:
    return False


def worker(i: int, count: int) -> dict[str, object]:
    return {"workerid": f"gw{i}", "workercount": count}


@pytest.mark.parametrize("i", [0, 1, 2, 3])
def test_each_worker_gets_its_own_gpu(i):
    env: dict[str, str] = {}
    assert pin("cuda", worker(i, 4), env=env, count_gpus=gpus(4), initialized=never) == str(i)
    assert env[ENV] == str(i)


def test_parent_visible_devices_are_respected():
    env = {ENV: "2,5,7"}
    assert pin("auto", worker(1, 3), env=env, count_gpus=gpus(8), initialized=never) == "5"
    assert env[ENV] == "5"


def test_more_workers_than_gpus_is_refused_on_the_worker():
    with pytest.raises(UsageError, match=r"-n 3: 3 pytest-xdist workers but 2 GPU\(s\) visible.*-n 2 or fewer"):
        pin("cuda", worker(0, 3), env={}, count_gpus=gpus(2), initialized=never)


def test_more_workers_than_gpus_is_refused_on_the_controller():
    with pytest.raises(UsageError, match="-n 4: 4 pytest-xdist workers but 1 GPU"):
        pin("auto", None, 4, env={}, count_gpus=gpus(1), initialized=never)
    assert pin("auto", None, 2, env={}, count_gpus=gpus(2), initialized=never) is None


@pytest.mark.parametrize(
    ("device", "workerinput", "n_gpus"),
    [("cpu", worker(0, 2), 2), ("auto", worker(0, 2), 0), ("cuda", None, 8), ("auto", None, 0)],
)
def test_nothing_happens_without_xdist_gpus_or_cuda(device, workerinput, n_gpus):
    env: dict[str, str] = {}
    assert pin(device, workerinput, 8, env=env, count_gpus=gpus(n_gpus), initialized=never) is None
    assert env == {}


def test_cpu_device_never_counts_gpus():
    def boom() -> int:
        raise AssertionError("counted GPUs for --mmperf-device=cpu")

    assert pin("cpu", worker(0, 16), 16, env={}, count_gpus=boom, initialized=never) is None


def test_cuda_initialized_too_early_is_refused():
    with pytest.raises(UsageError, match="CUDA was initialized before"):
        pin("cuda", worker(0, 1), env={}, count_gpus=gpus(1), initialized=lambda: True)


def test_worker_index_and_visible_gpus():
    assert worker_index({"workerid": "gw12", "workercount": 16}) == (12, 16)
    with pytest.raises(UsageError, match="not gwN"):
        worker_index({"workerid": "master"})
    assert visible_gpus({ENV: ""}, gpus(8)) == []  # the parent hid every GPU
    assert visible_gpus({ENV: "GPU-a1, GPU-b2"}, gpus(8)) == ["GPU-a1", "GPU-b2"]
    assert visible_gpus({}, gpus(2)) == ["0", "1"]


def test_plugin_pins_before_the_session_starts(pytester, monkeypatch):
    """The wiring: an xdist worker's pytest_configure pins, then RunSession.start runs."""
    import pytest_mmperf.gpu_pinning as gp
    import pytest_mmperf.session as session

    calls: list[str] = []
    monkeypatch.setattr(gp, "pin", lambda device, workerinput, n: calls.append(f"pin {device} {workerinput}"))
    real_start = session.RunSession.start
    monkeypatch.setattr(session.RunSession, "start", lambda self: (calls.append("start"), real_start(self))[1])
    pytester.makepyfile("def test_a():\n    pass\n")
    pytester.runpytest("--mmperf", "--mmperf-history=off").assert_outcomes(passed=1)
    assert calls == ["pin auto None", "start"]
