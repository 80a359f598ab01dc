"""Token-classification PRM (what TRL's PRMTrainer trains): a class score on the last token of each step separator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.labels import tokenize_steps
from data_prep.steps import STEP_SEPARATOR
from inference.scoring.batching import BatchedPRMScorer, PRMInput


def build_prm_input_ids(
    tokenizer: Any, prompt: str, steps: Sequence[str], separator: str = STEP_SEPARATOR
) -> tuple[list[int], list[int]]:
    """(input_ids, score_positions) laid out exactly as TRL's `PRMTrainer.tokenize_row` does at training time.

    `[bos] + prompt + (step_1 + sep) + (step_2 + sep) + ...`, each piece tokenized on its own without special
    tokens; step i is scored at the last token of the separator after it. The prompt is the raw problem text.
    """
    tokens = tokenize_steps(tokenizer, prompt, list(steps), separator=separator)
    return tokens.input_ids, tokens.step_positions


class TokenClassificationScorer(BatchedPRMScorer):
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
    ) -> None:
        super().__init__(model, tokenizer, path=path, device=device, max_tokens_per_batch=max_tokens_per_batch)
        self.step_separator = step_separator
        self.num_labels = int(model.config.num_labels)
        if self.num_labels > 1 and not 0 <= positive_label < self.num_labels:
            raise ValueError(
                f"positive_label={positive_label} is not a class of this {self.num_labels}-label head; "
                f"set positive_label in {path}/ttc_prm.json to 0..{self.num_labels - 1}"
            )
        self.positive_label = positive_label

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        input_ids, positions = build_prm_input_ids(self.tokenizer, problem, steps, self.step_separator)
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        import torch

        with torch.inference_mode():
            logits = self.model(**model_inputs).logits.float()
        scores = []
        for row, prm_input in enumerate(batch):
            at_steps = logits[row, list(prm_input.score_positions)]
            if self.num_labels == 1:
                probabilities = torch.sigmoid(at_steps[:, 0])
            else:
                probabilities = torch.softmax(at_steps, dim=-1)[:, self.positive_label]
            scores.append(probabilities.tolist())
        return scores
