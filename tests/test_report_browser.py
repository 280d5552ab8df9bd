"""The HTML report in a real headless browser: Debian's Chromium driven by Playwright.

Checks what only a browser can: the inlined plotly.js runs without console errors, every
figure renders (plotly's ``.main-svg``), and the page makes no network request at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from history_data import history_docs

from pytest_mmperf.history import open_store
from pytest_mmperf.report import html, model

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is missing (apt-get install chromium; scripts/install_system_deps.sh does it)",
)


def test_report_renders_offline_without_errors(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with open_store("sqlite:///h.db", tmp_path) as store:
        for doc in history_docs(8, step_at=5):
            store.record_run(doc)
        view = model.collect(store)
    baseline = history_docs(1)[0]
    page_html = html.render(view, baseline)
    n_figures = page_html.count('class="figure"')
    assert n_figures >= 5
    report = tmp_path / "report.html"
    report.write_text(page_html, encoding="utf-8")

    errors: list[str] = []
    failed: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function(
                f"document.querySelectorAll('.figure .main-svg').length >= {n_figures}", timeout=30_000
            )
            plotted = page.evaluate("document.querySelectorAll('.figure.js-plotly-plot').length")
            svgs_per_figure = page.evaluate(
                "Array.from(document.querySelectorAll('.figure')).map(d => d.querySelectorAll('.main-svg').length)"
            )
            bars = page.evaluate("document.querySelectorAll('.figure .bars .point').length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()

    assert errors == []
    assert failed == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in requests), requests
    assert plotted == n_figures
    assert all(n >= 1 for n in svgs_per_figure), svgs_per_figure
    assert bars > 0  # the speedup, baseline, phase and operator-class bars were drawn
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _planted_regression(tmp_path: Path) -> tuple[str, str]:
    """A history whose newest run has one benchmark holding twice the memory; the report with its
    baseline (a report has no history of the baseline's host, so it judges what travels: bytes)."""
    from dataclasses import replace

    from history_data import make_doc

    from pytest_mmperf.results.records import MetricRecord

    slow = "suites/test_llm.py::test_llm[sdpa]"
    docs = history_docs(5)
    newest = docs[-1]
    benches = []
    for b in newest.benchmarks:
        if b.id == slow:
            peak = b.metrics["peak_memory_bytes"]
            hungrier = MetricRecord.from_samples("peak_memory_bytes", [v * 2.0 for v in peak.samples])
            metrics = dict(b.metrics, peak_memory_bytes=hungrier)
            b = replace(b, metrics=metrics)
        benches.append(b)
    docs[-1] = newest.with_benchmarks(benches)
    with open_store("sqlite:///h.db", tmp_path) as store:
        for doc in docs:
            store.record_run(doc)
        view = model.collect(store)
    page_html = html.render(view, make_doc("base" + "0" * 36, seed=99))
    report = tmp_path / "report.html"
    report.write_text(page_html, encoding="utf-8")
    return report.as_uri(), slow


def test_first_screen_lists_the_planted_regression(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    uri, slow = _planted_regression(tmp_path)
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(uri, wait_until="load")
            first_screen = page.evaluate(
                """() => Array.from(document.querySelectorAll('#verdict-table tbody tr'))
                       .filter(tr => { const r = tr.getBoundingClientRect();
                                       return r.height > 0 && r.bottom <= window.innerHeight; })
                       .map(tr => tr.className + ' ' + tr.innerText)"""
            )
            counts = page.inner_text("#verdict-counts")
            unchanged_open = page.evaluate("document.getElementById('unchanged').open")
            page.select_option("#filter-workload", "speech")
            regressed_shown = page.evaluate(
                "Array.from(document.querySelectorAll('tr.verdict-regressed')).filter(tr => tr.offsetParent).length"
            )
            page.select_option("#filter-workload", "")
            page.select_option("#filter-metric", "peak_memory_bytes")
            after_metric = page.evaluate(
                "Array.from(document.querySelectorAll('tr.verdict-regressed')).filter(tr => tr.offsetParent).length"
            )
        finally:
            browser.close()
    assert errors == []
    short = slow.split("::", 1)[1]
    assert any(row.startswith("verdict-regressed") and short in row for row in first_screen), first_screen
    assert counts.startswith("1 regressed")
    assert unchanged_open is False  # unchanged rows are collapsed
    assert regressed_shown == 0  # the llm regression is filtered out when looking at speech
    assert after_metric == 1
