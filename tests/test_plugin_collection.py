"""Each benchmark's settings are resolved once, at collection, and kept in the item's stash."""

import textwrap

pytest_plugins = ["pytester"]

FAST = ["--mmperf", "--mmperf-rounds=5", "--mmperf-max-time=0.1", "--mmperf-history=off"]

CONFTEST = textwrap.dedent(
    """
    import pytest

    from pytest_mmperf.plugin import PLAN_KEY

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(items):
        for item in items:
            plan = item.stash.get(PLAN_KEY, None)
            if plan is not None:
                print(f"PLAN {item.name} rounds={plan.settings.rounds} workload={plan.describe.get('workload')} "
                      f"error={plan.error}")
    """
)

BENCH = textwrap.dedent(
    """
    import pytest

    @pytest.mark.mmperf(workload="llm", rounds=6)
    def test_marked(mmperf):
        mmperf(sum, range(100))
        assert len(mmperf.samples("latency_ms")) >= 6

    @pytest.mark.mmperf(rounds="many")
    def test_bad_keyword(mmperf):
        mmperf(sum, range(100))

    def test_default(mmperf):
        mmperf(sum, range(100))

    def test_plain():
        pass
    """
)


def test_marker_settings_are_planned_at_collection(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*FAST, "-s")
    result.stdout.fnmatch_lines([
        "PLAN test_marked rounds=6 workload=llm error=None",
        "PLAN test_bad_keyword rounds=5 workload=None error=marker keyword rounds=: 'many' is not allowed*",
        "PLAN test_default rounds=5 workload=None error=None",
    ])
    assert "PLAN test_plain" not in result.stdout.str()  # not a benchmark


def test_a_bad_marker_keyword_fails_that_test_only_in_one_line(pytester):
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*FAST)
    result.assert_outcomes(passed=3, errors=1)  # fails in the fixture's set-up, before measuring
    failed = [line for line in result.outlines if line.startswith(("FAILED", "ERROR"))]
    assert len(failed) == 1 and "test_bad_keyword" in failed[0] and "marker keyword rounds=" in failed[0]
    assert "Traceback" not in result.stdout.str()
