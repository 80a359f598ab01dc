"""train_prm.py under one-process DeepSpeed ZeRO-3 for the likelihood-head, implicit and +/- PRM styles: on the tiny
policy (the gathered checkpoint is whole and scores), and the 8B recipes' LoRA configs: the implicit one on a 1-layer
Llama-3.1-8B-shaped LM, the +/- one on the tiny policy (its adapter scored)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_prep.labels import write_step_labels
from data_prep.prm_metadata import LIKELIHOOD_HEAD_FILE, PRMMetadata
from tests.e2e.labelled_rows import PROBLEM, STEPS, labelled_rows

# DeepSpeed runs rendezvous on one fixed local port: under -n their tests share one worker.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("deepspeed"),
    pytest.mark.deepspeed,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed extra not installed"),
]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "training" / "train_prm.py")
POLICY = REPO / "checkpoints" / "policy-small"
ZERO3 = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(REPO / "configs" / "accelerate" / "deepspeed_zero3.yaml")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
# The generative styles save through the Trainer's own gathered save, which the token-classification ZeRO-3 test
# and the +/- recipe's run below cover; these two write their own layout from the gathered state dict.
TINY_CONFIGS = {"likelihood_head": "tiny_likelihood_head.yaml", "implicit": "tiny_implicit.yaml"}


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    """Hard labels only (the implicit style refuses soft ones)."""
    return write_step_labels(labelled_rows(soft=False), tmp_path_factory.mktemp("labels") / "train.jsonl")


def _train_zero3(config: str, output_dir: Path, train_file: Path, *extra: str) -> None:
    command = [*ZERO3, SCRIPT, "--config", config, "--train_files", str(train_file), "--output_dir", str(output_dir),
               "--logging_steps", "1", "--report_to", "none", *extra]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    assert "Detected DeepSpeed ZeRO-3" in result.stderr  # the weights really were partitioned


def _logged_losses(checkpoint: Path) -> list[float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _final_train_loss(output_dir: Path) -> float:
    saved = re.search(r"saved PRM to .* \(step 1, train loss ([0-9.]+)\)", (output_dir / "train.log").read_text())
    assert saved is not None
    return float(saved.group(1))


@pytest.mark.parametrize("style", sorted(TINY_CONFIGS))
def test_zero3_saves_whole_weights_that_score(tmp_path: Path, train_file: Path, style: str) -> None:
    from inference.scoring import load_scorer

    out = tmp_path / style
    _train_zero3(str(REPO / "configs" / "prm" / TINY_CONFIGS[style]), out, train_file, "--model_name_or_path",
                 str(POLICY), "--per_device_train_batch_size", "2", "--max_steps", "2", "--save_steps", "2",
                 "--warmup_steps", "0", "--learning_rate", "0.05")
    losses = _logged_losses(out / "checkpoint-2")
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    policy = load_file(str(POLICY / "model.safetensors"))
    saved = load_file(str(out / "model.safetensors"))
    # Gathered from the partitions: every tensor whole (a partitioned parameter alone would save as empty).
    assert {name: tuple(tensor.shape) for name, tensor in saved.items() if name in policy} == {
        name: tuple(tensor.shape) for name, tensor in policy.items()}
    unchanged = all(torch.equal(saved[name].to(policy[name].dtype), policy[name]) for name in policy)
    if style == "likelihood_head":
        assert unchanged  # the LM is frozen; only the head trains
        head = load_file(str(out / LIKELIHOOD_HEAD_FILE))
        assert head["hidden_weight"].shape == (96,) and bool(head["hidden_weight"].abs().sum() > 0)
    else:
        assert not unchanged
    if style == "implicit":
        # At step 1 the trained LM is its reference, so every reward is 0 and the outcome loss is ln 2: the
        # reference ran (sharded, in its own DeepSpeed engine) and agreed with the trained LM token by token.
        assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
        assert PRMMetadata.load(out).reference_model == str(POLICY.resolve())
    (scored,) = load_scorer(out, device="cpu").score([PROBLEM], [STEPS])
    assert len(scored.step_scores) == len(STEPS) and all(0 < score < 1 for score in scored.step_scores)


@pytest.fixture(scope="module")
def llama8b_shape(tmp_path_factory) -> Path:
    """A random Llama-3.1-8B-shaped causal LM cut to 1 layer (hidden 4096, vocabulary 128,256; about 2.5 GB in
    bf16) with the tiny policy's tokenizer and chat template."""
    from transformers import AutoTokenizer

    from training.config import ModelArguments
    from training.prm import build_random_model

    directory = tmp_path_factory.mktemp("llama8b_shape")
    tokenizer = AutoTokenizer.from_pretrained(POLICY)
    model = build_random_model(ModelArguments(init_from_config="llama31_8b", num_hidden_layers=1,
                                              torch_dtype="bfloat16"), tokenizer, seed=0, causal_lm=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    yield directory
    shutil.rmtree(directory)  # pytest keeps the last three tmp dirs; 3 GB of random weights need not stay


def _train_8b_recipe(config: str, model: Path, out: Path, train_file: Path, dtype: str) -> float:
    """One step of an 8B recipe's LoRA config under ZeRO-3 on `model`; checks the gathered adapter, returns the
    step's loss."""
    _train_zero3(str(REPO / "configs" / "prm" / f"{config}.yaml"), out, train_file, "--model_name_or_path",
                 str(model), "--torch_dtype", dtype, "--bf16", "false", "--gradient_checkpointing",
                 "false", "--use_cpu", "true", "--max_steps", "1", "--max_length", "130",
                 "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1", "--save_strategy", "no")
    loss = _final_train_loss(out)  # one step: the loss of that step
    assert math.isfinite(loss) and loss > 0
    metadata = PRMMetadata.load(out)
    assert metadata.train_config["config_name"] == config
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["base_model_name_or_path"]) == (16, str(model.resolve()))
    lora = load_file(str(out / "adapter_model.safetensors"))
    assert lora and all(tensor.numel() > 0 for tensor in lora.values())  # gathered, not empty partitions
    return loss


def test_the_8b_implicit_recipe_trains_under_zero3_on_the_8b_shape(tmp_path: Path, train_file: Path,
                                                                   llama8b_shape: Path) -> None:
    # The 8B shape (hidden 4096, 128,256-token vocabulary, 32/8 heads) with the trained LM and its reference both
    # partitioned: the recipe with the most state.
    loss = _train_8b_recipe("llama31_8b_implicit_lora", llama8b_shape, tmp_path / "implicit", train_file, "bfloat16")
    assert loss == pytest.approx(math.log(2), abs=1e-4)  # LoRA B starts at 0: the reference itself


def test_the_8b_plus_minus_recipe_trains_under_zero3_and_its_adapter_scores(tmp_path: Path,
                                                                            train_file: Path) -> None:
    # The +/- recipe saves through the Trainer's own gathered save; on the tiny policy (its chat template) the
    # saved adapter is also scored.
    from inference.scoring import load_scorer

    out = tmp_path / "plus_minus"
    _train_8b_recipe("llama31_8b_plus_minus_lora", POLICY, out, train_file, "float32")
    (scored,) = load_scorer(out, device="cpu").score([PROBLEM], [STEPS])
    assert len(scored.step_scores) == len(STEPS) and all(0 < score < 1 for score in scored.step_scores)
