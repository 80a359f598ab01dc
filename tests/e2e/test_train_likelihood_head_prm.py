"""train_prm.py with prm_style likelihood_head end to end: train a few steps from a shipped policy, load with
`load_scorer` (no style given), check the scores against a hand computation, and resume after the run stops."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_prep.labels import read_step_labels, write_step_labels
from data_prep.prm_metadata import LIKELIHOOD_HEAD_FILE, PRMMetadata
from tests.e2e.labelled_rows import PROBLEM, STEPS, labelled_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "training" / "train_prm.py")
CONFIG = str(REPO / "configs" / "prm" / "tiny_likelihood_head.yaml")
POLICY = str(REPO / "checkpoints" / "policy-small")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
FAST = ["--model_name_or_path", POLICY, "--per_device_train_batch_size", "2", "--logging_steps", "1",
        "--save_steps", "2", "--learning_rate", "0.05", "--report_to", "none"]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    return write_step_labels(labelled_rows(soft=True), tmp_path_factory.mktemp("labels") / "train.jsonl")


def _train(output_dir: Path, train_file: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, SCRIPT, "--config", CONFIG, "--train_files", str(train_file), "--output_dir",
               str(output_dir), *FAST, *extra]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    return result


def test_trained_from_a_policy_scored_with_no_flags_and_resumed(tmp_path: Path, train_file: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_prep.judgement import likelihood_layout
    from data_prep.steps import SYSTEM_PROMPT
    from inference.scoring import load_scorer
    from safetensors.torch import load_file

    out = tmp_path / "likelihood-head"
    _train(out, train_file, "--max_steps", "2")
    for name in ("model.safetensors", LIKELIHOOD_HEAD_FILE, "tokenizer.json", "config.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoint-2" / LIKELIHOOD_HEAD_FILE).is_file()  # every checkpoint loads like the final one
    metadata = PRMMetadata.load(out)
    assert (metadata.prm_style, metadata.system_prompt) == ("likelihood_head", SYSTEM_PROMPT)
    assert metadata.train_config["mask_after_first_error"] is True and metadata.train_config["freeze_backbone"] is True
    head = load_file(str(out / LIKELIHOOD_HEAD_FILE))
    assert head["likelihood_weight"].item() != 1.0 or head["bias"].item() != 0.0  # training moved the head
    # The LM is frozen: its weights are the policy's, bit for bit.
    policy = load_file(str(Path(POLICY) / "model.safetensors"))
    saved = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(saved[name].to(policy[name].dtype), policy[name]) for name in policy)

    (result,) = load_scorer(out, device="cpu").score([PROBLEM], [STEPS])
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    input_ids, spans = likelihood_layout(tokenizer, PROBLEM, STEPS, SYSTEM_PROMPT)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([input_ids])).logits[0].float(), dim=-1)
        # The LM's last hidden state after its final norm (what its LM head reads).
        hidden = model.model(torch.tensor([input_ids])).last_hidden_state[0].float()
    expected = []
    for first, last in spans:
        minimum = min(log_probs[t - 1, input_ids[t]].item() for t in range(first, last + 1))
        logit = (head["likelihood_weight"].item() * minimum + float(hidden[last] @ head["hidden_weight"].float())
                 + head["bias"].item())
        expected.append(1 / (1 + math.exp(-logit)))
    assert result.step_scores == pytest.approx(expected, abs=1e-5)

    # Resume from checkpoint-2 to step 4: the run continues where it stopped.
    _train(out, train_file, "--max_steps", "4", "--resume", "true")
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    steps_logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps_logged == [1, 2, 3, 4]


def test_implicit_prm_records_its_reference_and_is_scored_by_the_log_ratio(tmp_path: Path, train_file: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_prep.judgement import likelihood_layout
    from data_prep.steps import SYSTEM_PROMPT
    from inference.scoring import load_scorer

    # Outcome labels only: the one row with a soft label is left out (an implicit PRM refuses it).
    hard = write_step_labels([row for row in read_step_labels(train_file, "stepwise")
                              if all(isinstance(label, bool) for label in row.labels)], tmp_path / "hard.jsonl")
    out = tmp_path / "implicit"
    command = [sys.executable, SCRIPT, "--config", str(REPO / "configs/prm/tiny_implicit.yaml"), "--train_files",
               str(hard), "--output_dir", str(out), "--model_name_or_path", POLICY, "--per_device_train_batch_size",
               "2", "--max_steps", "2", "--warmup_steps", "0", "--learning_rate", "0.01", "--report_to", "none"]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    metadata = PRMMetadata.load(out)
    assert (metadata.prm_style, metadata.beta, metadata.reference_model) == ("implicit", 0.05, str(Path(POLICY).resolve()))
    (scored,) = load_scorer(out, device="cpu").score([PROBLEM], [STEPS])
    tokenizer = AutoTokenizer.from_pretrained(out)
    input_ids, spans = likelihood_layout(tokenizer, PROBLEM, STEPS, SYSTEM_PROMPT)

    def log_probs(path: Path | str) -> torch.Tensor:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([input_ids])).logits[0].float(), dim=-1)

    trained, reference = log_probs(out), log_probs(POLICY)
    rewards = [0.05 * sum((trained[t - 1, input_ids[t]] - reference[t - 1, input_ids[t]]).item()
                          for t in range(first, last + 1)) for first, last in spans]
    assert any(abs(r) > 1e-6 for r in rewards)  # two steps at lr 0.01 moved the model off its reference
    assert scored.step_scores == pytest.approx([1 / (1 + math.exp(-r)) for r in rewards], abs=1e-5)


def test_a_lora_implicit_prm_trains_saves_its_adapter_and_loads_with_no_flags(tmp_path: Path, train_file: Path) -> None:
    from inference.scoring import load_scorer

    hard = write_step_labels([row for row in read_step_labels(train_file, "stepwise")
                              if all(isinstance(label, bool) for label in row.labels)], tmp_path / "hard.jsonl")
    out = tmp_path / "implicit-lora"
    command = [sys.executable, SCRIPT, "--config", str(REPO / "configs/prm/tiny_implicit.yaml"), "--train_files",
               str(hard), "--output_dir", str(out), "--model_name_or_path", POLICY, "--use_peft", "true",
               "--lora_r", "4", "--lora_alpha", "8", "--per_device_train_batch_size", "2", "--max_steps", "2",
               "--save_steps", "2", "--warmup_steps", "0", "--learning_rate", "0.01", "--report_to", "none"]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert (out / "checkpoint-2" / "adapter_model.safetensors").is_file()
    metadata = PRMMetadata.load(out)
    assert metadata.is_peft_adapter and metadata.reference_model == metadata.base_model == str(Path(POLICY).resolve())
    (scored,) = load_scorer(out, device="cpu").score([PROBLEM], [STEPS])
    assert len(scored.step_scores) == len(STEPS) and all(0.0 < s < 1.0 for s in scored.step_scores)
    assert any(abs(s - 0.5) > 1e-6 for s in scored.step_scores)  # the adapters moved off the reference
