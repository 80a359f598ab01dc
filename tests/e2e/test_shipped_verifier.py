"""The shipped verifier PRM loads like a hub checkpoint, matches its manifest and still verifies held-out steps."""

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForTokenClassification

from data_prep.prm_metadata import PRMMetadata
from tests.repo_files import load_repo_file
from training.policy import PolicyManifest

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "checkpoints" / "prm-verifier"


@pytest.fixture(scope="module")
def ship_verifier():
    return load_repo_file("scripts/ship_verifier.py", "ship_verifier")


def test_shipped_verifier_matches_manifest(ship_verifier):
    manifest = ship_verifier.VerifierManifest.load(CHECKPOINT)
    metadata = PRMMetadata.load(CHECKPOINT)
    model = AutoModelForTokenClassification.from_pretrained(CHECKPOINT)
    assert metadata.prm_style == "token_classification" and not metadata.is_peft_adapter
    assert metadata.base_model == manifest.backbone and (REPO / manifest.backbone).is_dir()
    assert model.num_parameters() == manifest.num_parameters
    assert model.dtype == torch.bfloat16 and model.config.num_labels == 2
    # The recipe's settings in the repo are the ones that made these weights, and the manifest names its commands.
    assert ship_verifier.config_sha256(REPO / manifest.config) == manifest.config_sha256
    assert manifest.commands == ship_verifier.recipe_commands()
    assert manifest.gold_vs_corrupted_step_auroc >= 0.8
    assert len(manifest.backbone_config_hash) == 16  # which policy-large weights it grew from


def test_shipped_verifier_ranks_heldout_gold_steps_above_corrupted(ship_verifier, tmp_path, monkeypatch):
    """Re-measured on fewer held-out problems than the manifest's figure (same split, same checker), it agrees."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    manifest = ship_verifier.VerifierManifest.load(CHECKPOINT)
    check = dataclasses.replace(ship_verifier.HeldOutCheck(**manifest.heldout), num_per_level=12)
    result = ship_verifier.measure_heldout(CHECKPOINT, check, tmp_path)
    assert result["num_fit"] + result["num_eval"] == 5 * check.num_per_level * (1 + check.corrupted_per_problem)
    assert result["step_auroc"] >= 0.75
    assert abs(result["step_auroc"] - manifest.gold_vs_corrupted_step_auroc) <= 0.08


def test_describe_notes_a_verifier_that_grew_from_other_policy_weights(ship_verifier, tmp_path):
    verifier, large = tmp_path / "verifier", tmp_path / "large"
    verifier.mkdir(), large.mkdir()
    manifest = ship_verifier.VerifierManifest.load(CHECKPOINT)
    manifest.backbone_config_hash = "aaaa"
    manifest.save(verifier)
    policy = PolicyManifest.load(REPO / "checkpoints" / "policy-large")
    dataclasses.replace(policy, config_hash="aaaa").save(large)
    assert "note:" not in ship_verifier.describe(verifier, large)

    dataclasses.replace(policy, config_hash="bbbb").save(large)
    described = ship_verifier.describe(verifier, large)
    assert f"{manifest.gold_vs_corrupted_step_auroc}" in described
    assert "note:" in described and "aaaa" in described and "bbbb" in described


def test_ship_refuses_a_checkpoint_that_is_not_a_prm(ship_verifier, tmp_path):
    not_a_prm = REPO / "checkpoints" / "policy-small"
    with pytest.raises(FileNotFoundError, match="ttc_prm.json"):
        ship_verifier.ship(not_a_prm, tmp_path / "out", ["python x"], Path("configs/prm/tiny_corrupted.yaml"), 1.0,
                           ship_verifier.HeldOutCheck())
    assert not (tmp_path / "out").exists()
