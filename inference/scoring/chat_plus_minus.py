"""+/- chat PRM (RLHFlow style): each step is a user turn, the model answers `+` or `-`; score = P(+) / (P(+) + P(-)).

All steps of a solution are scored in one forward pass: the full conversation is built with `+` as every
assistant answer, and the distribution is read at the position that predicts each answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inference.scoring.batching import PRMInput
from inference.scoring.causal import CausalJudgeScorer, encode_with_offsets, token_index_at


def build_conversation(problem: str, steps: Sequence[str], answer: str) -> list[dict[str, str]]:
    """User turn 1 is `problem + " " + step 1`, each later user turn one more step; every assistant turn is `answer`."""
    conversation = []
    for index, step in enumerate(steps):
        conversation.append({"role": "user", "content": f"{problem} {step}" if index == 0 else step})
        conversation.append({"role": "assistant", "content": answer})
    return conversation


class ChatPlusMinusScorer(CausalJudgeScorer):
    """A causal LM PRM that answers each step's user turn with the good or bad token."""

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"{self.name}: prm_style 'chat_plus_minus' needs a tokenizer with a chat template; "
                "this checkpoint has none (is it a step_tag or token_classification PRM?)"
            )

    def _render(self, conversation: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt)

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        conversation = build_conversation(problem, steps, self.good_token)
        text = self._render(conversation, add_generation_prompt=False)
        input_ids, offsets = encode_with_offsets(self.tokenizer, text, add_special_tokens=False)
        positions = []
        for index in range(len(steps)):
            # The conversation up to user turn i with the assistant turn opened ends where answer i begins.
            opened = self._render(conversation[: 2 * index + 1], add_generation_prompt=True)
            if not (text.startswith(opened) and text[len(opened) :].startswith(self.good_token)):
                raise ValueError(
                    f"{self.name}: the chat template does not render the answer to turn {index + 1} right after "
                    "the generation prompt, so the +/- position cannot be found; use a template whose assistant "
                    "turn is `<generation prompt><answer>`"
                )
            token = token_index_at(offsets, len(opened))
            if token is None or token == 0 or input_ids[token] != self.good_id:
                raise ValueError(
                    f"{self.name}: the answer {self.good_token!r} to turn {index + 1} is not tokenized as its own "
                    f"token (id {self.good_id}) in the rendered conversation; it merges with neighbouring text"
                )
            # Logits at the token before the answer predict the answer.
            positions.append(token - 1)
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))
