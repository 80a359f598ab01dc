"""Fixtures for backend tests: the tiny tokenizer and a tiny random causal LM, built once per session."""

from __future__ import annotations

import pytest

from tests.unit.generation.tiny_models import build_tiny_tokenizer, save_causal_lm


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, tiny_tokenizer):
    return save_causal_lm(tmp_path_factory.mktemp("tiny_policy"), tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_generator(tiny_policy_dir):
    from inference.generation.transformers_backend import TransformersGenerator

    return TransformersGenerator(str(tiny_policy_dir), device="cpu", batch_size=16, seed=0)
