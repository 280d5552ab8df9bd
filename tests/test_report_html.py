"""The HTML report as text: escaping, no network loads, one self-contained file; the report,
history and export commands end to end."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from history_data import BENCHMARKS, history_docs, make_doc

from pytest_mmperf.cli import main
from pytest_mmperf.history import open_documents, open_store
from pytest_mmperf.report import html, model

EVIL = "<script>alert(1)</script>"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "action", "poster")]
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag == "link":
            self.links.append("<link>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _evil_docs() -> list:
    bench = (f"suites/test_llm.py::test_x[{EVIL}]", "llm", f"t2t{EVIL}", ("sdpa", f"lever{EVIL}"), 50.0, 1.5,
             ("ttft_ms",))
    return [
        make_doc(f"c{i}{EVIL}", seed=i, branch=f"main{EVIL}", created=f"2024-06-0{i + 1}T00:00:00+00:00",
                 benchmarks=(*BENCHMARKS[:2], bench))
        for i in range(3)
    ]


def test_names_from_the_data_are_escaped() -> None:
    with open_documents(_evil_docs()) as store:
        view = model.collect(store)
    page = html.render(view, _evil_docs()[0], title=f"report {EVIL}")
    body, _, _rest = page.partition("<script>")
    assert EVIL not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # the figures' JSON cannot close its script element, and still carries the (escaped) name
    figures_json = page.split('id="mmperf-figures">', 1)[1].split("</script>", 1)[0]
    assert "</" not in figures_json and "<" not in figures_json
    decoded = json.loads(figures_json)
    assert any("&lt;script&gt;" in json.dumps(f) for f in decoded)
    assert "alert(1)</script>" not in json.dumps(decoded)
    parser = _Collect()
    parser.feed(page)
    assert [s.get("type") for s in parser.scripts] == [None, "application/json", None]


def test_the_page_loads_nothing_from_the_network(tmp_path: Path) -> None:
    with open_documents(history_docs(4)) as store:
        view = model.collect(store)
    page = html.render(view)
    parser = _Collect()
    parser.feed(page)
    assert not [u for u in parser.links if u.startswith(("http://", "https://", "//"))]
    # no src/href but the contents' in-page anchors: nothing to load, not even locally
    assert [u for u in parser.links if not u.startswith("#")] == []
    assert "@import" not in page.split("<script>", 1)[0] and "@font-face" not in page
    assert "Content-Security-Policy" in page and "default-src &#x27;none&#x27;" in page
    assert page.count("<script") == 3  # plotly.js, the figures, the start-up code


def test_report_command_from_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///h.db", tmp_path) as store:
        for doc in history_docs(8, step_at=4):
            store.record_run(doc)
    baseline = tmp_path / "baselines" / "cpu-test-0123abcd.json"
    baseline.parent.mkdir()
    baseline.write_text(history_docs(1)[0].dumps())
    assert main(["report", "--db", "sqlite:///h.db", "--html", "out/report.html"]) == 0
    out = capsys.readouterr().out
    assert "report: out/report.html (8 run(s)" in out and "change point(s)" in out
    page = (tmp_path / "out/report.html").read_text()
    assert "Latest run vs baseline" in page and "No baseline given" not in page
    assert "regression" in page


def test_report_command_from_results_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for i, doc in enumerate(history_docs(2)):
        p = tmp_path / f"r{i}.json"
        p.write_text(doc.dumps())
        paths += ["--json", str(p)]
    assert main(["report", *paths, "--html", str(tmp_path / "r.html"), "--baseline-dir", str(tmp_path)]) == 0
    assert "2 run(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", "--json", str(bad), "--html", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmperf report:") and err.count("\n") == 1


def test_history_command_lists_recorded_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    docs = history_docs(2)
    with open_store("sqlite:///.mmperf/history.db", tmp_path) as store:
        for doc in docs:
            store.record_run(doc)
    assert main(["history"]) == 0  # the plugin's default database
    out = capsys.readouterr().out
    assert "2 run(s) from 00c0ffee #1 to 01c0ffee #2" in out
    for b in docs[0].benchmarks:
        assert b.id in out
    assert "latency_ms" in out and "speedup_vs_eager" in out
    assert main(["history", "--db", "sqlite:///.mmperf/history.db", "--workload", "speech",
                 "--metric", "latency_ms"]) == 0
    out = capsys.readouterr().out
    assert "test_s2st[eager]" in out and "test_llm" not in out and "tokens_per_s" not in out


def test_history_command_shows_change_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    with open_store(db, tmp_path) as store:
        for doc in history_docs(12, step_at=6):
            store.record_run(doc)
    assert main(["history", "--db", db, "--benchmark", "suites/test_llm.py::test_llm[eager]",
                 "--metric", "latency_ms"]) == 0
    out = capsys.readouterr().out
    assert "06c0ffee #7 +" in out and "regression" in out


def test_history_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--db", f"sqlite:///{tmp_path / 'absent.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmperf history: no history database at") and err.count("\n") == 1
    (tmp_path / "junk.db").write_bytes(b"junk" * 100)
    assert main(["history", "--db", f"sqlite:///{tmp_path / 'junk.db'}"]) == 2
    assert "not a SQLite database" in capsys.readouterr().err
    assert (tmp_path / "junk.db").read_bytes() == b"junk" * 100


def test_export_github_action_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "r.json"
    doc = make_doc("abc")
    src.write_text(doc.dumps())
    assert main(["export", "--json", str(src), "--format", "github-action-benchmark", "-o",
                 str(tmp_path / "smaller.json")]) == 0
    assert "customSmallerIsBetter" in capsys.readouterr().out
    entries = json.loads((tmp_path / "smaller.json").read_text())
    assert all(set(e) == {"name", "unit", "value", "range", "extra"} for e in entries)
    names = {e["name"] for e in entries}
    assert "suites/test_llm.py::test_llm[eager] latency_ms" in names
    assert not any(n.endswith("tokens_per_s") for n in names)
    assert main(["export", "--json", str(src), "--direction", "higher", "-o", str(tmp_path / "bigger.json")]) == 0
    bigger = {e["name"] for e in json.loads((tmp_path / "bigger.json").read_text())}
    assert "suites/test_llm.py::test_llm[sdpa] speedup_vs_eager" in bigger
    assert "suites/test_llm.py::test_llm[eager] tokens_per_s" in bigger
