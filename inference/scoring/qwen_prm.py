"""Qwen2.5-Math-PRM (7B/72B) natively on transformers' Qwen2: the model card's chat, P(class 1) at each `<extra_0>`.

The published checkpoint declares `Qwen2ForProcessRewardModel`: a Qwen2 backbone (`model.*`) and a head
`score.0` (Linear hidden -> hidden), ReLU, `score.2` (Linear hidden -> 2). Its own modeling code breaks on current
transformers, so ttc builds the same module from `Qwen2Model` and `torch.nn` and loads the published weights by name.
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

QWEN_PRM_ARCHITECTURE = "Qwen2ForProcessRewardModel"
STEP_TOKEN = "<extra_0>"
"""Written after every step; the head's output at this token scores the step before it."""
QWEN_PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
"""The system turn of the model card's usage example."""
HEAD_WEIGHTS = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")
GOOD_CLASS = 1
"""The head's class meaning "the step is right"."""


class Qwen2ProcessRewardModel(Qwen2PreTrainedModel):
    """Qwen2 backbone + two-layer head; `forward` returns the head's two logits at every position."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(), nn.Linear(config.hidden_size, 2)
        )
        self.post_init()

    def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.score(hidden)


def load_qwen_prm_model(directory: Path, torch_dtype: Any) -> Qwen2ProcessRewardModel:
    """The published checkpoint's weights in the native module (no checkpoint code runs)."""
    return load_backbone_with_head(Qwen2ProcessRewardModel, directory, HEAD_WEIGHTS, torch_dtype,
                                   f"Qwen2.5-Math-PRM ({QWEN_PRM_ARCHITECTURE})")


def step_token_id(tokenizer: Any, path: str) -> int:
    """Id of `<extra_0>`, which must be one token of its own (Qwen2.5-Math-PRM's tokenizer adds it)."""
    token_id = tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id or tokenizer.encode(
            STEP_TOKEN, add_special_tokens=False) != [token_id]:
        raise ValueError(f"{path}: the tokenizer has no {STEP_TOKEN} token, which prm_style 'qwen_prm' writes after "
                         "each step; use the tokenizer shipped with Qwen2.5-Math-PRM")
    return int(token_id)


def qwen_prm_input(tokenizer: Any, step_id: int, problem: str, steps: Sequence[str], name: str) -> PRMInput:
    """The model card's conversation as token ids, scored at each `<extra_0>` (`name` is the PRM's, for errors)."""
    messages = [
        {"role": "system", "content": QWEN_PRM_SYSTEM_PROMPT},
        {"role": "user", "content": problem},
        {"role": "assistant", "content": STEP_TOKEN.join(steps) + STEP_TOKEN},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    # The template writes every special token itself, so encoding adds none.
    input_ids = list(tokenizer.encode(text, add_special_tokens=False))
    positions = [index for index, token in enumerate(input_ids) if token == step_id]
    if len(positions) != len(steps):
        raise ValueError(
            f"{name}: the conversation holds {len(positions)} {STEP_TOKEN} tokens for {len(steps)} steps; "
            f"the problem or a step contains {STEP_TOKEN} itself, which prm_style 'qwen_prm' reserves"
        )
    return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))


class QwenPRMScorer(BatchedPRMScorer):
    """Step score = softmax(head logits)[1] at the `<extra_0>` after the step."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.step_id = step_token_id(tokenizer, kwargs["path"])
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{kwargs['path']}: the tokenizer has no chat template; prm_style 'qwen_prm' renders the "
                             "model card's conversation with it (use the tokenizer shipped with Qwen2.5-Math-PRM)")

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        return qwen_prm_input(self.tokenizer, self.step_id, problem, steps, self.name)

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        with torch.inference_mode():
            logits = self.model(**model_inputs).float()
        return [torch.softmax(logits[row, list(x.score_positions)], dim=-1)[:, GOOD_CLASS].tolist()
                for row, x in enumerate(batch)]
