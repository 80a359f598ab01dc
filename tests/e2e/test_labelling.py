"""`ttc-infer label` end to end: a tiny Llama policy through the real transformers backend, output file, kill and resume."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from data_prep.grading import answers_match  # noqa: E402
from data_prep.io import read_jsonl  # noqa: E402
from data_prep.labels import read_step_labels  # noqa: E402
from data_prep.prm_metadata import PRMMetadata  # noqa: E402
from data_prep.steps import extract_boxed_answer  # noqa: E402
from data_prep.synthetic import generate_problems  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

# A random tiny Llama almost never ends a sequence within a few dozen tokens, so every solution would be cut off
# and dropped. The policy below is a tiny Llama (hidden 32, 2 layers) whose weights make it a first-order Markov
# chain over a handful of tokens: it writes steps like "Add 12", blank lines, and sometimes
# "Therefore, the final answer is: $\boxed{7}$." and then ends, so solutions finish with 1-4 steps.
DIGITS = [str(d) for d in range(10)]
CHAIN: dict[str, dict[str, float]] = {
    "\n": {"\n": 0.45, "Ad": 0.35, "Therefore": 0.2},
    "Ad": {"d": 1.0},
    "d": {" ": 1.0},
    " ": {d: 0.1 for d in DIGITS},
    "digit": {**{d: 0.03 for d in DIGITS}, "\n": 0.5, "}$.": 0.2},
    "Therefore": {",": 1.0},
    ",": {" the": 1.0},
    " the": {" final": 1.0},
    " final": {" answer": 1.0},
    " answer": {" is": 1.0},
    " is": {":": 1.0},
    ":": {" $\\": 1.0},
    " $\\": {"boxed": 1.0},
    "boxed": {"{": 1.0},
    "{": {d: 0.1 for d in DIGITS},
    "}$.": {"<eos>": 1.0},
}


def save_chain_policy(directory: Path) -> Path:
    """A LlamaForCausalLM whose next-token distribution depends only on the current token, as in CHAIN."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from data_prep.tokenizer import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)

    def token_id(text: str) -> int:
        if text == "<eos>":
            return tokenizer.eos_token_id
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert len(ids) == 1, f"{text!r} is {len(ids)} tokens in the tiny tokenizer"
        return ids[0]

    states = {name: index + 1 for index, name in enumerate(CHAIN)}  # state 0: any other token (it ends the text)
    with torch.no_grad():
        for layer in model.model.layers:  # the residual stream is then just the current token's embedding
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        for name, state in states.items():
            for text in DIGITS if name == "digit" else [name]:
                model.model.embed_tokens.weight[token_id(text), 0] = 0.0
                model.model.embed_tokens.weight[token_id(text), state] = 1.0
        # RMSNorm turns a one-hot embedding into sqrt(hidden) times it; the head column of a state holds its logits.
        scale = math.sqrt(config.hidden_size)
        head = model.lm_head.weight
        head.fill_(-30.0 / scale)
        head[tokenizer.eos_token_id, 0] = 30.0 / scale
        for name, state in states.items():
            for text, probability in CHAIN[name].items():
                head[token_id(text), state] = math.log(probability) / scale
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def chain_policy(tmp_path_factory) -> Path:
    return save_chain_policy(tmp_path_factory.mktemp("chain_policy"))


def write_config(path: Path, policy: Path, output: Path, **extra: object) -> Path:
    settings = {
        "benchmark": {"name_or_path": "synthetic-train", "num_per_level": 1, "limit": 3},
        "policy": {"model_name_or_path": str(policy), "device": "cpu", "batch_size": 64},
        "labeller": "mc",
        "num_solutions": 4,
        "rollouts_per_step": 4,
        "temperature": 1.0,
        "max_tokens": 48,
        "compare_oracle": True,
        "output": str(output),
        "chunk_size": 1,
        **extra,
    }
    import yaml

    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def run_label(config: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "inference.cli", "label", "--config", str(config), "--log_level", "warning"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_label_writes_loadable_rows_and_resumes_after_sigkill(tmp_path, chain_policy):
    output = tmp_path / "labels.jsonl"
    config = write_config(tmp_path / "label.yaml", chain_policy, output)
    progress = output.with_name("labels.progress.jsonl")
    first = run_label(config)
    deadline = time.monotonic() + 45
    while not (progress.exists() and progress.read_text().count("\n") >= 1):
        assert first.poll() is None, f"label run ended early: {first.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the first chunk did not land in 45 s"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    chunks_before = progress.read_text().count("\n")

    second = run_label(config)
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr[-2000:]
    assert "label: " in stdout

    problems = generate_problems("train", 1, seed=0)[:3]
    records = read_step_labels(output)  # the training arm's loader accepts the file
    keys = [(r.meta["problem_id"], r.meta["solution_index"]) for r in records]
    assert len(keys) == len(set(keys)), f"duplicate rows after resume: {Counter(keys).most_common(2)}"
    assert {key[0] for key in keys} <= {p.id for p in problems}
    for record in records:
        assert record.prompt in {p.problem for p in problems}
        assert len(record.labels) == len(record.completions) == len(record.meta["mc_values"]) >= 1
        assert all(isinstance(label, bool) for label in record.labels)
        assert all(0.0 <= value <= 1.0 for value in record.meta["mc_values"])
        assert record.labels == [value > 0 for value in record.meta["mc_values"]]
        assert record.meta["rollouts_per_step"] == 4 and record.meta["policy"] == chain_policy.name
    chunks = [row for _, row in read_jsonl(progress)]
    assert sorted(chunk["chunk"] for chunk in chunks) == [0, 1, 2]  # every chunk once: none redone, none lost
    assert sum(chunk["rows"] for chunk in chunks) == len(records)
    kept = sum(chunk["rows"] + chunk["dropped_truncated"] + chunk["dropped_empty"] + chunk["dropped_duplicates"]
               for chunk in chunks)
    assert kept == 3 * 4  # every sampled solution is a row or a counted drop
    assert all(chunk["policy_tokens"] > 0 and chunk["generate_calls"] in (1, 2) for chunk in chunks)

    import json

    summary = json.loads(output.with_name("labels.summary.json").read_text())
    assert summary["problems"] == summary["problems_done"] == 3
    assert summary["examples"] == len(records) and summary["steps"] == sum(len(r.labels) for r in records)
    assert summary["rollouts_per_step"] == 4 and summary["oracle_agreement_steps"] == summary["steps"]
    if summary["steps"]:
        assert 0.0 <= summary["oracle_agreement"] <= 1.0
    assert 1 <= chunks_before < 3, f"{chunks_before} chunks before the kill; the resume path was not exercised"


def test_outcome_labels_of_the_shipped_policy_train_an_implicit_prm(tmp_path):
    # ttc-infer label's outcome labeller, then train_prm.py's implicit style on its file, both as subprocesses.
    policy = REPO / "checkpoints" / "policy-small"
    output = tmp_path / "outcome.jsonl"
    config = write_config(tmp_path / "label.yaml", policy, output, labeller="outcome", rollouts_per_step=8,
                          compare_oracle=False, temperature=0.8, max_tokens=128, chunk_size=3)
    labelled = run_label(config)
    _, stderr = labelled.communicate(timeout=120)
    assert labelled.returncode == 0, stderr[-2000:]
    rows = [row for _, row in read_jsonl(output)]
    assert rows and all(set(row) == {"prompt", "completion", "label", "meta"} for row in rows)
    problems = {p.problem: p for p in generate_problems("train", 1, seed=0)[:3]}
    for row in rows:  # the label is the boxed answer graded against the gold one
        assert row["label"] == answers_match(problems[row["prompt"]].answer, extract_boxed_answer(row["completion"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    prm = tmp_path / "implicit"
    trained = subprocess.run(
        [sys.executable, str(REPO / "training" / "train_prm.py"), "--config", str(REPO / "configs/prm/tiny_implicit.yaml"),
         "--model_name_or_path", str(policy), "--data_format", "outcome", "--train_files", str(output),
         "--output_dir", str(prm), "--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metadata = PRMMetadata.load(prm)
    assert (metadata.prm_style, metadata.train_config["num_train_examples"]) == ("implicit", len(rows))
    assert len(read_step_labels(output, "outcome")) == len(rows)
