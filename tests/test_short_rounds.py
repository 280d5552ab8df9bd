"""The second statistic of a pytest-benchmark test: per-call times in rounds as short as
pytest-benchmark's (fake clock, no sleeping)."""

from pytest_mmperf.measure.clocks.host import HostClock


def test_short_rounds_are_as_short_as_pytest_benchmarks():
    from pytest_mmperf.measure.sampler import short_rounds

    class Ticks:
        now = 0

        def __call__(self) -> int:
            return self.now

    t = Ticks()

    def call_of(ns):
        def call():
            t.now += ns
        return call

    fast, iterations = short_rounds(HostClock(t), call_of(1_000), rounds=7, max_time_s=0.0)
    assert iterations == 5 and fast == [0.001] * 7  # 1 us calls: 5 a round (pytest-benchmark's 5 us)
    slow, iterations = short_rounds(HostClock(t), call_of(2_000_000), rounds=3, max_rounds=10, max_time_s=0.01)
    assert iterations == 1 and slow == [2.0] * 5  # 2 ms calls: single calls, until 10 ms have passed
