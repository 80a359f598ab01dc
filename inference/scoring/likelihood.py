"""Likelihood verifier: a causal LM (e.g. a larger policy) scores each step by the least likely token it contains.

No step labels are trained: the verifier reads the solution after ttc's policy prompt (its own chat template over
`data_prep.steps.SYSTEM_PROMPT`, the policies' default), and a step's score is min over the step's tokens of
P(token | everything before it). A slip such as `67 * 7 = 459` puts one token the
verifier did not expect into an otherwise fluent step, so the minimum (not the mean) is what exposes it; aggregate
such scores with `min` or `prod`, since the last step (the boxed answer) is fluent whatever came before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_prep.judgement import JudgementLayoutError, likelihood_layout
from data_prep.steps import SYSTEM_PROMPT
from inference.scoring.batching import BatchedPRMScorer, PRMInput

LIKELIHOOD_STYLE = "lm_likelihood"
"""The `prm_style` that loads a plain causal LM as this verifier."""


@dataclass(frozen=True)
class LikelihoodInput(PRMInput):
    """A solution in the verifier's prompt, with the token span of each step."""

    step_spans: tuple[tuple[int, int], ...] = ()
    """(first, last) token index of each step in `input_ids`, both inclusive."""


class LikelihoodScorer(BatchedPRMScorer):
    """Step score = the smallest next-token probability the LM gives any token of the step."""

    def __init__(self, model: Any, tokenizer: Any, *, system_prompt: str | None = SYSTEM_PROMPT, **kwargs: Any):
        super().__init__(model, tokenizer, **kwargs)
        self.system_prompt = system_prompt

    def build_input(self, problem: str, steps: Sequence[str]) -> LikelihoodInput:
        try:
            input_ids, spans = likelihood_layout(self.tokenizer, problem, steps, self.system_prompt)
        except JudgementLayoutError as error:
            raise ValueError(f"{self.name}: {error}") from None
        return LikelihoodInput(
            input_ids=tuple(input_ids),
            score_positions=tuple(last for _, last in spans),
            step_spans=tuple(spans),
        )

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        import torch

        # Every position's full distribution is needed (batch x length x vocab floats): max_tokens_per_batch bounds it.
        with torch.inference_mode():
            logits = self.model(**model_inputs).logits
            # Log-probability of each token given the tokens before it (position t predicts token t + 1).
            log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token_log_probs = log_probs.gather(-1, model_inputs["input_ids"][:, 1:, None])[..., 0]
        scores = []
        for row, prm_input in enumerate(batch):
            assert isinstance(prm_input, LikelihoodInput)
            scores.append([
                float(token_log_probs[row, first - 1: last].min().exp()) for first, last in prm_input.step_spans
            ])
        return scores
