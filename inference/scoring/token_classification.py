"""Token-classification PRM (what TRL's PRMTrainer trains): a class score on the last token of each step separator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.labels import tokenize_steps
from data_prep.steps import STEP_SEPARATOR
from inference.scoring.batching import BatchedPRMScorer, PRMInput
from inference.scoring.prefix_cache import DEFAULT_PREFIX_CACHE_BYTES, PrefixCachedScoring


def build_prm_input_ids(
    tokenizer: Any, prompt: str, steps: Sequence[str], separator: str = STEP_SEPARATOR
) -> tuple[list[int], list[int]]:
    """(input_ids, score_positions) laid out exactly as TRL's `PRMTrainer.tokenize_row` does at training time.

    `[bos] + prompt + (step_1 + sep) + (step_2 + sep) + ...`, each piece tokenized on its own without special
    tokens; step i is scored at the last token of the separator after it. The prompt is the raw problem text.
    """
    tokens = tokenize_steps(tokenizer, prompt, list(steps), separator=separator)
    return tokens.input_ids, tokens.step_positions


class TokenClassificationScorer(PrefixCachedScoring, BatchedPRMScorer):
    """Score = softmax(logits)[positive_label] at each step's position (sigmoid for a one-logit head)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        path: str,
        device: Any,
        max_tokens_per_batch: int,
        step_separator: str = STEP_SEPARATOR,
        positive_label: int = 1,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
    ) -> None:
        """prefix_cache_bytes: memory (on the PRM's device) for the keys and values of scored solutions, so a
        solution that extends one scored before is scored by a forward over its new tokens only (decoder-only
        PRMs; checked once on the model, see `inference.scoring.prefix_cache`). 0 turns it off."""
        super().__init__(model, tokenizer, path=path, device=device, max_tokens_per_batch=max_tokens_per_batch)
        self.step_separator = step_separator
        self.num_labels = int(model.config.num_labels)
        if self.num_labels > 1 and not 0 <= positive_label < self.num_labels:
            raise ValueError(
                f"positive_label={positive_label} is not a class of this {self.num_labels}-label head; "
                f"set positive_label in {path}/ttc_prm.json to 0..{self.num_labels - 1}"
            )
        self.positive_label = positive_label
        self._init_prefix_cache(prefix_cache_bytes)

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        input_ids, positions = build_prm_input_ids(self.tokenizer, problem, steps, self.step_separator)
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))

    def _probabilities(self, at_steps: Any) -> list[float]:
        """Positive-class probability of each row of step logits (steps x labels)."""
        import torch

        if self.num_labels == 1:
            return torch.sigmoid(at_steps[:, 0]).tolist()
        return torch.softmax(at_steps, dim=-1)[:, self.positive_label].tolist()

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        import torch

        if self._use_prefix_cache(batch[0]):
            return self._incremental_probabilities(batch)
        with torch.inference_mode():
            logits = self.model(**model_inputs).logits.float()
        return [self._probabilities(logits[row, list(x.score_positions)]) for row, x in enumerate(batch)]

    def _new_step_scores(self, prm_input: PRMInput, start: int, outputs: Any) -> list[float]:
        # A step's score is read at its own position, so every step ending at or after `start` is new.
        return self._probabilities(outputs[[p - start for p in prm_input.score_positions if p >= start]])
