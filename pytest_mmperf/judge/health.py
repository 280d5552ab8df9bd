"""Lever health that fails a comparison: counts that say a lever stopped doing its job.

A compiled step that recompiles on every call, graph breaks, CUDA graphs re-recorded or skipped,
fewer layers quantized or steps compiled: each is an exact count, recorded by the lever with the
benchmark (``recompiles_count``, ``graph_breaks_count``, ...), the same in every run of unchanged
code. A worse count is a regression of its own, whatever the timings say: on a shared runner a
step that recompiles every call was left inconclusive by the timings (the speedup read 0.97x
against 1.53x at the base) while ``recompiles_count`` read 0 -> 7.

Only counts present on both sides are compared (a lever that records none, or a baseline stored
before it did, has nothing to compare). Rates (LayerSkip's acceptance) and byte counts are judged
elsewhere: a rate moves with the prompt, bytes are gated as bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# count -> True when a higher value is worse, False when a lower one is
GATED_HEALTH: Mapping[str, bool] = {
    "recompiles_count": True,
    "graph_breaks_count": True,
    "cuda_graph_rerecords_count": True,
    "cuda_graph_skips_count": True,
    "compiled_steps_count": False,
    "quantized_layers_count": False,
    "cuda_graphs_replayed_count": False,
}


@dataclass(frozen=True)
class HealthChange:
    metric: str
    base: float
    head: float

    @property
    def message(self) -> str:
        return f"{self.metric} {_fmt(self.base)} -> {_fmt(self.head)} (worse)"

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "base": self.base, "head": self.head, "message": self.message}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


def _median(metrics: Mapping[str, Any], name: str) -> float | None:
    rec = metrics.get(name)
    value = getattr(rec, "median", None)
    return float(value) if isinstance(value, (int, float)) else None


def compare_health(base_metrics: Mapping[str, Any], head_metrics: Mapping[str, Any]) -> list[HealthChange]:
    """The gated health counts that got worse from ``base`` to ``head`` (records' ``metrics``:
    name -> an object with a ``median``); empty when none did."""
    out: list[HealthChange] = []
    for name, higher_is_worse in GATED_HEALTH.items():
        b, h = _median(base_metrics, name), _median(head_metrics, name)
        if b is None or h is None:
            continue
        if (h > b) if higher_is_worse else (h < b):
            out.append(HealthChange(name, b, h))
    return out
