"""One benchmark = (workload, task, lever set): build, measure, check quality, describe.

Every suite test calls :func:`run_benchmark`. With no lever it measures the eager workload;
with levers it builds eager and optimized side by side and measures them interleaved (ABBA), so
``speedup_vs_eager`` comes from one run with drift cancelled, then checks output quality with
the test that fits the levers (see :mod:`mmperf_suites.quality`). A quality failure fails the test
after everything measured has been recorded.

Memory that belongs to the benchmark: besides the fixture's ``peak_memory_bytes`` (the call's own
peak above its start), each arm records deterministic facts: ``weight_bytes`` (parameters and
buffers of its model after the levers, the storage they really take: int8 weight-only counts its
int8 data and scales) and ``kv_cache_bytes`` where the runner reports it. A lever benchmark's own
figures are the optimized arm's (gated); the eager arm's carry the ``eager_`` prefix (reported
only: the eager benchmark gates them). Round outputs are not kept: determinism is compared on
the fly (:class:`mmperf_suites.quality.RoundTracker`).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Sequence
from typing import Any

import pytest
from mmperf_levers.contract import BuildOptions, LayerSkipOptions, NullPhases, PretrainedOptions

from mmperf_suites import quality

WORKLOAD_MODULES = {
    "llm": "mmperf_suites.workloads.llm",
    "speech": "mmperf_suites.workloads.speech",
    "text_image": "mmperf_suites.workloads.text_image",
    "recommender": "mmperf_suites.workloads.recommender",
}

# The lever sets each suite measures: each lever alone, then the paper's progression (each step
# adds to the one before: attention -> + static cache and compile (CUDA graphs on a GPU) -> + int8
# = ``stack``, the optimized baseline -> + LayerSkip), see ``mmperf_levers.stack``. () is the
# eager baseline. The progression's first step is the attention lever alone (``sdpa``, HSTU's
# fused attention). CUDA graphs need the static cache wherever there is a KV cache (the lever
# implies it), so the decoder workloads measure them as ``static_cache+cuda_graphs``; the
# recommender, which has no KV cache, measures ``cuda_graphs`` alone.
COMMON_LEVER_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("sdpa",),
    ("static_cache",),
    ("static_cache", "cuda_graphs"),
    ("int8_weight_only",),
    ("int8_dynamic",),
    ("layerskip",),
)
WORKLOAD_LEVER_SETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "speech": (("inplace_beam_reorder",), ("remove_weight_norm",)),
    # compile alone is the recommender's lever 2 (no KV cache); on the decoders the paper's lever 2
    # is static cache + compile (the ``compiled`` step), and compile over a growing cache only
    # recompiles (~4 minutes of the cold tiny suite for an ablation the paper does not report)
    "recommender": (("hstu_fused_attention",), ("compile",), ("cuda_graphs",)),
}
PROGRESSION_SETS: tuple[tuple[str, ...], ...] = (("compiled",), ("stack",), ("stack_layerskip",))
STEP_NAMES = ("compiled", "stack", "stack_layerskip")

# Each workload's own batch sizes (what runs without --mmperf-batch); the LLM is also measured
# at batch 4 by ``test_llm_batched`` (attention and KV cache grow with batch).
DEFAULT_BATCH = {"llm": 1, "speech": 1, "text_image": 1, "recommender": 1}


# The decoder workloads are built "LayerSkip-trained-like" for every lever set, eager included:
# a random model's early layers predict nothing (LayerSkip accepted ~no draft and ran at 0.37x),
# while a LayerSkip-trained checkpoint's early exit agrees with the full model. Scaling the late
# layers' residual contributions by this factor gives ~0.95 acceptance at tiny scale.
LAYERSKIP_TRAINED = {"llm": 0.05, "text_image": 0.05}


def lever_sets(workload: str) -> list[tuple[str, ...]]:
    return [*COMMON_LEVER_SETS, *WORKLOAD_LEVER_SETS.get(workload, ()), *PROGRESSION_SETS]


def lever_id(levers: Sequence[str]) -> str:
    return "+".join(levers) if levers else "eager"


def default_dtype(device: str) -> str:
    return "bfloat16" if device == "cuda" else "float32"


def _levers(names: Sequence[str], workload: str, task: str, device: str) -> list[Any]:
    from mmperf_levers import registry

    levers = []
    for name in names:
        if name in STEP_NAMES:
            # the exact composition for this workload, so the document lists the levers applied
            from mmperf_levers.stack import ComposedLever, progression

            steps = progression(workload, task, device)
            if name not in steps:
                pytest.skip(f"{name}: adds no lever to the step before it for {workload}/{task} on {device}")
            levers.append(ComposedLever(steps[name], name=name))
            continue
        lever = registry.by_name(name)
        reason = lever.unsupported(workload, task, device)
        if reason:
            pytest.skip(f"{name}: {reason}")
        levers.append(lever)
    return levers


# Levers the instruction clock cannot count. The compile levers run: under callgrind with the
# instruction-set caps of the re-exec (inductor's kernels for x86-64-v3, not the host's AVX-512,
# which valgrind does not emulate), a compiled benchmark of the tiny LLM took about a minute with a
# warm inductor cache and repeated to 0.044% between two processes.
INSTRUCTION_CLOCK_SKIPS = {
    "cuda_graphs": "CUDA graphs run on a GPU; the instruction clock counts CPU instructions",
}


def _skip_for_clock(levers: Sequence[str], settings: Any) -> None:
    if getattr(settings, "clock", "time") != "instructions":
        return
    for name in levers:
        if name in INSTRUCTION_CLOCK_SKIPS:
            pytest.skip(f"{name} with --mmperf-clock=instructions: {INSTRUCTION_CLOCK_SKIPS[name]}")


def base_options(workload: str, scale: str, device: str, batch_size: int = 1) -> BuildOptions:
    layerskip = LayerSkipOptions(trained_factor=LAYERSKIP_TRAINED.get(workload, 1.0))
    return BuildOptions(scale=scale, device=device, dtype=default_dtype(device), batch_size=batch_size,
                        layerskip=layerskip)


def progression_step(workload: str, task: str, device: str, applied: Sequence[str]) -> str | None:
    """The progression step whose levers are exactly ``applied`` (``attention`` for the attention
    lever alone), so reports can line benchmarks up with the paper's steps."""
    from mmperf_levers.stack import progression

    for step, levers in progression(workload, task, device).items():
        if [lever.name for lever in levers] == list(applied):
            return step
    return None


def _build(module: Any, task: str, options: BuildOptions) -> Any:
    try:
        return module.build(task, options)
    except (MemoryError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "out of memory" in first.lower() or isinstance(exc, MemoryError):
            pytest.skip(f"{module.WORKLOAD}/{task} at scale {options.scale}: not enough memory ({first})")
        raise


def run_benchmark(mmperf: Any, workload: str, task: str, levers: Sequence[str], batch_size: int = 1,
                  pretrained: PretrainedOptions | None = None) -> None:
    """``pretrained``: trained weights and real prompts instead of random weights (``llm``)."""
    from pytest_mmperf.results.metrics import EAGER_PREFIX

    device = mmperf.device
    scale = mmperf.settings.scale
    module = importlib.import_module(WORKLOAD_MODULES[workload])
    if scale not in module.SCALES:
        pytest.skip(f"{workload} has no scale {scale!r} (it has {', '.join(module.SCALES)})")
    _skip_for_clock(levers, mmperf.settings)
    lever_objs = _levers(levers, workload, task, device)
    base = base_options(workload, scale, device, batch_size)
    if pretrained is not None:
        if batch_size != 1:
            pytest.skip("the trained-model llm answers one prompt at a time (batch size 1)")
        # the trained model as it is: no LayerSkip-trained-like scaling of its late layers
        base = dataclasses.replace(base, layerskip=LayerSkipOptions(), pretrained=pretrained)
    if scale.startswith("paper") and device != "cuda" and pretrained is None:
        facts = module.describe(task, scale)
        mmperf.describe(workload=workload, task=task, optimizations=list(levers), batch_size=batch_size,
                        parameters=facts.parameters, weight_bytes=facts.weight_bytes)
        pytest.skip(
            f"{workload}/{task} at paper scale needs a GPU: {facts.parameters / 1e9:.2f}B parameters, "
            f"{facts.weight_bytes / 2**30:.1f} GiB of weights (described on the meta device)"
        )

    options = base
    for lever in lever_objs:
        options = lever.configure(options)
    eager = _build(module, task, base)
    facts = eager.facts
    applied = [name for lever in lever_objs for name in _expand(lever)]
    if pretrained is not None:  # which weights: a baseline of one model never judges another
        mmperf.describe(model=pretrained.label, model_source={"kind": pretrained.kind, "path": pretrained.path,
                                                              "random_weights": pretrained.random_weights},
                        prompts=pretrained.prompts or "humaneval")
    mmperf.describe(
        workload=workload,
        task=task,
        optimizations=applied,
        scale=scale,
        batch_size=batch_size,
        lever_set=lever_id(levers),
        progression_step=progression_step(workload, task, device, applied) if applied else "eager",
        parameters=facts.parameters,
        weight_bytes=facts.weight_bytes,
        flops_per_token=facts.flops_per_token,
        layers=facts.layers,
        hidden_size=facts.hidden_size,
        threads=_threads(),
    )

    tracker = quality.RoundTracker()
    mmperf.observe(tracker)  # the benchmark's own arm: eager here, the optimized arm below
    if not lever_objs:
        output = mmperf(eager.run, mmperf)
        q = tracker.result()
        q["verdict"] = "pass" if q["deterministic"] else "fail"
        q["check"] = "eager output repeats across rounds"
        if pretrained is not None:
            q.update(quality.functional(eager, output, eager, output))
        _finish(mmperf, eager, q, output)
        return

    # taken now: at paper scale on one GPU the eager model is freed before the optimized arm
    eager_facts = memory_facts(eager)
    health: dict[str, float] = {}
    if device == "cuda" and not arms_fit_together(facts, _device_memory_bytes()):
        arms = {"eager": eager}
        del eager  # only ``arms`` holds the eager model now, so _sequential_arms can free it
        eager_out, opt_out, optimized, ref_logits, opt_logits = _sequential_arms(
            mmperf, module, task, options, lever_objs, arms, health)
    else:
        optimized = _build(module, task, options)
        _apply(lever_objs, optimized, health)
        eager_out, opt_out = mmperf.interleaved(lambda: eager.run(mmperf), lambda: optimized.run(mmperf))
        ref_logits, opt_logits = _teacher_forced(eager, optimized, eager_out)
    for name, value in health.items():
        mmperf.record(_with_unit(name), value, gated=False)

    for name, value in eager_facts.items():
        mmperf.record(EAGER_PREFIX + name, value, gated=False)
    lossy = any(getattr(lever, "lossy", False) for lever in lever_objs) or any(
        getattr(sub, "lossy", False) for lever in lever_objs for sub in getattr(lever, "levers", ())
    )
    q = quality.verdict(
        lossy=lossy,
        levers=[name for lever in lever_objs for name in _expand(lever)],
        eager_output=eager_out,
        optimized_output=opt_out,
        optimized_rounds=tracker,
        eager_logits=ref_logits,
        optimized_logits=opt_logits,
        dtype=options.dtype,
    )
    if pretrained is not None:  # the answers' code run against HumanEval's tests, per arm
        mmperf.record(EAGER_PREFIX + "new_tokens_count", float(sum(len(a) for a in eager_out.tokens)), gated=False)
        functional = quality.functional(eager, eager_out, optimized, opt_out)
        q.update(functional)
        if functional.get("reasons"):
            q.setdefault("reasons", []).extend(functional.pop("reasons"))
            q["verdict"] = "fail"
    _finish(mmperf, optimized, q, opt_out, ref_logits=opt_logits)


# Paper scale on one GPU. Interleaved ABBA rounds need both arms alive: at paper-34b that is
# 2 x 67.5 GB of bf16 weights (Code Llama 34B, 33.7B parameters) + KV caches (192 KiB a token
# each) + activations, compile workspaces and CUDA-graph pools, beyond one 141 GB H200. Such
# arms are measured one after the other (eager measured and freed, then the optimized arm
# built and measured), with a fixed calibration kernel timed before each arm so that a device
# that changed speed between the two stretches shows (``calibration_drift_ratio``). Sharing the
# weights would keep ABBA for levers that leave them alone (sdpa, static cache, compile, CUDA
# graphs, LayerSkip) but not for int8 or the stack, and needs every builder to accept a model;
# one rule for every lever set keeps paper-34b results comparable with each other.
ARM_MEMORY_HEADROOM = 1.25  # x (weights + KV) per arm: activations, workspaces, graph pools


def arms_fit_together(facts: Any, device_bytes: int) -> bool:
    """Whether eager and optimized (each at most eager's size) fit the device at once."""
    kv = facts.kv_cache_bytes_per_token * 1024  # a generous context per sequence
    return 2 * (facts.weight_bytes + kv) * ARM_MEMORY_HEADROOM <= device_bytes


def _device_memory_bytes() -> int:
    import torch

    return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)


def calibration_ms(device: str, size: int = 4096, repeats: int = 20) -> float:
    """Median time of one fixed matmul (``size``^2, the run's dtype class): the same work before
    each sequential arm, so a clock or thermal change between the arms is seen, not folded
    into the speedup."""
    import statistics

    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.ones(size, size, device=device, dtype=dtype)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ a
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _apply(lever_objs: Sequence[Any], runner: Any, health: dict[str, float]) -> None:
    t0 = time.perf_counter()
    for lever in lever_objs:
        health.update(lever.apply(runner))
    health.setdefault("lever_setup_ms", (time.perf_counter() - t0) * 1e3)


def _sequential_arms(mmperf: Any, module: Any, task: str, options: BuildOptions, lever_objs: Sequence[Any],
                     arms: dict[str, Any], health: dict[str, float]) -> tuple[Any, Any, Any, Any, Any]:
    """Eager (``arms["eager"]``, its only reference) measured, its reference logits kept on
    the CPU, eager freed; then the optimized arm built, levers applied, measured. Returns
    (eager output, optimized output, optimized runner, eager logits, optimized logits)."""
    import gc

    import torch

    device = options.device
    before = calibration_ms(device)
    kept: dict[str, Any] = {}

    def make_optimized(eager_out: Any) -> Any:
        tokens = getattr(eager_out, "tokens", None)
        if tokens is not None or getattr(eager_out, "ranking", None) is not None:
            logits = arms["eager"].teacher_forced_logits(tokens)
            kept["ref_logits"] = logits.cpu() if logits is not None else None
        arms.pop("eager")
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        kept["calibration_after_ms"] = calibration_ms(device)
        optimized = _build(module, task, options)
        _apply(lever_objs, optimized, health)
        arms["optimized"] = optimized
        return lambda: optimized.run(mmperf)

    # looked up per call: a bound method kept here would keep the eager model alive
    eager_out, opt_out = mmperf.sequential(lambda: arms["eager"].run(mmperf), make_optimized)
    optimized = arms["optimized"]
    health["calibration_drift_ratio"] = kept["calibration_after_ms"] / before if before > 0 else 1.0
    ref_logits = kept.get("ref_logits")
    opt_logits = None
    if ref_logits is not None:
        opt_logits = optimized.teacher_forced_logits(getattr(eager_out, "tokens", None))
        opt_logits = opt_logits.cpu() if opt_logits is not None else None
    return eager_out, opt_out, optimized, ref_logits, opt_logits


def _teacher_forced(eager: Any, optimized: Any, eager_out: Any) -> tuple[Any, Any]:
    """Both models' logits on eager's output sequence (token workloads), or on the fixed
    candidate set (the recommender's ranking, whose runner ignores ``tokens``)."""
    tokens = getattr(eager_out, "tokens", None)
    if tokens is None and getattr(eager_out, "ranking", None) is None:
        return None, None
    return eager.teacher_forced_logits(tokens), optimized.teacher_forced_logits(tokens)


def _with_unit(name: str) -> str:
    """Workload facts without a unit suffix are counts (``prompt_tokens`` -> ``prompt_tokens_count``)."""
    from pytest_mmperf.results.metrics import MetricNameError, unit_of

    try:
        unit_of(name)
    except MetricNameError:
        return f"{name}_count"
    return name


def _expand(lever: Any) -> list[str]:
    """A composite lever (stack) lists its parts in the results document."""
    parts = getattr(lever, "levers", None)
    if parts:
        return [p.name for p in parts]
    return [lever.name]


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def model_weight_bytes(model: Any) -> int:
    """Bytes of a model's parameters and buffers as stored: a tensor subclass (torchao's int8
    weights) counts the tensors it is made of (int8 data, scales), tied weights count once."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def add(t: Any) -> None:
        nonlocal total
        flatten = getattr(type(t), "__tensor_flatten__", None)
        if flatten is not None:
            names, _ = t.__tensor_flatten__()
            for name in names:
                add(getattr(t, name))
            return
        nbytes = int(t.numel()) * int(t.element_size())
        key = (id(t), nbytes) if t.is_meta else (int(t.data_ptr()), nbytes)
        if key not in seen:
            seen.add(key)
            total += nbytes

    for tensor in [*model.parameters(), *model.buffers()]:
        add(tensor)
    return total


# Deterministic per-arm memory facts: gated for the benchmark's own arm (a change that grows
# them is a regression), reported for the eager arm of a lever benchmark.
MEMORY_FACTS = ("weight_bytes", "kv_cache_bytes")


def memory_facts(runner: Any) -> dict[str, float]:
    """``weight_bytes`` of the runner's model as stored, and ``kv_cache_bytes`` if it reports it."""
    facts = {"weight_bytes": float(model_weight_bytes(runner.model))}
    kv = runner.metrics().get("kv_cache_bytes")
    if kv is not None:
        facts["kv_cache_bytes"] = float(kv)
    return facts


def _finish(mmperf: Any, runner: Any, q: dict[str, Any], output: Any, ref_logits: Any = None) -> None:
    from pytest_mmperf.judge import drift

    static = {_with_unit(name): value for name, value in runner.metrics().items()}
    static.update(memory_facts(runner))
    for name, value in static.items():
        mmperf.record(name, value, gated=name in MEMORY_FACTS)
    _throughput(mmperf, static)
    q["output"] = drift.output_fingerprint(
        tokens=rectangular(getattr(output, "tokens", None)),
        logits=ref_logits,
        ranking=getattr(output, "ranking", None),
    )
    if "pass_at_1" in q:  # drift of functional correctness against the baseline
        q["output"]["pass_at_1"] = q["pass_at_1"]
        q["output"]["passed_problems"] = q["passed_problems"]
    mmperf.quality = q
    _roofline(mmperf, runner, static)
    if q["verdict"] == "fail":
        pytest.fail(f"{mmperf.node_id}: quality check failed: {'; '.join(q.get('reasons', [q.get('detail', '')]))}",
                    pytrace=False)


PAD_ID = -1  # pads answers of different lengths in the output fingerprint


def rectangular(tokens: Any) -> Any:
    """Answers of different lengths (trained model, stopped at EOS) padded to one array, so the
    fingerprint's hash and shape also change when an answer's length changes."""
    if not tokens or not isinstance(tokens, list) or len({len(t) for t in tokens}) <= 1:
        return tokens
    width = max(len(t) for t in tokens)
    return [list(t) + [PAD_ID] * (width - len(t)) for t in tokens]


def _throughput(mmperf: Any, static: dict[str, float]) -> None:
    """tokens_per_s per round: generated tokens over the round's latency. Where decode steps
    produce several tokens (LayerSkip rounds), ``tpot_ms`` per round is the decode time (latency
    after each prompt's first token) over the tokens generated after each prompt's first."""
    new_tokens = static.get("new_tokens_count")
    if not new_tokens:
        return
    if "latency_ms" not in mmperf.metrics:
        return  # the instruction clock counts instructions; there is no time to divide by
    batch = mmperf.description.batch_size
    lat = mmperf.samples("latency_ms")
    mmperf.record("tokens_per_s", [new_tokens * batch / (ms / 1e3) for ms in lat])
    metrics = mmperf.metrics
    prompts = int(static.get("prompts_count", 1))
    if "tpot_ms" not in metrics and "ttft_ms" in metrics and new_tokens > prompts:
        ttft = mmperf.samples("ttft_ms")
        if len(ttft) != prompts * len(lat):
            return
        # per round: the time after each prompt's first token over the tokens after the first
        firsts = [sum(ttft[r * prompts:(r + 1) * prompts]) for r in range(len(lat))]
        mmperf.record("tpot_ms", [(total - first) / (new_tokens - prompts) for total, first in zip(lat, firsts)])


def stored_bytes(tensor: Any) -> int:
    """Bytes a tensor really occupies: a quantized tensor subclass (torchao) counts its inner
    tensors (int8 data + scales), not numel x its nominal float dtype."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None and type(tensor).__name__ != "Parameter":
        names, _ = flatten()
        return sum(stored_bytes(getattr(tensor, name)) for name in names)
    data = getattr(tensor, "data", tensor)
    if data is not tensor and hasattr(data, "__tensor_flatten__"):
        return stored_bytes(data)
    return int(tensor.numel() * tensor.element_size())


def module_bytes(*modules: Any) -> int:
    """Stored bytes of the modules' parameters and buffers, each tensor counted once."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            if id(t) not in seen:
                seen.add(id(t))
                total += stored_bytes(t)
    return total


def roofline_inputs(runner: Any, static: dict[str, float], batch: int) -> tuple[str, float, float] | None:
    """(metric timing one step, bytes that step must move, FLOPs it does), from what the arm
    really holds (after quantization): a runner's own ``roofline_inputs`` where it has one
    (HSTU), else one decode step (``tpot_ms``: decoder weights + KV cache, one token per row),
    else one call (all weights + KV cache, every generated token)."""
    own = getattr(runner, "roofline_inputs", None)
    if callable(own):
        result: tuple[str, float, float] | None = own()
        return result
    facts = runner.facts
    kv = static.get("kv_cache_bytes", 0.0)
    stack = getattr(runner, "stack", None)
    if stack is not None and hasattr(stack, "layers"):
        # a decode step reads every decoder layer, the final norm and the LM head; the
        # embedding table is a lookup (one row per token)
        weights = module_bytes(stack.layers, stack.norm, stack.lm_head)
        return "tpot_ms", float(weights + kv), facts.flops_per_token * batch
    tokens = static.get("new_tokens_count", 1.0) * batch
    return "latency_ms", float(module_bytes(runner.model) + kv), facts.flops_per_token * tokens


def _roofline(mmperf: Any, runner: Any, static: dict[str, float]) -> None:
    """Bytes each step of this arm moves against its measured step time, and the memory- or
    compute-bound verdict from the session's bandwidth and peak FLOP/s."""
    if mmperf.context is None:
        return
    inputs = roofline_inputs(runner, static, mmperf.description.batch_size)
    if inputs is None or inputs[0] not in mmperf.metrics:
        return
    from pytest_mmperf.measure.roofline import roofline

    metric, bytes_per_step, flops = inputs
    peak = mmperf.context.peak_tflops() if hasattr(mmperf.context, "peak_tflops") else None
    mmperf.roofline = {
        **roofline(bytes_per_step, flops, mmperf.metrics[metric].median, mmperf.context.bandwidth_gbps(), peak),
        "step_metric": metric,
    }


def quality_only(workload: str, task: str, levers: Sequence[Any], scale: str = "tiny",
                 device: str = "cpu") -> dict[str, Any]:
    """The quality verdict without timing, for tests and scripts; ``levers`` are names or
    lever objects."""
    module = importlib.import_module(WORKLOAD_MODULES[workload])
    from mmperf_levers import registry

    objs = [registry.by_name(n) if isinstance(n, str) else n for n in levers]
    base = base_options(workload, scale, device)
    options = base
    for lever in objs:
        options = lever.configure(options)
    eager = module.build(task, base)
    opt = module.build(task, options)
    for lever in objs:
        lever.apply(opt)
    phases = NullPhases()
    e_out = eager.run(phases)
    outs = [opt.run(phases) for _ in range(3)]
    ref_logits, opt_logits = _teacher_forced(eager, opt, e_out)
    return quality.verdict(
        lossy=any(getattr(o, "lossy", False) for o in objs),
        levers=[o.name for o in objs],
        eager_output=e_out,
        optimized_output=outs[-1],
        optimized_rounds=outs,
        eager_logits=ref_logits,
        optimized_logits=opt_logits,
        dtype=options.dtype,
    )

