"""Tiny random Llama checkpoints (2 layers, hidden 32) on the local tiny tokenizer, for backend and scorer tests."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForTokenClassification,
    PreTrainedTokenizerFast,
)

from data_prep.prm_metadata import PRMMetadata  # noqa: E402
from data_prep.tokenizer import build_tiny_tokenizer  # noqa: E402


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides: object) -> LlamaConfig:
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def save_causal_lm(directory: Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Path:
    """A random LlamaForCausalLM + tokenizer saved as safetensors."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(tokenizer))
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def save_token_classifier(
    directory: Path,
    tokenizer: PreTrainedTokenizerFast,
    *,
    num_labels: int = 2,
    seed: int = 0,
    metadata: PRMMetadata | None = None,
) -> Path:
    """A random LlamaForTokenClassification + tokenizer (+ ttc_prm.json when `metadata` is given)."""
    torch.manual_seed(seed)
    model = LlamaForTokenClassification(tiny_config(tokenizer, num_labels=num_labels))
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    if metadata is not None:
        metadata.save(directory)
    return directory


__all__ = ["build_tiny_tokenizer", "save_causal_lm", "save_token_classifier", "tiny_config"]
