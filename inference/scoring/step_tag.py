"""Step-tag PRM (Math-Shepherd style): a tag after each step; score = P(good) / (P(good) + P(bad)) at the tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.judgement import JudgementLayoutError, step_tag_layout
from data_prep.labels import MATH_SHEPHERD_STEP_TAG
from inference.scoring.batching import PRMInput
from inference.scoring.causal import CausalJudgeScorer


class StepTagScorer(CausalJudgeScorer):
    """A causal LM PRM read at each step tag: its next-token distribution over the good and bad tokens."""

    def __init__(self, model: Any, tokenizer: Any, *, step_tag: str = MATH_SHEPHERD_STEP_TAG, **kwargs: Any) -> None:
        if not step_tag:
            raise ValueError("step_tag is empty; Math-Shepherd uses 'ки'")
        super().__init__(model, tokenizer, **kwargs)
        self.step_tag = step_tag

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        try:
            input_ids, positions = step_tag_layout(self.tokenizer, problem, steps, self.step_tag)
        except JudgementLayoutError as error:
            raise ValueError(f"{self.name}: {error}") from None
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))
