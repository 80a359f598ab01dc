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
from inference.scoring.prefix_cache import DEFAULT_PREFIX_CACHE_BYTES, PrefixCachedScoring

LIKELIHOOD_STYLE = "lm_likelihood"
"""The `prm_style` that loads a plain causal LM as this verifier."""


@dataclass(frozen=True)
class LikelihoodInput(PRMInput):
    """A solution in the verifier's prompt, with the token span of each step."""

    step_spans: tuple[tuple[int, int], ...] = ()
    """(first, last) token index of each step in `input_ids`, both inclusive."""


class LikelihoodScorer(PrefixCachedScoring, BatchedPRMScorer):
    """Step score = the smallest next-token probability the LM gives any token of the step.

    Incremental by default: a solution that extends one scored before (a beam one step further) runs only its new
    tokens through the LM, from the earlier one's keys and values (`inference.scoring.prefix_cache`).
    """

    def __init__(self, model: Any, tokenizer: Any, *, system_prompt: str | None = SYSTEM_PROMPT,
                 prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES, **kwargs: Any):
        super().__init__(model, tokenizer, **kwargs)
        self.system_prompt = system_prompt
        self._init_prefix_cache(prefix_cache_bytes)

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

    def scores_from(self, min_log_probs: Any, end_hidden: Any) -> list[float]:
        """Step scores from each step's smallest token log-probability and the LM's last hidden state at its end."""
        return min_log_probs.exp().tolist()

    def _cached_module(self) -> Any:
        # The decoder's hidden states serve both the token probabilities (through the LM head) and a head over them.
        return self.model.get_decoder()

    def _prefix_usable(self, prm_input: Any, prefix: Any) -> bool:
        # Token t's probability is read at position t - 1: each new step's first token must follow a new token.
        start = len(prefix.input_ids)
        return all(first - 1 >= start for first, last in prm_input.step_spans if last >= start)

    def _read_steps(self, input_ids: Any, hidden: Any, spans: Sequence[tuple[int, int]], start: int) -> list[float]:
        """Scores of `spans` from `hidden`, the decoder's states of the tokens from index `start` of `input_ids`."""
        import torch

        if not spans:
            return []
        with torch.inference_mode():
            logits = self.model.get_output_embeddings()(hidden).float()
            log_probs = torch.log_softmax(logits, dim=-1)
            ids = torch.as_tensor(input_ids, device=log_probs.device)
            minimum = torch.stack([
                log_probs[torch.arange(first - 1, last, device=log_probs.device) - start, ids[first: last + 1]].min()
                for first, last in spans
            ])
            ends = torch.tensor([last - start for _, last in spans], device=hidden.device)
            return self.scores_from(minimum, hidden[ends].float())

    def _new_step_scores(self, prm_input: Any, start: int, outputs: Any) -> list[float]:
        assert isinstance(prm_input, LikelihoodInput)
        return self._read_steps(prm_input.input_ids, outputs, [s for s in prm_input.step_spans if s[1] >= start],
                                start)

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        import torch

        if self._use_prefix_cache(batch[0]):
            return self._incremental_probabilities(batch)
        # Every position's full distribution is needed (batch x length x vocab floats): max_tokens_per_batch bounds it.
        with torch.inference_mode():
            hidden = self._cached_module()(**model_inputs).last_hidden_state
        scores = []
        for row, prm_input in enumerate(batch):
            assert isinstance(prm_input, LikelihoodInput)
            scores.append(self._read_steps(prm_input.input_ids, hidden[row], prm_input.step_spans, 0))
        return scores
