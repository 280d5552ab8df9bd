"""pytest-benchmark suites under ``--mmperf``, unchanged: its ``benchmark`` fixture measured by us.

With ``--mmperf`` the plugin blocks pytest-benchmark's own plugin (as pytest-codspeed does) and
registers :class:`BenchmarkPlugin`, whose ``benchmark`` fixture hands every call to a
:class:`pytest_mmperf.fixture.Mmperf`: the same clock (CUDA-synchronized on a GPU), memory
probes, rounds, environment, results document, baseline gate and history as any mmperf
benchmark. Without ``--mmperf`` nothing here is registered and pytest-benchmark runs as if this
plugin were not installed.

pytest-benchmark's own switches keep their meaning, for both kinds of benchmark:
``--benchmark-skip`` skips them, ``--benchmark-only`` runs only them, ``--benchmark-disable`` runs
each benchmarked call once without measuring (``--benchmark-enable`` overrides it);
``--benchmark-json``, ``--benchmark-save`` and ``--benchmark-autosave`` write our results in
pytest-benchmark's format and storage.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

FIXTURE = "benchmark"
MARKER = "benchmark"
PYTEST_BENCHMARK = "benchmark"  # pytest-benchmark's plugin name (its pytest11 entry point)

# @pytest.mark.benchmark(...) keyword -> mmperf marker keyword; the rest are pytest-benchmark
# choices this plugin makes itself (the clock: CUDA-aware; gc: off in timed calls; precision:
# the rounds and the confidence interval)
_MARKER_KEYWORDS = {"min_rounds": "rounds", "max_time": "max_time"}
IGNORED_MARKER_KEYWORDS = frozenset({"min_time", "precision", "confidence", "timer", "disable_gc",
                                     "calibration_precision", "cprofile"})


@dataclass(frozen=True)
class BenchmarkOptions:
    """pytest-benchmark's command-line choices that this plugin honours under ``--mmperf``."""

    skip: bool = False
    only: bool = False
    disable: bool = False
    json_path: str | None = None
    save: str | None = None  # --benchmark-save NAME or --benchmark-autosave's tag
    storage: str = "file://./.benchmarks"

    @classmethod
    def from_config(cls, config: pytest.Config) -> BenchmarkOptions:
        def opt(name: str, default: Any = None) -> Any:
            return config.getoption(name, default)

        json_path = opt("benchmark_json")
        return cls(
            skip=bool(opt("benchmark_skip", False)) and not opt("benchmark_only", False),
            only=bool(opt("benchmark_only", False)),
            disable=bool(opt("benchmark_disable", False)) and not opt("benchmark_enable", False),
            json_path=str(json_path) if json_path else None,
            save=opt("benchmark_save") or opt("benchmark_autosave"),
            storage=str(opt("benchmark_storage", None) or "file://./.benchmarks"),
        )


def marker_keywords(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``@pytest.mark.benchmark(...)`` keywords as mmperf marker keywords (a ValueError names a
    keyword pytest-benchmark itself does not accept)."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _MARKER_KEYWORDS:
            out[_MARKER_KEYWORDS[key]] = value
        elif key == "warmup":
            if not value:
                out["warmup"] = 0
        elif key == "warmup_iterations":
            if kwargs.get("warmup", True):
                out["warmup"] = value
        elif key == "group":
            out["group"] = value
        elif key not in IGNORED_MARKER_KEYWORDS:
            raise ValueError(f"benchmark mark can't have {key!r} keyword argument")
    return out


def is_benchmark(item: pytest.Item, mmperf_marker: str, mmperf_fixture: str) -> bool:
    names = getattr(item, "fixturenames", ())
    return FIXTURE in names or mmperf_fixture in names or item.get_closest_marker(mmperf_marker) is not None


class BenchmarkFixture:
    """What a pytest-benchmark test gets as ``benchmark``: the same calls, measured by Mmperf."""

    def __init__(self, bench: Any, *, name: str, fullname: str, group: str | None,
                 param: str | None, params: Mapping[str, Any] | None) -> None:
        self._bench = bench
        self.name = name
        self.fullname = fullname
        self.param = param
        self.params = dict(params) if params is not None else None
        self.extra_info: dict[str, Any] = {}
        self.disabled = bool(bench.disabled)
        self.has_error = False
        # the record reads params when it is built, after the test body: extra_info and group
        # set after the call still arrive
        bench.description.params["extra_info"] = self.extra_info
        if self.params is not None:
            bench.description.params["pytest_params"] = {k: repr(v) for k, v in self.params.items()}
        self.group = group

    @property
    def group(self) -> str | None:
        return self._group

    @group.setter
    def group(self, value: str | None) -> None:
        self._group = value
        if value is None:
            self._bench.description.params.pop("group", None)
        else:
            self._bench.description.params["group"] = str(value)

    @property
    def enabled(self) -> bool:
        return not self.disabled

    @property
    def mmperf(self) -> Any:
        """The underlying ``mmperf`` object: phases, checks and metrics of this benchmark."""
        return self._bench

    def __call__(self, function_to_benchmark: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = self._bench(function_to_benchmark, *args, **kwargs)
        # pytest-benchmark's own statistic beside ours (latency_ms: 5 ms rounds, block means)
        self._bench.measure_short_rounds(function_to_benchmark, *args, **kwargs)
        return result

    def pedantic(
        self,
        target: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        setup: Callable[[], Any] | None = None,
        teardown: Callable[..., Any] | None = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
    ) -> Any:
        self._bench.description.params["iterations"] = iterations
        return self._bench.pedantic(target, args, kwargs, setup=setup, teardown=teardown, rounds=rounds,
                                    warmup_rounds=warmup_rounds, iterations=iterations)

    def weave(self, target: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "benchmark.weave is not measured by pytest-mmperf; run this test without --mmperf"
        )

    @property
    def stats(self) -> Any:
        """pytest-benchmark's statistics of the measured call times (seconds), or None."""
        if not self._bench.measured or self.disabled:
            return None
        from pytest_benchmark.stats import Metadata

        meta = Metadata(self, iterations=int(self._bench.description.params.get("iterations", 1)), options={})
        for value in self._bench.samples("latency_ms"):
            meta.stats.update(value / 1e3)
        return meta

    cprofile_stats = None


class BenchmarkPlugin:
    """Registered under ``--mmperf`` in place of pytest-benchmark's plugin."""

    def __init__(
        self,
        options: BenchmarkOptions,
        attach: Callable[[pytest.FixtureRequest, Mapping[str, Any], bool], Any],
        mmperf_marker: str,
        mmperf_fixture: str,
    ) -> None:
        self.options = options
        self._attach = attach
        self._mmperf_marker = mmperf_marker
        self._mmperf_fixture = mmperf_fixture

    @pytest.fixture
    def benchmark(self, request: pytest.FixtureRequest) -> Generator[BenchmarkFixture, None, None]:
        """pytest-benchmark's ``benchmark``, measured by pytest-mmperf (``--mmperf``)."""
        if self.options.skip:
            pytest.skip("Benchmarks are skipped (--benchmark-skip was used).")
        marker = request.node.get_closest_marker(MARKER)
        try:
            keywords = marker_keywords(dict(marker.kwargs) if marker else {})
        except ValueError as exc:
            pytest.fail(f"{request.node.nodeid}: {exc}", pytrace=False)
        group = keywords.pop("group", None)
        bench = self._attach(request, keywords, self.options.disable)
        callspec = getattr(request.node, "callspec", None)
        yield BenchmarkFixture(
            bench,
            name=request.node.name,
            fullname=request.node.nodeid,
            group=group,
            param=callspec.id if callspec is not None else None,
            params=callspec.params if callspec is not None else None,
        )

    @pytest.fixture
    def benchmark_weave(self, benchmark: BenchmarkFixture) -> Callable[..., None]:
        return benchmark.weave

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        skip_bench = pytest.mark.skip(reason="Skipping benchmark (--benchmark-skip active).")
        skip_other = pytest.mark.skip(reason="Skipping non-benchmark (--benchmark-only active).")
        for item in items:
            if is_benchmark(item, self._mmperf_marker, self._mmperf_fixture):
                if self.options.skip:
                    item.add_marker(skip_bench)
            elif self.options.only:
                item.add_marker(skip_other)


def install(config: pytest.Config, attach: Callable[[pytest.FixtureRequest, Mapping[str, Any], bool], Any],
            mmperf_marker: str, mmperf_fixture: str) -> BenchmarkPlugin | None:
    """Take over pytest-benchmark's ``benchmark`` fixture; None when pytest-benchmark is not loaded."""
    pm = config.pluginmanager
    if not pm.has_plugin(PYTEST_BENCHMARK):
        return None
    pm.set_blocked(PYTEST_BENCHMARK)  # unregisters it: its fixture, hooks and session are gone
    config.addinivalue_line("markers", "benchmark: mark a test with custom benchmark settings.")
    plugin = BenchmarkPlugin(BenchmarkOptions.from_config(config), attach, mmperf_marker, mmperf_fixture)
    pm.register(plugin, "mmperf-benchmark-compat")
    return plugin


def write_outputs(plugin: BenchmarkPlugin, doc: Any) -> list[str]:
    """``--benchmark-json`` / ``--benchmark-save`` / ``--benchmark-autosave`` under ``--mmperf``:
    our run in pytest-benchmark's format and storage; returns one-line notes."""
    opts = plugin.options
    if not (opts.json_path or opts.save) or not doc.benchmarks:
        return []
    from pytest_mmperf.report import benchmark_json
    from pytest_mmperf.results import atomic

    output = benchmark_json.to_pytest_benchmark(doc, benchmark_json.local_machine_info())
    notes = []
    if opts.json_path:
        import json

        atomic.write_text(opts.json_path, json.dumps(output, indent=4))
        notes.append(f"pytest-benchmark JSON: {opts.json_path}")
    if opts.save:
        path = benchmark_json.save_to_storage(output, opts.storage, opts.save)
        notes.append(f"pytest-benchmark storage: {path} (pytest-benchmark compare reads it)")
    return notes
