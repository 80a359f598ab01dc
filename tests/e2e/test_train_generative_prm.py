"""train_prm.py for the generative styles end to end: train a few steps, load with `load_scorer` (no style given) and
check the scores are P(good) / (P(good) + P(bad)) read at the judgement positions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_prep.labels import write_step_labels
from data_prep.prm_metadata import PRMMetadata
from data_prep.records import StepLabels

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "training" / "train_prm.py")
TINY = str(REPO / "configs" / "prm" / "tiny.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
FAST = ["--warmup_steps", "0", "--learning_rate", "0.003", "--per_device_train_batch_size", "3", "--logging_steps", "1",
        "--max_steps", "3", "--save_steps", "3", "--report_to", "none"]
TAG = "#"
PROBLEM = "Start with 7.\n(1) Add 2.\nWhat is the final number?"
STEPS = ["(1) Add 2: 7 + 2 = 9", "Therefore, the final answer is: $\\boxed{9}$."]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    """Six hand-made rows: right solutions labelled good, a wrong step and everything after it bad, one soft label."""
    rows = [
        StepLabels("Start with 3.\n(1) Add 4.\nWhat is the final number?",
                   ["(1) Add 4: 3 + 4 = 7", "Therefore, the final answer is: $\\boxed{7}$."], [True, True]),
        StepLabels("Start with 3.\n(1) Add 4.\nWhat is the final number?",
                   ["(1) Add 4: 3 + 4 = 8", "Therefore, the final answer is: $\\boxed{8}$."], [False, False]),
        StepLabels("Start with 5.\n(1) Subtract 1.\nWhat is the final number?",
                   ["(1) Subtract 1: 5 - 1 = 4", "Therefore, the final answer is: $\\boxed{4}$."], [True, 0.75]),
        StepLabels("Start with 5.\n(1) Subtract 1.\nWhat is the final number?",
                   ["(1) Subtract 1: 5 - 1 = 6", "Therefore, the final answer is: $\\boxed{6}$."], [False, False]),
        StepLabels("Start with 2.\n(1) Multiply by 3.\n(2) Add 1.\nWhat is the final number?",
                   ["(1) Multiply by 3: 2 * 3 = 6", "(2) Add 1: 6 + 1 = 7",
                    "Therefore, the final answer is: $\\boxed{7}$."], [True, True, True]),
        StepLabels("Start with 2.\n(1) Multiply by 3.\n(2) Add 1.\nWhat is the final number?",
                   ["(1) Multiply by 3: 2 * 3 = 6", "(2) Add 1: 6 + 1 = 8",
                    "Therefore, the final answer is: $\\boxed{8}$."], [True, False, False]),
    ]
    return write_step_labels(rows, tmp_path_factory.mktemp("labels") / "train.jsonl")


def _train(output_dir: Path, train_file: Path, *extra: str) -> list[float]:
    command = [sys.executable, SCRIPT, "--config", TINY, "--train_files", str(train_file), "--output_dir",
               str(output_dir), *FAST, *extra]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    state = json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _hand_scores(output_dir: Path, input_ids: list[int], positions: list[int]) -> list[float]:
    """P(+) / (P(+) + P(-)) from the saved model's logits at `positions`, computed here without the scorer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    plus, minus = tokenizer.convert_tokens_to_ids(["+", "-"])
    model = AutoModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([input_ids])).logits[0]
    scores = []
    for position in positions:
        good, bad = logits[position, plus].item(), logits[position, minus].item()
        scores.append(math.exp(good) / (math.exp(good) + math.exp(bad)))
    return scores


def test_plus_minus_prm_from_the_policy_is_scored_at_the_answer_positions(tmp_path: Path, train_file: Path) -> None:
    from transformers import AutoTokenizer

    from inference.scoring import load_scorer

    out = tmp_path / "plus_minus"
    losses = _train(out, train_file, "--model_name_or_path", str(REPO / "checkpoints/policy-large"),
                    "--prm_style", "chat_plus_minus")
    assert len(losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    metadata = PRMMetadata.load(out)
    assert (metadata.prm_style, metadata.good_token, metadata.bad_token) == ("chat_plus_minus", "+", "-")
    scorer = load_scorer(out, device="cpu")
    (result,) = scorer.score([PROBLEM], [STEPS])
    # By hand: the conversation with `+` answers; judged at the token before each answer (after <|assistant|>\n).
    tokenizer = AutoTokenizer.from_pretrained(out)
    conversation = []
    for index, step in enumerate(STEPS):
        conversation += [{"role": "user", "content": f"{PROBLEM} {step}" if index == 0 else step},
                         {"role": "assistant", "content": "+"}]
    ids = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), add_special_tokens=False)["input_ids"]
    assistant, plus = tokenizer.convert_tokens_to_ids(["<|assistant|>", "+"])
    positions = [index - 1 for index in range(2, len(ids)) if ids[index] == plus and ids[index - 2] == assistant]
    assert len(positions) == len(STEPS)
    assert result.step_scores == pytest.approx(_hand_scores(out, ids, positions), abs=1e-5)


def test_step_tag_prm_is_scored_at_the_tags(tmp_path: Path, train_file: Path) -> None:
    from transformers import AutoTokenizer

    from inference.scoring import load_scorer

    out = tmp_path / "step_tag"
    losses = _train(out, train_file, "--model_name_or_path", "none", "--init_from_config", "tiny",
                    "--prm_style", "step_tag", "--step_tag", TAG, "--learning_rate", "0.01")
    assert len(losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    metadata = PRMMetadata.load(out)
    assert (metadata.prm_style, metadata.step_tag) == ("step_tag", TAG)
    scorer = load_scorer(out, device="cpu")
    (result,) = scorer.score([PROBLEM], [STEPS])
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = f"{PROBLEM} {STEPS[0]} {TAG}\n{STEPS[1]} {TAG}"
    ids = tokenizer(text)["input_ids"]
    tag_id = tokenizer.convert_tokens_to_ids(TAG)
    positions = [index for index, token in enumerate(ids) if token == tag_id]
    assert len(positions) == len(STEPS)
    assert result.step_scores == pytest.approx(_hand_scores(out, ids, positions), abs=1e-5)
