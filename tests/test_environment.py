from pytest_mmperf.measure import environment
from pytest_mmperf.measure.memory.host import HostRssProbe
from pytest_mmperf.measure.memory.nvml import NvmlProbe


def test_collect_on_this_machine():
    env = environment.collect("cpu")
    for key in ("cpu_model", "cpu_count", "ram_bytes", "os", "python", "torch_version", "fingerprint"):
        assert env[key], key
    # no GPU or no NVML is reported, never a crash
    assert "nvml" in env
    assert env["fingerprint"].startswith(f"cpu-{env['cpu_count']}c-")


def test_fingerprint_depends_only_on_comparable_keys():
    base = {k: f"v-{k}" for k in environment.COMPARABLE_KEYS} | {"device": "cpu", "os": "a", "ram_bytes": 1}
    same = dict(base, os="b", ram_bytes=2)  # not comparable keys
    other = dict(base, torch_version="9.9")
    assert environment.fingerprint(base) == environment.fingerprint(same)
    assert environment.fingerprint(base) != environment.fingerprint(other)
    assert environment.differences(base, other) == {"torch_version": ("v-torch_version", "9.9")}


def test_cuda_fingerprint_names_the_gpu():
    env = {"device": "cuda", "gpu_name": "NVIDIA H200"}
    assert environment.fingerprint(env).startswith("cuda-h200-")


def test_host_probe_resets_and_reads_peak_rss():
    probe = HostRssProbe()
    probe.reset()
    before = probe.read()["process_peak_rss_bytes"]
    block = bytearray(64 * 1024 * 1024)  # touch 64 MiB
    for i in range(0, len(block), 4096):
        block[i] = 1
    after = probe.read()["process_peak_rss_bytes"]
    assert after >= before + 60 * 1024 * 1024
    del block
    if probe.resettable:
        probe.reset()
        assert probe.read()["process_peak_rss_bytes"] < after


def test_nvml_absent_is_none_not_a_crash():
    # this machine has no NVIDIA driver; on a GPU machine this returns a probe
    probe = NvmlProbe.open()
    if probe is not None:
        assert "device_memory_used_bytes" in probe.read()
