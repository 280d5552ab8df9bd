"""int8 quantization of Linear weights with torchao (``quantize_``): two levers.

* ``int8_weight_only``: int8 weights, dequantized in the matmul (saves memory bandwidth:
  decode at small batch is bandwidth-bound);
* ``int8_dynamic``: int8 weights and per-token dynamically quantized int8 activations.

Only ``nn.Linear`` modules are quantized: the decoder's projections and, by default, the LM
head (as gpt-fast does; it is one of the largest matrices at small scale). Embeddings stay in
full precision (a lookup, not a matmul), as do convolutions (e.g. Chameleon's VQ encoder).
The paper used torchao's AutoQuant (per-layer choice), which torchao removed in 0.17.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from torch import nn

from mmperf_levers.contract import BuildOptions, Runner


def torchao_config(kind: str) -> Any:
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    if kind == "weight_only":
        return Int8WeightOnlyConfig()
    if kind == "dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    raise ValueError(f"unknown int8 kind {kind!r}")


def quantized_linears(model: nn.Module) -> int:
    """Linear modules whose weight is now a torchao tensor subclass."""
    from torchao.utils import TorchAOBaseTensor

    return sum(
        isinstance(m, nn.Linear) and isinstance(m.weight, TorchAOBaseTensor)
        for m in model.modules()
    )


@dataclass(frozen=True)
class Int8Lever:
    name: str
    kind: str  # "weight_only" | "dynamic"
    quantize_lm_head: bool = True
    lossy: bool = True

    def unsupported(self, workload: str, task: str, device: str) -> str | None:
        if importlib.util.find_spec("torchao") is None:
            return "torchao is not installed (pip install 'pytest-mmperf[quant]')"
        return None

    def configure(self, options: BuildOptions) -> BuildOptions:
        return options

    def apply(self, runner: Runner) -> dict[str, float]:
        from torchao.quantization import quantize_

        def wanted(module: nn.Module, fqn: str) -> bool:
            if not isinstance(module, nn.Linear):
                return False
            return self.quantize_lm_head or fqn.split(".")[-1] != "lm_head"

        quantize_(runner.model, torchao_config(self.kind), filter_fn=wanted)
        return {"quantized_layers_count": float(quantized_linears(runner.model))}


INT8_WEIGHT_ONLY = Int8Lever(name="int8_weight_only", kind="weight_only")
INT8_DYNAMIC = Int8Lever(name="int8_dynamic", kind="dynamic")
LEVERS = (INT8_WEIGHT_ONLY, INT8_DYNAMIC)
