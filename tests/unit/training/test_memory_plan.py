"""benchmarks/prm_memory_plan.py: exact 8B PRM parameter counts, the activation estimate and DeepSpeed's estimators."""

from __future__ import annotations

import importlib.util

import pytest

from tests.repo_files import load_repo_file


@pytest.fixture(scope="module")
def plan():
    return load_repo_file("benchmarks/prm_memory_plan.py", "prm_memory_plan")


@pytest.fixture(scope="module")
def counts(plan):
    return plan.count_params(16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def test_parameter_counts_match_the_llama31_8b_architecture(counts) -> None:
    hidden, kv, inter, layers, vocab = 4096, 1024, 14336, 32, 128256
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter + 2 * hidden
    assert counts.total_params == vocab * hidden + layers * per_layer + hidden + (hidden * 2 + 2)
    assert counts.largest_layer_params == vocab * hidden
    lora_per_layer = 16 * ((hidden + hidden) * 2 + (hidden + kv) * 2 + (hidden + inter) * 3)
    assert counts.lora_params == layers * lora_per_layer + hidden * 2 + 2


def test_activation_estimate(plan, counts) -> None:
    tokens = 4 * 2048
    per_layer = 2 * tokens * (6 * 4096 + 2 * 1024 + 4 * 14336)
    assert plan.activation_bytes(counts, tokens, checkpointing=False) == 32 * per_layer
    assert plan.activation_bytes(counts, tokens, checkpointing=True) == 32 * 2 * tokens * 4096 + per_layer


@pytest.mark.deepspeed
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed extra not installed")
def test_zero3_estimate_is_18_bytes_per_param_over_8_gpus_plus_the_largest_layer(plan, counts) -> None:
    estimates, printed = plan.zero_estimates(counts, 8)
    _, gpu = estimates["ZeRO-3"]
    assert gpu == 4 * counts.largest_layer_params + int(18 * counts.total_params / 8)
    assert "8 GPUs per node" in printed
