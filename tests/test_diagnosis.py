"""The diagnosis engine (pure): ranked causes of a change from base and head data of one benchmark."""

import json

from pytest_mmperf.judge import diagnosis
from pytest_mmperf.judge.verdict import Verdict
from pytest_mmperf.measure.profiling import compact_profile
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord

STEPS = 8  # decode steps per call


def record(ttft=10.0, tpot=2.0, health=None, profile=None, bid="t::llm[eager]", calls=12):
    """``calls`` rounds of one call each: a latency, a ttft and STEPS tpot samples per call."""
    metrics = {
        "latency_ms": MetricRecord.from_samples("latency_ms", [ttft + STEPS * tpot] * calls),
        "ttft_ms": MetricRecord.from_samples("ttft_ms", [ttft] * calls),
        "tpot_ms": MetricRecord.from_samples("tpot_ms", [tpot] * (calls * STEPS)),
        "first_call_ms": MetricRecord.from_samples("first_call_ms", [500.0]),
    }
    for name, value in (health or {}).items():
        metrics[name] = MetricRecord.from_samples(name, [value])
    return BenchmarkRecord(bid, "llm", "t2t", (), "tiny", "cpu", 1, metrics,
                           profile={"operators": profile} if profile is not None else None)


def ops(**changes):
    """An eager tiny-Llama-like call: (calls, self_us, total_us, self_bytes) per operator."""
    table = {
        "aten::mm": (36 * STEPS, 4000.0, 4200.0, 0),
        "aten::mul": (20 * STEPS, 800.0, 800.0, 0),
        "aten::add": (12 * STEPS, 500.0, 500.0, 0),
        "aten::_scaled_dot_product_flash_attention_for_cpu": (2 * STEPS, 600.0, 900.0, 0),
        "aten::silu": (2 * STEPS, 200.0, 200.0, 0),
        "aten::empty": (40 * STEPS, 100.0, 100.0, 1_000_000),
    }
    table.update(changes)
    table = {k: v for k, v in table.items() if v is not None}
    return compact_profile([(name, *row) for name, row in table.items()], steps=STEPS)


def test_compact_profile_is_small_rounded_and_keeps_the_top_operators():
    rows = [(f"aten::op{i}", 10.0, 1000.0 / (i + 1) + 0.123456, 2000.0, 0.0) for i in range(60)]
    rows.append(("aten::big_alloc", 1.0, 0.5, 0.5, 64e6))  # little time, many bytes: kept
    prof = compact_profile(rows, steps=4, top=10)
    assert len(prof["ops"]) == 11 and "aten::big_alloc" in prof["ops"]
    assert prof["truncated"] and prof["rest"]["operators"] == 50
    assert prof["ops"]["aten::op0"]["self_us"] == 1000.0  # 3 significant digits
    assert len(json.dumps(prof)) < 2500


def test_extra_elementwise_work_is_named_first_with_calls_per_step():
    base = record(profile=ops())
    head = record(tpot=2.3, profile=ops(**{"aten::mul": (40 * STEPS, 1700.0, 1700.0, 0)}))
    d = diagnosis.diagnose(base, head, regressed=["latency_ms"])
    first = d.causes[0]
    assert first.subject == "aten::mul"
    assert "calls per step 20 -> 40" in first.text
    # the phases: all of the change is decode (tpot x 8 steps), none is prefill
    assert d.phases[0].phase == "tpot_ms" and abs(d.phases[0].share - 1.0) < 1e-9
    assert d.latency[:2] == ("latency_ms", 26.0) and abs(d.latency[2] - 28.4) < 1e-9
    assert all(p.phase != "first_call_ms" for p in d.phases)


def test_attention_on_the_math_backend_is_a_swap_of_operators():
    base = record(profile=ops())
    head = record(tpot=2.5, profile=ops(**{
        "aten::_scaled_dot_product_flash_attention_for_cpu": None,
        "aten::_scaled_dot_product_attention_math": (2 * STEPS, 100.0, 2500.0, 0),
        "aten::bmm": (4 * STEPS, 1200.0, 1200.0, 0),
        "aten::_softmax": (2 * STEPS, 300.0, 300.0, 0),
    }))
    d = diagnosis.diagnose(base, head, regressed=["latency_ms"])
    assert d.causes[0].subject == ("aten::_scaled_dot_product_flash_attention_for_cpu -> "
                                   "aten::_scaled_dot_product_attention_math")
    assert "attention" in d.causes[0].text


def test_a_worse_lever_health_value_comes_before_operators():
    base = record(health={"recompiles_count": 0.0, "graph_breaks_count": 0.0}, profile=ops())
    head = record(tpot=4.0, health={"recompiles_count": 8.0, "graph_breaks_count": 0.0},
                  profile=ops(**{"aten::mul": (40 * STEPS, 1700.0, 1700.0, 0)}))
    d = diagnosis.diagnose(base, head)
    assert d.causes[0].kind == "lever" and d.causes[0].subject == "recompiles_count"
    assert d.causes[0].text == "lever health: recompiles_count 0 -> 8 (worse)"
    assert not any(c.subject == "graph_breaks_count" for c in d.causes)  # unchanged: not a cause


def test_sdpa_backend_counts_and_acceptance_rate():
    base = record(health={"sdpa_flash_count": 16.0, "acceptance_rate": 0.8})
    head = record(health={"sdpa_math_count": 16.0, "acceptance_rate": 0.795})
    d = diagnosis.diagnose(base, head)
    subjects = [c.subject for c in d.causes]
    assert set(subjects) == {"sdpa_flash_count", "sdpa_math_count"}  # the rate moved < 1 point
    assert any("16 -> 0" in c.text for c in d.causes) and any("0 -> 16" in c.text for c in d.causes)


def test_a_memory_regression_ranks_operators_by_bytes():
    base = record(profile=ops())
    head = record(profile=ops(**{"aten::clone": (1, 2.0, 2.0, 8_000_000)}))
    d = diagnosis.diagnose(base, head, regressed=["peak_memory_bytes"])
    assert d.causes[0].subject == "aten::clone"
    assert "+8 MB allocated a call" in d.causes[0].text


def test_unchanged_profiles_give_no_operator_cause():
    d = diagnosis.diagnose(record(profile=ops()), record(profile=ops()))
    assert d.causes == () and d.phases[0].share is None


def test_without_a_baseline_profile_it_says_so_and_still_splits_phases():
    d = diagnosis.diagnose(record(), record(ttft=20.0, profile=ops()))
    assert d.notes and "re-save the baseline" in d.notes[0]
    assert d.phases[0].phase == "ttft_ms" and abs(d.phases[0].share - 1.0) < 1e-9


def test_explain_profiles_once_only_when_failed_and_comparable():
    base, head = record(profile=ops()), record(tpot=2.3)
    calls = []

    def profile():
        calls.append(1)
        return ops(**{"aten::mul": (40 * STEPS, 1700.0, 1700.0, 0)})

    passed = Verdict(head.id, False, "unchanged", {"metrics": []})
    assert diagnosis.explain(passed, base, head, profile) == (passed, head) and not calls
    failed = Verdict(head.id, True, "t::llm[eager] latency_ms median +9%", {
        "metrics": [{"metric": "latency_ms", "category": "regressed", "gated": True}]})
    verdict, judged = diagnosis.explain(failed, base, head, profile)
    assert calls == [1]
    lines = verdict.message.splitlines()
    assert lines[0] == failed.message and lines[1] == "diagnosis (biggest cause first):"
    assert "aten::mul calls per step 20 -> 40" in lines[2]
    assert verdict.details["diagnosis"]["causes"][0]["subject"] == "aten::mul"
    assert judged.profile["operators"]["ops"]["aten::mul"]["calls"] == 40 * STEPS
    json.dumps(verdict.details)  # rides on the report as JSON
    # a baseline without a profile: no extra call is spent
    diagnosis.explain(failed, record(), head, profile)
    assert calls == [1]


def _documents(tpot=2.3, head_peak_bytes=1e6):
    from pytest_mmperf.results.records import RunDocument

    env = {"fingerprint": "cpu-test", "device": "cpu"}
    base = record(profile=ops(), health={"peak_memory_bytes": 1e6})
    head = record(tpot=tpot, health={"peak_memory_bytes": head_peak_bytes},
                  profile=ops(**{"aten::mul": (40 * STEPS, 1700.0, 1700.0, 4_000_000)}))
    return (RunDocument(environment=env, benchmarks=(base,), commit="a" * 40),
            RunDocument(environment=env, benchmarks=(head,), commit="b" * 40))


def test_the_html_report_shows_the_causes_against_a_baseline_escaped():
    from pytest_mmperf.report import diagnosis as shown
    from pytest_mmperf.report import html

    # a report has no history, so only what travels between sessions is judged: bytes (+300%)
    base_doc, head_doc = _documents(tpot=6.0, head_peak_bytes=4e6)
    found = html._diagnosed(head_doc, base_doc)
    assert [b for b, _ in found] == ["llm[eager]"]  # short ids, as the rest of the report
    page = shown.html(found)
    assert "aten::mul calls per step 20 -&gt; 40" in page and "<code>llm[eager]</code>" in page


def test_the_markdown_table_is_collapsed_and_escaped():
    from pytest_mmperf.report import diagnosis as shown
    from pytest_mmperf.report.markdown import escape

    base_doc, head_doc = _documents()
    d = diagnosis.diagnose(base_doc.benchmarks[0], head_doc.benchmarks[0], regressed=["latency_ms"]).to_json()
    md = "\n".join(shown.markdown([("t::llm[eager]", d)], escape))
    assert md.startswith("<details>\n<summary>Why t::llm\\[eager\\] regressed (biggest cause first)</summary>")
    assert "| 1 | operator | aten::mul calls per step 20 -\\> 40" in md
    assert "Where: latency\\_ms 26 -\\> 28.4 a call: tpot\\_ms 100% (16 -\\> 18.4 ms a call)" in md
    assert md.rstrip().endswith("</details>")


def test_an_operator_below_the_top_n_is_not_new_when_it_grows_into_it():
    rows = [(f"aten::op{i}", 8, 1000.0 - i, 1000.0 - i, 0.0) for i in range(30)]
    base = compact_profile([*rows, ("aten::small", 8, 1.0, 1.0, 0.0)], steps=8, top=30)
    head = compact_profile([*rows, ("aten::small", 8, 5000.0, 5000.0, 0.0)], steps=8, top=30)
    assert "aten::small" not in base["ops"] and base["rest_calls"] == {"aten::small": 8}
    causes = diagnosis.operator_causes({"operators": base}, {"operators": head})
    assert causes[0].subject == "aten::small" and "new operator" not in causes[0].text
    assert causes[0].text.startswith("aten::small self time +")  # at equal calls: a time change


def test_device_kernels_become_rows_of_their_own():
    from types import SimpleNamespace as E

    from pytest_mmperf.measure.profiling import operator_rows

    events = [
        E(key="aten::mm", count=4, self_cpu_time_total=40.0, cpu_time_total=50.0, self_cpu_memory_usage=0),
        E(key="ampere_sgemm_128x64_tn", count=4, self_cpu_time_total=0.0, cpu_time_total=0.0,
          self_device_time_total=400.0, device_time_total=400.0),
        E(key="cudaLaunchKernel", count=4, self_cpu_time_total=12.0, cpu_time_total=12.0,
          self_device_time_total=0.0),  # a runtime call: host time only, not a kernel
    ]
    assert operator_rows(events) == [("aten::mm", 4.0, 40.0, 50.0, 0.0),
                                     ("kernel::ampere_sgemm_128x64_tn", 4.0, 400.0, 400.0, 0.0)]


def test_mmperf_ab_prints_the_diagnosis_of_a_regressed_benchmark():
    from pytest_mmperf.ab import paired
    from pytest_mmperf.ab.result import ABResult
    from pytest_mmperf.ab.summary import terminal_lines
    from pytest_mmperf.judge.compare import Category

    base_doc, head_doc = _documents(tpot=3.0)
    bid = head_doc.benchmarks[0].id
    comp = paired.PairedComparison(bid, "latency_ms", "lower", Category.REGRESSED, 26.0, 34.0, 0.31, 0.2, 0.4,
                                   1e-4, 3, 4, 0.05)
    lines = terminal_lines(ABResult("a" * 40, "b" * 40, base_doc, head_doc, [comp], {}, [], []))
    at = next(i for i, line in enumerate(lines) if line.endswith("diagnosis (biggest cause first):"))
    assert lines[at].startswith(bid)
    assert "aten::mul calls per step 20 -> 40" in lines[at + 1]
    assert any(line.strip().startswith("where: latency_ms 26 -> 34 a call; tpot_ms 100% of the change")
               for line in lines[at:])
