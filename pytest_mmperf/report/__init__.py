"""Views of the performance history: the data a view shows (:mod:`~pytest_mmperf.report.model`),
its plots (:mod:`~pytest_mmperf.report.figures`), the self-contained HTML page
(:mod:`~pytest_mmperf.report.html`), the terminal table (:mod:`~pytest_mmperf.report.terminal`)
and the export to other tools' formats (:mod:`~pytest_mmperf.report.export`)."""
