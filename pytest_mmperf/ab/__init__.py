"""``mmperf ab``: base and head measured in process pairs that take turns, judged by one paired rule.

* :mod:`.worktrees`: each ref checked out as a detached git worktree (always removed again) whose own
  code the worker imports;
* :mod:`.coordinator`: a process pair, a base and a head ``pytest --mmperf`` alive at once that take
  turns round by round (ABBA) over :mod:`pytest_mmperf.measure.lockstep`, so they never compute at
  the same time and whatever the machine does falls on both alike;
* :mod:`.paired`: the test. The process pair is the replication unit: per pair the log ratio of
  head's and base's rounds, a t test with each benchmark's process-pair variance moderated towards
  the run's (empirical Bayes), Holm over the varying metrics, Bonferroni over the looks; regressed
  (significant AND beyond the threshold), unchanged (the interval within the threshold both ways)
  or inconclusive (see its docstring); what is gated is the judge's definition (``compare.gates``);
* :mod:`.run`: the orchestration, adding pairs while a gated metric is undecided (``--max-repeats``,
  ``--time-budget``); :mod:`.result` what it found; :mod:`.summary` the output.
"""

from pytest_mmperf.ab.options import SIDES, ABError, ABOptions, pytest_command, split_args
from pytest_mmperf.ab.result import ABResult
from pytest_mmperf.ab.run import measure, run_ab
from pytest_mmperf.ab.summary import MARKER, markdown, terminal_lines

__all__ = ["MARKER", "SIDES", "ABError", "ABOptions", "ABResult", "markdown", "measure", "pytest_command",
           "run_ab", "split_args", "terminal_lines"]
