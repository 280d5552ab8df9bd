"""The pytest layer: registers options and the fixture, wires hooks to :mod:`pytest_mmperf.session`.

Thin on purpose: logic lives in plain modules testable without pytest (docs/design.md). Importing
this module imports neither torch nor transformers; they load only when ``--mmperf`` is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_mmperf.settings import OPTIONS, Settings, UsageError, resolve

if TYPE_CHECKING:  # the run's modules load only with --mmperf
    from pytest_mmperf.benchmark_compat import BenchmarkPlugin
    from pytest_mmperf.fixture import Mmperf
    from pytest_mmperf.results.records import BenchmarkRecord
    from pytest_mmperf.session import BenchmarkPlan, RunSession

MARKER = "mmperf"
FIXTURE = "mmperf"
RECORD_PROPERTY = "mmperf_record"
VERDICT_PROPERTY = "mmperf_verdict"

SETTINGS_KEY = pytest.StashKey[Settings]()
SESSION_KEY: pytest.StashKey[RunSession] = pytest.StashKey()  # when --mmperf
PLAN_KEY: pytest.StashKey[BenchmarkPlan] = pytest.StashKey()  # one item's settings, from collection
BENCH_KEY: pytest.StashKey[Mmperf] = pytest.StashKey()  # the fixture object of one item
RECORD_KEY: pytest.StashKey[BenchmarkRecord] = pytest.StashKey()  # what one item measured
FACTORY_KEY: pytest.StashKey[Callable[[], Mmperf]] = pytest.StashKey()  # a fresh fixture (--mmperf-confirm)
COMPAT_KEY: pytest.StashKey[BenchmarkPlugin] = pytest.StashKey()  # with --mmperf when pytest-benchmark is there


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mmperf", "pytest-mmperf: multimodal generation inference benchmarks")
    for spec in OPTIONS:
        text = spec.help.replace("%", "%%")  # argparse formats help strings
        if spec.is_flag:
            group.addoption(spec.flag, action="store_true", default=None, dest=f"mmperf_{spec.dest}", help=text)
        else:
            group.addoption(spec.flag, action="store", default=None, dest=f"mmperf_{spec.dest}",
                            metavar=spec.metavar, help=text)
        if spec.dest != "enabled":
            parser.addini(spec.ini, help=f"default for {spec.flag}", default=None)


def _settings(config: pytest.Config) -> Settings:
    cli = {spec.dest: config.getoption(f"mmperf_{spec.dest}") for spec in OPTIONS}
    ini: dict[str, Any] = {}
    for spec in OPTIONS:
        if spec.dest == "enabled":
            continue
        value = config.getini(spec.ini)
        ini[spec.ini] = value if value not in ([], "") else None
    return resolve(cli, ini)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mmperf(workload=None, task=None, optimizations=(), batch_size=1, rounds=..., threshold=..., ...): "
        "a pytest-mmperf benchmark; keywords describe it and override settings for it",
    )
    try:
        settings = _settings(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SETTINGS_KEY] = settings
    if not settings.enabled:
        return
    if settings.clock == "instructions":
        _run_under_callgrind(config)
    from pytest_mmperf.gpu_pinning import pin
    from pytest_mmperf.session import RunSession

    session = RunSession(settings, Path(str(config.rootpath)))
    try:
        # one GPU per xdist worker: CUDA_VISIBLE_DEVICES must be set before start() touches CUDA
        pin(settings.device, getattr(config, "workerinput", None), getattr(config.option, "numprocesses", None))
        session.start()
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(_ReportCollector(session, config), "mmperf-report-collector")
    from pytest_mmperf import benchmark_compat

    compat = benchmark_compat.install(config, _attach, MARKER, FIXTURE)
    if compat is not None:
        config.stash[COMPAT_KEY] = compat


def pytest_sessionstart(session: pytest.Session) -> None:
    # here and not after collection: a pytest-xdist controller never collects, yet shows the summary
    run = session.config.stash.get(SESSION_KEY, None)
    if run is not None:
        try:
            run.open_gate()
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None


def _run_under_callgrind(config: pytest.Config) -> None:
    """--mmperf-clock=instructions: re-run this same pytest command under valgrind's callgrind
    (the user types one command); in the re-run process, do nothing."""
    from pytest_mmperf.measure.clocks import instructions

    if instructions.under_callgrind():
        if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
            instructions.stop_children_on_termination()  # the traced workers end with the controller
        return
    if hasattr(config, "workerinput"):
        raise pytest.UsageError("--mmperf-clock=instructions: this xdist worker was not started under callgrind")
    try:
        instructions.exec_under_callgrind(
            config.invocation_params.args, config.invocation_params.dir,
            Path(str(config.rootpath)) / ".mmperf" / "callgrind",
            # -n: the workers are traced too; each counts its own benchmarks
            children=bool(getattr(config.option, "numprocesses", None)),
        )
    except (instructions.InstructionClockError, OSError) as exc:
        raise pytest.UsageError(str(exc)) from None


def _is_benchmark(item: pytest.Item) -> bool:
    if item.get_closest_marker(MARKER) is not None or FIXTURE in getattr(item, "fixturenames", ()):
        return True
    # pytest-benchmark's fixture is ours only under --mmperf
    return COMPAT_KEY in item.config.stash and "benchmark" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    settings = config.stash[SETTINGS_KEY]
    benches = [item for item in items if _is_benchmark(item)]
    for item in benches:
        if item.get_closest_marker(MARKER) is None:
            item.add_marker(MARKER)
    if not settings.enabled:
        skip = pytest.mark.skip(reason="pytest-mmperf benchmark: run with --mmperf")
        for item in benches:
            item.add_marker(skip)
        return
    if settings.shard is not None:
        from pytest_mmperf.sharding import select

        keep = set(select([item.nodeid for item in benches], *settings.shard))
        deselected = [item for item in benches if item.nodeid not in keep]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if item not in deselected]
            benches = [item for item in benches if item.nodeid in keep]
    from pytest_mmperf.sharding import ONLY_IDS_ENV, only_ids

    only = os.environ.get(ONLY_IDS_ENV)
    if only:
        # mmperf ab and bisect profile the benchmarks that failed, and only those
        try:
            keep = only_ids(only)
        except OSError as exc:
            raise pytest.UsageError(f"{ONLY_IDS_ENV}={only}: {exc.strerror or exc}") from None
        deselected = [item for item in benches if item.nodeid not in keep]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if item not in deselected]
            benches = [item for item in benches if item.nodeid in keep]
    run = config.stash.get(SESSION_KEY, None)
    if run is not None:
        for item in benches:
            marker = item.get_closest_marker(MARKER)
            item.stash[PLAN_KEY] = run.plan(dict(marker.kwargs) if marker else {})


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """After every plugin's deselection (-k, -m, shards): the benchmarks this process will run are
    the Bonferroni family's (on an xdist controller, which collects nothing, the hook below)."""
    run = session.config.stash.get(SESSION_KEY, None)
    if run is not None:
        run.expect(item.nodeid for item in session.items if _is_benchmark(item))


class _Worker(Protocol):  # what this plugin reads of pytest-xdist's WorkerController (xdist is optional)
    config: pytest.Config


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: _Worker, ids: list[str]) -> None:
    """On the xdist controller: what a worker collected (after deselection) is what will be judged."""
    run = node.config.stash.get(SESSION_KEY, None)
    if run is not None:
        run.expect(ids)


@pytest.fixture
def mmperf(request: pytest.FixtureRequest) -> Generator[Mmperf, None, None]:
    """Measure a callable: ``result = mmperf(fn, *args)``; see docs/usage.md for phases, checks
    and ``mmperf.interleaved(eager, optimized)``."""
    if request.config.stash.get(SESSION_KEY, None) is None:
        pytest.skip("pytest-mmperf benchmark: run with --mmperf")
    compat = request.config.stash.get(COMPAT_KEY, None)
    yield _attach(request, None, bool(compat and compat.options.disable))


def _attach(request: pytest.FixtureRequest, kwargs: Mapping[str, Any] | None, disabled: bool) -> Mmperf:
    """A fixture.Mmperf for this test, stashed on its item so the hooks below find its record;
    ``kwargs``: marker keywords to plan it with (None: the plan made at collection)."""
    from pytest_mmperf.fixture import Mmperf
    from pytest_mmperf.measure.clocks import make_clock
    from pytest_mmperf.measure.contention import ContentionMonitor
    from pytest_mmperf.measure.memory import make_accountant, make_probes, make_resident

    run = request.config.stash[SESSION_KEY]
    # the mmperf fixture's plan comes from collection; pytest-benchmark's marker is translated
    plan = request.node.stash.get(PLAN_KEY, None) if kwargs is None else run.plan(kwargs)
    if plan is None:  # the fixture was requested dynamically (getfixturevalue): not planned at collection
        marker = request.node.get_closest_marker(MARKER)
        plan = run.plan(dict(marker.kwargs) if marker else {})
    if plan.error is not None:
        pytest.fail(plan.error, pytrace=False)
    settings, describe = plan.settings, plan.describe

    def make() -> Mmperf:
        return Mmperf(
            request.node.nodeid,
            settings,
            context=run,
            clock_factory=lambda: make_clock(run.device, settings.clock),
            probe_factory=lambda: make_probes(run.device),
            accountant_factory=lambda: make_accountant(run.device),
            monitor_factory=lambda: ContentionMonitor(run.device),
            resident_factory=lambda: make_resident(run.device),
            device=run.device,
            describe=describe,
            disabled=disabled,
        )

    bench = make()
    request.node.stash[BENCH_KEY] = bench
    request.node.stash[FACTORY_KEY] = make  # a fresh one for --mmperf-confirm reruns
    return bench


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        result = yield
    finally:
        # the record is kept even when the test body failed (e.g. a quality verdict), so the
        # results document shows what was measured
        bench = item.stash.get(BENCH_KEY, None)
        run = item.config.stash.get(SESSION_KEY, None)
        if bench is not None and run is not None and run.settings.save_baseline and \
                bench.settings.diagnose == "auto":
            from pytest_mmperf.judge.diagnosis import operators_of

            if operators_of(bench.profile) is None:  # (the instruction clock's functions may be there)
                bench.profile_operators()  # the baseline keeps what a later diagnosis compares with
        record = bench.to_record() if bench is not None else None
        if record is not None and run is not None:
            record = run.observe(record)
        if record is not None:
            item.stash[RECORD_KEY] = record
    if record is None or run is None:
        return result
    judged = run.compare(record, rerun=_rerun(item), settings=bench.settings if bench is not None else None,
                         profile=bench.profile_operators if bench is not None else None)
    if judged is not None:
        verdict, pooled = judged
        item.stash[RECORD_KEY] = pooled  # adaptive extra rounds, when measured, are kept
        item.user_properties.append((VERDICT_PROPERTY, json.dumps(verdict.__dict__, default=str)))
        if verdict.failed:
            pytest.fail(verdict.message, pytrace=False)
    return result


def _rerun(item: pytest.Item) -> Callable[[], BenchmarkRecord] | None:
    """For adaptive rounds and --mmperf-confirm: run the test body again with a fresh fixture;
    returns its record (the gate decides when)."""
    make = item.stash.get(FACTORY_KEY, None)
    funcargs = getattr(item, "funcargs", None)
    if make is None or funcargs is None or funcargs.get(FIXTURE) is None:
        return None

    def again() -> BenchmarkRecord:
        fresh = make()
        funcargs[FIXTURE] = fresh
        item.runtest()
        record = fresh.to_record()
        if record is None:
            raise RuntimeError(f"{item.nodeid}: the rerun measured nothing")
        return record

    return again


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call":
        record = item.stash.get(RECORD_KEY, None)
        if record is not None:
            # on the report, so that results survive pytest-xdist's worker -> controller hop
            report.user_properties.append((RECORD_PROPERTY, json.dumps(record.to_json())))
    return report


class _ReportCollector:
    """Collects benchmark records and verdicts from reports: on the xdist controller these
    arrive from the workers; in a single process from this process's own tests. Prints the
    live progress line of each (not on an xdist worker: the controller does)."""

    def __init__(self, run: RunSession, config: pytest.Config) -> None:
        import time

        from pytest_mmperf.report.progress import Progress

        self.run = run
        self.config = config
        self.progress = Progress(started_s=time.monotonic())
        self.pending: set[str] = set()  # benchmarks selected to run, for the ETA

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # after -k/-m deselection; tests skipped by a marker will not run
        self.pending = {item.nodeid for item in session.items
                        if _is_benchmark(item) and item.get_closest_marker("skip") is None}
        self.progress.total = len(self.pending) or None

    @pytest.hookimpl(trylast=True)  # after the terminal reporter wrote this test's status
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        measured = any(key == RECORD_PROPERTY for key, _ in report.user_properties)
        if report.nodeid in self.pending and (report.skipped or (report.failed and not measured)):
            # skipped while running (a lever this device lacks) or broken: it will not finish
            self.pending.discard(report.nodeid)
            if self.progress.total:
                self.progress.total -= 1
        if report.when != "call":
            return
        from pytest_mmperf.judge.verdict import Verdict
        from pytest_mmperf.results.records import BenchmarkRecord

        record = verdict = None
        for key, value in report.user_properties:
            if key == RECORD_PROPERTY:
                record = BenchmarkRecord.from_json(json.loads(str(value)))
                self.run.add(record)
            elif key == VERDICT_PROPERTY:
                verdict = Verdict(**json.loads(str(value)))
                self.run.verdicts.append(verdict)
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if record is None or tr is None or hasattr(self.config, "workerinput"):
            return
        import time

        tr.ensure_newline()
        if getattr(getattr(tr, "_tw", None), "width_of_current_line", 0):
            tr.write("\n")  # under -q the status characters have no file-name line to end
        tr.write_line(self.progress.line(record, verdict.details if verdict else None, time.monotonic()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    run = config.stash.get(SESSION_KEY, None)
    if run is None:
        return
    from pytest_mmperf.measure.lockstep import close_all

    close_all()  # an `mmperf ab` worker: its last turn is over
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller writes the outputs
    from pytest_mmperf.session import OutputError

    try:
        run.messages.extend(run.finish())
        compat = config.stash.get(COMPAT_KEY, None)
        if compat is not None:
            from pytest_mmperf.benchmark_compat import write_outputs

            run.messages.extend(write_outputs(compat, run.document()))
    except (OutputError, OSError, ValueError) as exc:
        run.messages.append(f"ERROR {exc}")
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    run = config.stash.get(SESSION_KEY, None)
    if run is None or hasattr(config, "workerinput"):
        return
    from pytest_mmperf.report.summary import table

    tr = terminalreporter
    if run.records:
        tr.write_sep("-", "pytest-mmperf")
        for line in table(run.records, run.environment.get("fingerprint", ""), run.settings.confidence):
            tr.write_line(line)
        # records characterized by --mmperf-profile (a diagnosis-only profile has no op_share)
        characterized = [r for r in run.records if r.profile and "op_share" in r.profile]
        if characterized:
            from pytest_mmperf.report.paper_tables import phase_table

            tr.write_sep("-", "pytest-mmperf characterization (--mmperf-profile)")
            for line in phase_table(run.document(), characterized).splitlines():
                tr.write_line(line)
    if run.gate is not None:
        from pytest_mmperf.report.comparison import comparison_lines

        for line in comparison_lines(run.gate, run.verdicts):
            tr.write_line(line)
    for line in run.messages:
        tr.write_line(f"mmperf: {line}")
