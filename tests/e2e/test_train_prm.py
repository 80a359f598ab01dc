"""training/train_prm.py end to end in subprocesses: plain, LoRA, resume, DeepSpeed ZeRO-2/3 and the 8B shape cut down."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_prep.labels import oracle_labels, write_step_labels
from data_prep.prm_metadata import PRMMetadata
from data_prep.records import StepLabels
from data_prep.synthetic import generate_problems, gold_steps

# DeepSpeed runs rendezvous on one fixed local port: under -n their tests share one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("deepspeed")]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "training" / "train_prm.py")
TINY = str(REPO / "configs" / "prm" / "tiny.yaml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "WANDB_MODE": "offline"}
# A few fast steps whatever the YAML schedule says.
# tiny.yaml starts from the shipped verifier PRM; most tests train a random tiny model instead.
FAST = ["--model_name_or_path", "none", "--init_from_config", "tiny", "--warmup_steps", "0", "--learning_rate", "0.01", "--per_device_train_batch_size", "4", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    """20 synthetic examples: gold and broken solutions with oracle labels, a third of them as soft labels."""
    rng = random.Random(0)
    records = []
    for index, problem in enumerate(generate_problems("train", 4, seed=0)):
        steps = gold_steps(problem)
        if index % 2:
            wrong = rng.randrange(len(steps) - 1)
            steps[wrong] = steps[wrong].replace("=", "= 1", 1)
        labels: list[bool | float] = list(oracle_labels(problem, steps))
        if index % 3 == 0:
            labels = [0.7 if label else 0.1 for label in labels]
        records.append(StepLabels(problem.problem, steps, labels))
    return write_step_labels(records, tmp_path_factory.mktemp("labels") / "train.jsonl")


def _run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    return result


def _train(output_dir: Path, train_file: Path, *extra: str, config: str = TINY, launcher: list[str] | None = None):
    command = (launcher or [sys.executable]) + [SCRIPT, "--config", config, "--train_files", str(train_file),
                                                "--output_dir", str(output_dir), *FAST, *extra]
    return _run(command, timeout=600)


def _losses(output_dir: Path) -> list[float]:
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _initial_tiny_weights() -> dict[str, torch.Tensor]:
    """The random model the tiny config starts from (seed 0), rebuilt here."""
    from training.config import ModelArguments
    from training.prm import build_random_model, load_tokenizer

    model_args = ModelArguments(init_from_config="tiny")
    model = build_random_model(model_args, load_tokenizer(model_args), seed=0)
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_plain_run_trains_saves_and_loads(tmp_path: Path, train_file: Path) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out = tmp_path / "prm"
    _train(out, train_file, "--max_steps", "3", "--report_to", "wandb")
    losses = _losses(out)
    assert len(losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert type(model).__name__ == "LlamaForTokenClassification"
    assert model.config.id2label == {0: "bad", 1: "good"}
    initial = _initial_tiny_weights()
    assert not torch.allclose(model.score.weight, initial["score.weight"])
    assert (out / "model.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(out).pad_token == "<|pad|>"
    metadata = PRMMetadata.load(out)
    assert (metadata.prm_style, metadata.step_separator, metadata.is_peft_adapter) == ("token_classification", "\n\n", False)
    assert metadata.train_config["num_train_examples"] == 20
    assert metadata.train_config["config_name"] == "tiny"
    assert "training on 20 examples" in (out / "train.log").read_text()
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1


def test_lora_run_keeps_the_base_and_loads_offline(tmp_path: Path, train_file: Path) -> None:
    out = tmp_path / "lora"
    _train(out, train_file, "--max_steps", "3", "--use_peft", "--lora_r", "4", "--lora_alpha", "8")
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    metadata = PRMMetadata.load(out)
    assert metadata.is_peft_adapter is True
    assert metadata.base_model == str((out / "base").resolve())
    base = load_file(out / "base" / "model.safetensors")
    initial = _initial_tiny_weights()
    assert all(torch.equal(base[name], initial[name]) for name in initial)  # the base is the untouched init
    check = f"""
import json, torch
from peft import AutoPeftModelForTokenClassification
from safetensors.torch import load_file
model = AutoPeftModelForTokenClassification.from_pretrained({str(out)!r})
base = load_file({str(out / "base" / "model.safetensors")!r})
q = model.base_model.model.model.layers[0].self_attn.q_proj
print(json.dumps({{
    "base_q_unchanged": torch.equal(q.base_layer.weight, base["model.layers.0.self_attn.q_proj.weight"]),
    "lora_b_trained": bool(q.lora_B["default"].weight.abs().sum() > 0),
    "head_trained": not torch.equal(model.base_model.model.score.modules_to_save["default"].weight, base["score.weight"]),
}}))
"""
    result = _run([sys.executable, "-c", check])
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "base_q_unchanged": True, "lora_b_trained": True, "head_trained": True}


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, train_file: Path) -> None:
    out = tmp_path / "resume"
    _train(out, train_file, "--max_steps", "2", "--save_steps", "1")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    result = _train(out, train_file, "--max_steps", "4", "--save_steps", "1", "--resume")
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in result.stderr
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    assert PRMMetadata.load(out / "checkpoint-4").prm_style == "token_classification"


@pytest.mark.deepspeed
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed extra not installed")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_runs_on_cpu_and_saves_loadable_weights(tmp_path: Path, train_file: Path, stage: int) -> None:
    from transformers import AutoModelForTokenClassification

    out = tmp_path / f"zero{stage}"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "configs" / "accelerate" / f"deepspeed_zero{stage}.yaml")]
    _train(out, train_file, "--max_steps", "2", launcher=launcher)
    assert all(math.isfinite(loss) for loss in _losses(out))
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.score.weight.shape == (2, 32)
    assert not torch.allclose(model.score.weight, _initial_tiny_weights()["score.weight"])
    assert PRMMetadata.load(out).prm_style == "token_classification"


def test_llama31_8b_shape_cut_to_two_layers_trains_lora_on_cpu(tmp_path: Path, train_file: Path) -> None:
    from data_prep.tokenizer import build_tiny_tokenizer

    tokenizer_dir = tmp_path / "tokenizer"
    build_tiny_tokenizer().save_pretrained(tokenizer_dir)
    out = tmp_path / "llama8b_lora"
    _train(out, train_file, "--model_name_or_path", "none", "--init_from_config", "llama31_8b",
           "--num_hidden_layers", "2", "--tokenizer_name_or_path", str(tokenizer_dir), "--torch_dtype", "bfloat16",
           "--bf16", "false", "--gradient_checkpointing", "false", "--use_cpu", "true", "--report_to", "none",
           "--max_steps", "2", "--max_length", "64", "--per_device_train_batch_size", "2",
           "--gradient_accumulation_steps", "1", "--save_strategy", "no",
           config=str(REPO / "configs" / "prm" / "llama31_8b_lora.yaml"))
    metadata = PRMMetadata.load(out)
    assert metadata.is_peft_adapter is True
    assert metadata.train_config["config_name"] == "llama31_8b_lora"
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16
    assert set(adapter_config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                      "down_proj"}
    base_config = json.loads((out / "base" / "config.json").read_text())
    assert (base_config["hidden_size"], base_config["num_hidden_layers"], base_config["vocab_size"]) == (4096, 2, 128256)
    saved = re.search(r"saved PRM to .* \(step (\d+), train loss ([0-9.]+)\)", (out / "train.log").read_text())
    assert saved is not None
    assert int(saved.group(1)) == 2
    assert math.isfinite(float(saved.group(2))) and float(saved.group(2)) > 0
    shutil.rmtree(out / "base")  # ~2 GB of random bf16 weights; pytest keeps the last three tmp dirs
