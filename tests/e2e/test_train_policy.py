"""training/train_policy.py end to end on a very small shape: weights, manifest, and a resumed run that says so."""

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from training.policy import PolicyManifest
from training.train_policy import main

REPO = Path(__file__).resolve().parents[2]
SMALL_SHAPE = [
    "--config", str(REPO / "configs" / "policy" / "small.yaml"),
    "--hidden_size", "32", "--intermediate_size", "64", "--num_hidden_layers", "1",
    "--num_attention_heads", "2", "--num_key_value_heads", "1",
    "--train_problems_per_level", "4", "--eval_problems_per_level", "1", "--eval_max_new_tokens", "16",
    "--save_steps", "2", "--save_total_limit", "3", "--logging_steps", "1", "--warmup_steps", "0",
]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_train_then_resume_records_where_the_second_run_picked_up(tmp_path):
    output_dir = tmp_path / "policy"
    assert main([*SMALL_SHAPE, "--output_dir", str(output_dir), "--max_steps", "4"]) == 0
    first = PolicyManifest.load(output_dir)
    assert first.extra["global_steps"] == 4 and "resumed_from_step" not in first.extra
    assert (output_dir / "checkpoint-4").is_dir()
    assert AutoModelForCausalLM.from_pretrained(output_dir).num_parameters() == first.num_parameters
    assert set(first.greedy_accuracy) == {"L1", "L2", "L3", "L4", "L5", "all"}

    # A longer schedule continues from checkpoint-4; the manifest says so, because train_seconds covers 4 -> 6 only.
    assert main([*SMALL_SHAPE, "--output_dir", str(output_dir), "--max_steps", "6", "--resume", "true"]) == 0
    resumed = PolicyManifest.load(output_dir)
    assert resumed.extra["global_steps"] == 6 and resumed.extra["resumed_from_step"] == 4
    assert resumed.config_hash != first.config_hash  # max_steps is part of what made the weights


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    output_dir = tmp_path / "fresh"
    assert main([*SMALL_SHAPE, "--output_dir", str(output_dir), "--max_steps", "2", "--resume", "true"]) == 0
    manifest = PolicyManifest.load(output_dir)
    assert manifest.extra["global_steps"] == 2 and "resumed_from_step" not in manifest.extra


def test_describe_prints_each_shipped_policy_manifest(capsys):
    policies = [str(REPO / "checkpoints" / name) for name in ("policy-small", "policy-large")]
    assert main(["--describe", *policies]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, policy in zip(lines, policies, strict=True):
        manifest = PolicyManifest.load(policy)
        assert line.startswith(f"{policy}: {manifest.policy_name}, ")
        assert f"all={manifest.greedy_accuracy['all']}" in line
