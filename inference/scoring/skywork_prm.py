"""Skywork-o1-Open-PRM (Qwen2.5 1.5B/7B) natively on transformers' Qwen2: sigmoid of a value head at each step's `\\n`.

Skywork's `prepare_input` lays a solution out as BOS + problem + "\\n", then each step's own tokens followed by the
id of "\\n" (the step token), and `derive_step_rewards` reads the value head at those step tokens. The checkpoint
declares `Qwen2ForPrmModel`: a Qwen2 causal LM (`model.*`, `lm_head`, unused here) and a value head
`v_head.summary` (Linear hidden -> 1) on the last hidden state; ttc builds the same module from `Qwen2Model` and
`torch.nn` and loads the published weights by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Qwen2Model
from transformers.models.qwen2.modeling_qwen2 import Qwen2PreTrainedModel

from inference.scoring.batching import BatchedPRMScorer, PRMInput
from inference.scoring.checkpoint import load_backbone_with_head

SKYWORK_PRM_ARCHITECTURE = "Qwen2ForPrmModel"
STEP_TOKEN = "\n"
"""Skywork's step token: its id follows every step, and the value head is read there."""
HEAD_WEIGHTS = ("v_head.summary.weight", "v_head.summary.bias")


class SkyworkValueHead(nn.Module):
    """`v_head`: one Linear from the hidden state to a logit (Skywork's dropout is off at inference)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden: Any) -> Any:
        return self.summary(hidden)


class Qwen2PrmValueModel(Qwen2PreTrainedModel):
    """Qwen2 backbone + value head; `forward` returns the value logit at every position (batch x length)."""

    # Skywork's checkpoint is a whole causal LM; its language-model head plays no part in the step score.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.v_head = SkyworkValueHead(config.hidden_size)
        self.post_init()

    def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.v_head(hidden)[..., 0]


def load_skywork_prm_model(directory: Path, torch_dtype: Any) -> Qwen2PrmValueModel:
    """The published checkpoint's backbone and value head in the native module (no checkpoint code runs)."""
    return load_backbone_with_head(Qwen2PrmValueModel, directory, HEAD_WEIGHTS, torch_dtype,
                                   f"Skywork-o1-Open-PRM ({SKYWORK_PRM_ARCHITECTURE})")


def check_skywork_tokenizer(tokenizer: Any, path: str) -> None:
    """Skywork's layout starts with the BOS token; a tokenizer without one cannot write it."""
    if tokenizer.bos_token_id is None:
        raise ValueError(f"{path}: the tokenizer has no bos_token, which prm_style 'skywork_prm' writes before the "
                         "problem; use the tokenizer shipped with Skywork-o1-Open-PRM")


class SkyworkPRMScorer(BatchedPRMScorer):
    """Step score = sigmoid(value head) at the step token after the step."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        check_skywork_tokenizer(tokenizer, kwargs["path"])
        # As `prepare_input` does: the last id "\n" encodes to is the step token.
        self.step_id = int(tokenizer.encode(STEP_TOKEN, add_special_tokens=False)[-1])

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        input_ids = [int(self.tokenizer.bos_token_id)]
        input_ids += self.tokenizer.encode(problem + "\n", add_special_tokens=False)
        positions = []
        for index, step in enumerate(steps):
            step_ids = self.tokenizer.encode(step, add_special_tokens=False)
            if not step_ids:
                raise ValueError(f"{self.name}: step {index + 1} is empty; prm_style 'skywork_prm' scores steps with "
                                 "text")
            input_ids += step_ids
            positions.append(len(input_ids))
            input_ids.append(self.step_id)
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        with torch.inference_mode():
            values = self.model(**model_inputs).float()
        return [torch.sigmoid(values[row, list(x.score_positions)]).tolist() for row, x in enumerate(batch)]
