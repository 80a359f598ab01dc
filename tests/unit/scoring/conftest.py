"""Fixtures for scorer tests: the tiny tokenizer and tiny random PRM checkpoints of each kind, built once per session."""

from __future__ import annotations

import pytest

from data_prep.prm_metadata import PRMMetadata
from tests.unit.generation.tiny_models import build_tiny_tokenizer, save_causal_lm, save_token_classifier


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def causal_lm_dir(tmp_path_factory, tiny_tokenizer):
    """A causal LM with no ttc_prm.json (like a public +/- or step-tag PRM)."""
    return save_causal_lm(tmp_path_factory.mktemp("causal_prm"), tiny_tokenizer, seed=1)


@pytest.fixture(scope="session")
def token_classifier_dir(tmp_path_factory, tiny_tokenizer):
    """A token-classification PRM as training/train_prm.py writes it (with metadata)."""
    metadata = PRMMetadata(prm_style="token_classification", base_model="tiny-base")
    return save_token_classifier(tmp_path_factory.mktemp("tc_prm"), tiny_tokenizer, seed=2, metadata=metadata)
