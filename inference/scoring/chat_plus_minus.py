"""+/- chat PRM (RLHFlow style): each step is a user turn, the model answers `+` or `-`; score = P(+) / (P(+) + P(-)).

All steps of a solution are scored in one forward pass: the full conversation is built with `+` as every
assistant answer, and the distribution is read at the position that predicts each answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.judgement import JudgementLayoutError, plus_minus_layout
from inference.scoring.batching import PRMInput
from inference.scoring.causal import CausalJudgeScorer


class ChatPlusMinusScorer(CausalJudgeScorer):
    """A causal LM PRM that answers each step's user turn with the good or bad token."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"{self.name}: prm_style 'chat_plus_minus' needs a tokenizer with a chat template; "
                "this checkpoint has none (is it a step_tag or token_classification PRM?)"
            )

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        try:
            input_ids, positions = plus_minus_layout(self.tokenizer, problem, steps, self.good_token, self.good_id)
        except JudgementLayoutError as error:
            raise ValueError(f"{self.name}: {error}") from None
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))
