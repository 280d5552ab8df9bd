import pytest
import torch

from pytest_mmperf.measure.profiling import OP_CLASSES, classify, profile_call, shares
from pytest_mmperf.measure.roofline import measure_bandwidth_gbps, measure_peak_tflops, roofline


@pytest.mark.parametrize(
    ("op", "cls"),
    [
        ("aten::addmm", "linear"),
        ("aten::mm", "linear"),
        ("aten::linear", "linear"),
        ("aten::_weight_int8pack_mm", "linear"),
        ("aten::scaled_dot_product_attention", "attention"),
        ("aten::_softmax", "attention"),
        ("aten::bmm", "attention"),
        ("aten::index_select", "kv_cache"),
        ("aten::index_copy_", "kv_cache"),
        ("aten::cat", "kv_cache"),
        ("aten::layer_norm", "normalization"),
        ("aten::rsqrt", "normalization"),
        ("aten::silu", "activation"),
        ("aten::embedding", "embedding"),
        ("aten::add", "other"),
    ],
)
def test_classify(op, cls):
    assert classify(op) == cls


def test_shares_sum_to_one_and_cover_every_class():
    s = shares([("aten::addmm", 80.0), ("aten::_softmax", 15.0), ("aten::add", 5.0)])
    assert set(s) == set(OP_CLASSES)
    assert s["linear"] == pytest.approx(0.8) and s["attention"] == pytest.approx(0.15)
    assert sum(s.values()) == pytest.approx(1.0)
    assert sum(shares([]).values()) == 0


def test_profile_call_on_cpu_attributes_a_linear_heavy_call():
    lin = torch.nn.Linear(256, 256)
    x = torch.randn(64, 256)

    def fn():
        with torch.inference_mode():
            for _ in range(10):
                lin(x)

    p = profile_call(fn, "cpu", steps=10)
    assert p["op_share"]["linear"] > 0.5
    assert p["ops_per_decode_step"] == p["aten_ops_count"] / 10
    assert "device_busy_fraction" not in p  # a GPU-only figure


def test_roofline_floor_and_fraction():
    r = roofline(bytes_per_step=2e9, flops_per_step=4e9, step_ms=10.0, bandwidth_gbps=400.0, peak_tflops=100)
    assert r["memory_floor_ms"] == pytest.approx(5.0)
    assert r["achieved_fraction"] == pytest.approx(0.5)
    assert r["arithmetic_intensity_flop_per_byte"] == pytest.approx(2.0)
    assert r["bound"] == "memory"
    with pytest.raises(ValueError):
        roofline(1, 1, 0, 1)


def test_bandwidth_is_measured():
    assert measure_bandwidth_gbps("cpu", megabytes=16, repeats=2) > 0.1


def test_compute_bound_verdict_above_the_ridge_point():
    # ridge = 100 TFLOP/s / 400 GB/s = 250 FLOP/byte; a step at 1000 FLOP/byte is compute-bound
    r = roofline(bytes_per_step=1e6, flops_per_step=1e9, step_ms=1.0, bandwidth_gbps=400.0, peak_tflops=100)
    assert r["ridge_flop_per_byte"] == pytest.approx(250.0)
    assert r["bound"] == "compute"
    assert r["compute_floor_ms"] > r["memory_floor_ms"]


def test_peak_flops_is_measured():
    assert measure_peak_tflops("cpu", size=128, repeats=2) > 1e-4
