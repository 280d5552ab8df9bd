"""Memory that belongs to the benchmark: per-arm weight bytes as stored after the levers."""

import torch
from mmperf_levers import registry
from mmperf_suites.harness import base_options, model_weight_bytes
from mmperf_suites.workloads import llm


def test_weight_bytes_count_storage_and_tied_weights_once():
    lin = torch.nn.Linear(8, 4)  # 32 weights + 4 biases, float32
    model = torch.nn.Sequential(lin, torch.nn.ReLU())
    model.register_buffer("scale", torch.ones(2, dtype=torch.float16))
    assert model_weight_bytes(model) == (32 + 4) * 4 + 2 * 2
    tied = torch.nn.ModuleDict({"a": lin, "b": lin})
    assert model_weight_bytes(tied) == (32 + 4) * 4


def test_int8_weight_only_has_fewer_weight_bytes_than_eager():
    options = base_options("llm", "tiny", "cpu")
    eager = llm.build("t2t", options)
    lever = registry.by_name("int8_weight_only")
    quantized = llm.build("t2t", lever.configure(options))
    lever.apply(quantized)
    e, q = model_weight_bytes(eager.model), model_weight_bytes(quantized.model)
    assert e == eager.facts.weight_bytes + sum(b.numel() * b.element_size() for b in eager.model.buffers())
    assert q < 0.6 * e  # int8 data + scales instead of float32 (embeddings stay float32)
