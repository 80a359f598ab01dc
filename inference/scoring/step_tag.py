"""Step-tag PRM (Math-Shepherd style): a tag after each step; score = P(good) / (P(good) + P(bad)) at the tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.labels import MATH_SHEPHERD_STEP_TAG
from inference.scoring.batching import PRMInput
from inference.scoring.causal import CausalJudgeScorer, encode_with_offsets, token_index_at


def build_step_tag_text(problem: str, steps: Sequence[str], step_tag: str) -> tuple[str, list[int]]:
    """Math-Shepherd's layout `problem step_1 TAG\\nstep_2 TAG...`, and the character index where each tag ends."""
    text = f"{problem} "
    tag_ends = []
    for index, step in enumerate(steps):
        if index:
            text += "\n"
        text += f"{step} {step_tag}"
        tag_ends.append(len(text))
    return text, tag_ends


class StepTagScorer(CausalJudgeScorer):
    """A causal LM PRM read at each step tag: its next-token distribution over the good and bad tokens."""

    def __init__(self, model: Any, tokenizer: Any, *, step_tag: str = MATH_SHEPHERD_STEP_TAG, **kwargs: Any) -> None:
        if not step_tag:
            raise ValueError("step_tag is empty; Math-Shepherd uses 'ки'")
        super().__init__(model, tokenizer, **kwargs)
        self.step_tag = step_tag

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        text, tag_ends = build_step_tag_text(problem, steps, self.step_tag)
        # Math-Shepherd encodes with the tokenizer's special tokens (BOS).
        input_ids, offsets = encode_with_offsets(self.tokenizer, text, add_special_tokens=True)
        positions = []
        for index, end in enumerate(tag_ends):
            token = token_index_at(offsets, end - 1, last=True)
            if token is None:
                raise RuntimeError(f"{self.name}: no token covers the step tag of step {index + 1}")
            positions.append(token)
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))
