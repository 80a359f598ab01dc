"""The two shipped tiny policies load like hub checkpoints and match their manifests and configs."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import TrlParser

from data_prep.synthetic import generate_problems
from training.policy import PolicyManifest, PolicyModelArguments, _training_settings, config_hash, greedy_accuracy
from training.train_policy import PolicySFTConfig

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["small", "large"])
def test_shipped_policy_matches_manifest(name):
    checkpoint = REPO / "checkpoints" / f"policy-{name}"
    manifest = PolicyManifest.load(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert manifest.policy_name == f"policy-{name}"
    assert model.num_parameters() == manifest.num_parameters
    assert model.config.torch_dtype == torch.bfloat16 or str(model.config.dtype) == "torch.bfloat16"
    assert tokenizer.chat_template is not None and tokenizer.pad_token_id != tokenizer.eos_token_id

    # The manifest's config hash is the hash of configs/policy/<name>.yaml: the config in the repo made these weights.
    model_args, sft_config = TrlParser((PolicyModelArguments, PolicySFTConfig)).parse_args_and_config(
        ["--config", str(REPO / "configs" / "policy" / f"{name}.yaml")]
    )
    assert config_hash(model_args, _training_settings(sft_config)) == manifest.config_hash

    # Greedy accuracy on level 1 is reproduced from the shipped bf16 weights (the manifest measured it before
    # the bf16 round trip, so allow a little drift).
    torch.set_num_threads(1)
    level_1 = generate_problems("test", manifest.eval_problems_per_level, seed=manifest.world_seed, levels=(1,))
    accuracy = greedy_accuracy(model.float(), tokenizer, level_1, max_new_tokens=120, batch_size=40)
    assert abs(accuracy["L1"] - manifest.greedy_accuracy["L1"]) <= 0.1


def test_small_policy_is_weaker_than_large():
    small = PolicyManifest.load(REPO / "checkpoints" / "policy-small")
    large = PolicyManifest.load(REPO / "checkpoints" / "policy-large")
    assert small.num_parameters < large.num_parameters
    assert small.train_tokens == large.train_tokens or abs(small.train_tokens / large.train_tokens - 1) < 0.01
    assert small.greedy_accuracy["all"] < large.greedy_accuracy["all"]
    # Mistakes grow with difficulty: level 1 is the easiest level for both.
    for manifest in (small, large):
        assert manifest.greedy_accuracy["L1"] == max(manifest.greedy_accuracy[f"L{k}"] for k in range(1, 6))
