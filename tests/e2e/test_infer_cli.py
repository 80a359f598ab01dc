"""`ttc-infer run` end to end in a subprocess on tiny random models: schema, counts, kill-and-resume, MATH-500 plumbing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MATH500 = REPO.parent / "shared" / "data" / "math500_test.jsonl"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
COMMAND = [shutil.which("ttc-infer")] if shutil.which("ttc-infer") else [sys.executable, "-m", "inference.cli"]

SWEEP = {"n_values": [2, 4], "min_n_by_strategy": {}}
STRATEGIES = {
    "majority": {"max_tokens": 48},
    "best_of_n": {"max_tokens": 48},
    "weighted_best_of_n": {"max_tokens": 48},
    "beam_search": {"beam_width": 2, "max_step_tokens": 16, "max_iterations": 2},
    "dvts": {"beam_width": 2, "max_step_tokens": 16, "max_iterations": 2},
    "particle_filtering": {"max_step_tokens": 16, "max_iterations": 2},
    "mcts": {"expansion_width": 2, "max_step_tokens": 16, "max_iterations": 2},
    "adaptive_majority": {"max_tokens": 48, "round_size": 2, "weighted": True},
}
NUM_PROBLEMS = 8
ROWS_PER_PROBLEM = 8 * 2  # every registered strategy at N = 2 and 4


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A random LlamaForCausalLM policy and a random token-classification PRM with ttc_prm.json."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification

    from data_prep.prm_metadata import PRMMetadata
    from data_prep.tokenizer import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("models")
    tokenizer = build_tiny_tokenizer()

    def config(**extra: int) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, **extra,
        )

    torch.manual_seed(0)
    LlamaForCausalLM(config()).save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    LlamaForTokenClassification(config(num_labels=2)).save_pretrained(root / "prm")
    tokenizer.save_pretrained(root / "prm")
    PRMMetadata(prm_style="token_classification").save(root / "prm")
    return {"policy": root / "policy", "prm": root / "prm"}


def write_config(directory: Path, models: dict[str, Path], **extra: object) -> Path:
    config = {
        "benchmark": {"name_or_path": "synthetic-test", "num_per_level": 2, "limit": NUM_PROBLEMS},
        "policy": {"model_name_or_path": str(models["policy"]), "batch_size": 64},
        "prm": {"path": str(models["prm"])},
        "sweep": SWEEP,
        "strategies": STRATEGIES,
        "output_dir": str(directory / "out"),
        "chunk_size": 1,
        **extra,
    }
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def keys(path: Path) -> list[tuple]:
    return [(r["problem_id"], r["strategy"], r["n"], r["beam_width"], r["seed"]) for r in rows(path)]


def essence(path: Path) -> dict[tuple, tuple]:
    """What a resumed run must reproduce: completions and choices (wall time aside)."""
    return {key: (json.dumps(r["completions"]), r["pred"], r["compute"]["policy_tokens"], r["compute"]["prm_tokens"])
            for key, r in zip(keys(path), rows(path))}


@pytest.fixture(scope="module")
def uninterrupted(models, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("whole")
    result = run_cli("run", "--config", str(write_config(directory, models)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"results: {directory / 'out' / 'results.jsonl'}" in result.stdout
    return directory / "out" / "results.jsonl"


def test_run_writes_the_documented_schema_and_counts(uninterrupted):
    data = rows(uninterrupted)
    assert len(data) == NUM_PROBLEMS * ROWS_PER_PROBLEM
    assert len(set(keys(uninterrupted))) == len(data)
    assert Counter((r["strategy"], r["n"]) for r in data) == {
        (s, n): NUM_PROBLEMS for s in STRATEGIES for n in (2, 4)
    }
    for row in data:
        assert list(row) == ["problem_id", "source", "level", "strategy", "n", "beam_width", "seed", "gold",
                             "completions", "pred", "correct", "compute", "policy", "prm", "settings_json"]
        assert row["source"] == "synthetic" and row["policy"] == "policy" and row["prm"] == "prm"
        assert row["compute"]["policy_tokens"] > 0 and row["compute"]["prm_tokens"] > 0
        assert row["compute"]["model_calls"] >= 2 and row["compute"]["seconds"] > 0
        assert json.loads(row["settings_json"])["n"] == row["n"]
        assert row["beam_width"] == (2 if row["strategy"] in ("beam_search", "dvts") else None)
        found = len(row["completions"])
        if row["strategy"] == "mcts":  # the terminal nodes of n expansions of 2 children, and the best path
            assert 1 <= found <= 2 * row["n"] + 1
        elif row["strategy"] == "adaptive_majority":  # rounds of 2 until settled, at most n
            assert found in range(2, row["n"] + 1, 2)
        else:
            assert found == (row["n"] // 2 if row["strategy"] == "dvts" else row["n"])
        assert all(len(c["step_scores"]) == len(c["steps"]) for c in row["completions"])
    config_copy = yaml.safe_load((uninterrupted.parent / "config.yaml").read_text(encoding="utf-8"))
    assert config_copy["sweep"]["n_values"] == [2, 4] and config_copy["chunk_size"] == 1


def test_results_load_with_datasets(uninterrupted):
    import datasets

    dataset = datasets.load_dataset("json", data_files=str(uninterrupted), split="train")
    assert dataset.num_rows == NUM_PROBLEMS * ROWS_PER_PROBLEM
    assert set(dataset["strategy"]) == set(STRATEGIES)
    assert all(len(c) > 0 for c in dataset["completions"])


def interrupt_then_resume(directory: Path, models: dict[str, Path], signum: int) -> tuple[int, int, str]:
    """Start a run, send `signum` once the results file has a row, then rerun it to completion."""
    config = write_config(directory, models)
    results = directory / "out" / "results.jsonl"
    process = subprocess.Popen([*COMMAND, "run", "--config", str(config)], cwd=REPO, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if results.is_file() and results.read_bytes().count(b"\n") >= 1:
            process.send_signal(signum)
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=60)
    rows_at_stop = results.read_bytes().count(b"\n")
    resumed = run_cli("run", "--config", str(config))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return process.returncode, rows_at_stop, stderr


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_stopped_run_resumes_to_the_uninterrupted_result(models, uninterrupted, tmp_path, signum):
    code, rows_at_stop, stderr = interrupt_then_resume(tmp_path, models, signum)
    total = NUM_PROBLEMS * ROWS_PER_PROBLEM
    assert 1 <= rows_at_stop < total, "the run finished before the signal; the test did not interrupt it"
    if signum == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 143 and "stopped by SIGTERM; rerun the same command to resume" in stderr
    results = tmp_path / "out" / "results.jsonl"
    final = keys(results)
    assert len(final) == len(set(final)) == total
    assert set(final) == set(keys(uninterrupted))
    # Seeds are per call and chunks hold one problem, so the resumed rows are the very same rows.
    assert essence(results) == essence(uninterrupted)


def test_sampled_solutions_do_not_depend_on_chunk_size_or_batch_size(models, uninterrupted, tmp_path):
    # Each sample draws from its own uniforms (call seed, prompt, occurrence, sample number), so three problems per
    # strategy call in batches of 5 sequences draw the solutions one problem per call in batches of 64 drew.
    sampling = ["majority", "best_of_n", "weighted_best_of_n"]
    config = write_config(tmp_path, models, chunk_size=3)
    result = run_cli("run", "--config", str(config), "--policy.batch_size", "5", "--sweep.strategies", *sampling)
    assert result.returncode == 0, result.stderr[-3000:]

    def texts(path: Path) -> dict[tuple, list[str]]:
        return {key: [c["text"] for c in row["completions"]] for key, row in zip(keys(path), rows(path))
                if row["strategy"] in sampling}

    chunked = texts(tmp_path / "out" / "results.jsonl")
    assert len(chunked) == NUM_PROBLEMS * len(sampling) * 2
    assert chunked == texts(uninterrupted)


@pytest.mark.skipif(not MATH500.is_file(), reason=f"MATH-500 file {MATH500} is not present")
def test_math500_plumbing_with_tiny_random_models(models, tmp_path):
    from data_prep.grading import answers_match
    from data_prep.steps import extract_boxed_answer

    out = tmp_path / "math500"
    result = run_cli(
        "run", "--config", str(REPO / "configs" / "infer" / "math500_tiny_random.yaml"),
        "--policy.model_name_or_path", str(models["policy"]), "--prm.path", str(models["prm"]),
        "--output_dir", str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    gold = [json.loads(line) for line in MATH500.read_text(encoding="utf-8").splitlines()[:20]]
    data = rows(out / "results.jsonl")
    assert Counter(r["strategy"] for r in data) == {s: 20 for s in ("majority", "best_of_n", "weighted_best_of_n", "beam_search")}
    by_id = {g["unique_id"]: g for g in gold}
    assert {r["problem_id"] for r in data} == set(by_id)
    for row in data:
        source = by_id[row["problem_id"]]
        assert (row["source"], row["gold"], row["level"]) == ("math500", source["answer"], source["level"])
        assert row["compute"]["policy_tokens"] > 0 and row["compute"]["prm_tokens"] > 0
        for completion in row["completions"]:
            assert completion["answer"] == extract_boxed_answer(completion["text"])
        assert row["correct"] == answers_match(row["gold"], row["pred"])


@pytest.mark.skipif(not MATH500.is_file(), reason=f"MATH-500 file {MATH500} is not present")
def test_math500_prompt_renders_through_the_policy_chat_template(models):
    from data_prep.steps import SYSTEM_PROMPT
    from inference import runner
    from inference.config import CliValue, RunConfig, parse_config
    from inference.prompts import render_prompt
    from inference.types import GenerationRequest

    config = parse_config(RunConfig, REPO / "configs" / "infer" / "math500_tiny_random.yaml",
                          {"policy.model_name_or_path": CliValue(str(models["policy"]))})
    problem = runner.load_problems(config)[0]
    generator = runner.build_generator(config)
    prompt = render_prompt(generator.tokenizer, GenerationRequest(problem.problem), generator.system_prompt)
    assert prompt == f"<|bos|><|system|>\n{SYSTEM_PROMPT}<|end|>\n<|user|>\n{problem.problem}<|end|>\n<|assistant|>\n"
