"""Every lever by name, loaded on first use (importing this module imports no torch).

A lever module exposes ``LEVER`` (one lever) or ``LEVERS`` (several, e.g. ``int8``). To add
levers, append the module's name to ``LEVER_MODULES``.
"""

from __future__ import annotations

import importlib

from mmperf_levers.contract import Lever

LEVER_MODULES: list[str] = [
    "sdpa",
    "static_cache",
    "compile",
    "cuda_graphs",
    "int8",
    "layerskip",
    "stack",
    "speech_inplace_beam_reorder",
    "speech_remove_weight_norm",
    "hstu_fused_attention",
]


def levers_of(module_name: str) -> tuple[Lever, ...]:
    module = importlib.import_module(f"mmperf_levers.{module_name}")
    if hasattr(module, "LEVERS"):
        return tuple(module.LEVERS)
    return (module.LEVER,)


def all_levers() -> dict[str, Lever]:
    """name -> lever, in ``LEVER_MODULES`` order."""
    levers: dict[str, Lever] = {}
    for module_name in LEVER_MODULES:
        for lever in levers_of(module_name):
            if lever.name in levers:
                raise ValueError(f"two levers are named {lever.name!r}")
            levers[lever.name] = lever
    return levers


def by_name(name: str) -> Lever:
    levers = all_levers()
    if name not in levers:
        raise KeyError(f"no lever {name!r}; known: {', '.join(levers)}")
    return levers[name]
