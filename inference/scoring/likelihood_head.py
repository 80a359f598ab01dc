"""Likelihood-head PRM scorer: the likelihood verifier's read-out of a causal LM, through a head trained on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.prm_metadata import LIKELIHOOD_HEAD_FILE, LIKELIHOOD_HEAD_TENSORS
from inference.scoring.likelihood import LikelihoodScorer


def load_head(directory: str | Path, hidden_size: int) -> dict[str, Any]:
    """The head tensors of a likelihood-head checkpoint, checked against the LM's hidden size."""
    from safetensors.torch import load_file

    path = Path(directory) / LIKELIHOOD_HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a likelihood_head PRM keeps its head there (written by "
                                "training/train_prm.py with prm_style likelihood_head)")
    head = load_file(str(path))
    missing = [name for name in LIKELIHOOD_HEAD_TENSORS if name not in head]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing}; expected {list(LIKELIHOOD_HEAD_TENSORS)}")
    shapes = {"likelihood_weight": (1,), "hidden_weight": (hidden_size,), "bias": (1,)}
    for name, shape in shapes.items():
        if tuple(head[name].shape) != shape:
            raise ValueError(f"{path}: {name} has shape {tuple(head[name].shape)}, expected {shape} for this LM")
    return {name: head[name].float() for name in LIKELIHOOD_HEAD_TENSORS}


class LikelihoodHeadScorer(LikelihoodScorer):
    """Step score = sigmoid(likelihood_weight * min log P over the step's tokens + hidden_weight . h + bias), h the
    LM's last hidden state at the step's last token (`data_prep.prm_metadata.LIKELIHOOD_HEAD_FILE`); incremental
    like the read-out it extends."""

    def __init__(self, model: Any, tokenizer: Any, *, head: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.head = {name: tensor.to(self.device) for name, tensor in head.items()}

    def scores_from(self, min_log_probs: Any, end_hidden: Any) -> list[float]:
        import torch

        logit = (self.head["likelihood_weight"] * min_log_probs + end_hidden @ self.head["hidden_weight"]
                 + self.head["bias"])
        return torch.sigmoid(logit).tolist()
