"""Under pytest-xdist the controller shows the same comparison as a serial run.

Workers collect and judge; the controller never collects, so it opens the gate itself at session
start and shows the verdicts that ride on the workers' reports.
"""

import re
import textwrap

pytest_plugins = ["pytester"]  # and pytest-xdist, from the test extra

BENCH = textwrap.dedent(
    """
    import pytest

    def work(n):
        return sum(i * i for i in range(n))

    @pytest.mark.parametrize("n", [2000, 3000, 4000])
    def test_work(mmperf, n):
        assert mmperf(work, n) > 0

    @pytest.mark.mmperf(workload="llm", task="t2t")
    def test_interleaved(mmperf):
        mmperf.interleaved(lambda: work(3000), lambda: work(1500))
    """
)
IDS = ["test_work[2000]", "test_work[3000]", "test_work[4000]", "test_interleaved"]
# absolute timings shown, not gated: only the presence of every verdict is asserted, and an
# unchanged rerun on a shared machine can move beyond any threshold
FAST = ["--mmperf", "--mmperf-rounds=5", "--mmperf-max-time=0.1", "--mmperf-history=off",
        "--mmperf-absolute=report", "-p", "no:randomly"]
CATEGORY = "(improved|unchanged|regressed|inconclusive)"


def _summary(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if "pytest-mmperf comparison:" in line)
    return lines[start:]


def test_controller_summary_and_markdown_list_every_verdict(pytester):
    pytester.makepyfile(test_bench=BENCH)
    saved = pytester.runpytest_subprocess(*FAST, "--mmperf-save-baseline")
    saved.assert_outcomes(passed=4)

    serial = pytester.runpytest_subprocess(*FAST, "--mmperf-compare", "--mmperf-markdown=serial.md")
    serial.assert_outcomes(passed=4)
    parallel = pytester.runpytest_subprocess(*FAST, "-n", "2", "--mmperf-compare",
                                             "--mmperf-markdown=parallel.md")
    parallel.assert_outcomes(passed=4)
    assert parallel.ret == 0

    for result in (serial, parallel):
        summary = _summary(result.outlines)
        assert "pytest-mmperf comparison: 4 benchmark(s)" in summary[0]
        for bid in IDS:
            row = re.compile(rf"^\s+\S*{re.escape(bid)}\s+{CATEGORY}\b")
            assert any(row.search(line) for line in summary), (bid, summary)
    # the same baseline and decision rule (Bonferroni family = the collected benchmarks' metrics)
    rule = [next(line for line in _summary(r.outlines) if "regression = " in line)
            for r in (serial, parallel)]
    assert rule[0] == rule[1]

    for name in ("serial.md", "parallel.md"):
        md = (pytester.path / name).read_text()
        assert "### Comparison with the baseline" in md
        for bid in IDS:
            escaped = bid.replace("_", "\\_").replace("[", "\\[").replace("]", "\\]")
            assert re.search(rf"^\| \S*{re.escape(escaped)} \| \S+ {CATEGORY} \|", md, re.M), (bid, md)
