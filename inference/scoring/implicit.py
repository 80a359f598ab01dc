"""Implicit PRM scorer (Yuan et al. 2024): step reward = beta * sum over the step's tokens of log P_model - log P_ref."""

from __future__ import annotations

from typing import Any

from inference.scoring.batching import PRMInput
from inference.scoring.likelihood import LikelihoodInput, LikelihoodScorer


class ImplicitPRMScorer(LikelihoodScorer):
    """Step score = sigmoid(beta * sum over the step's tokens of (log P_model(token) - log P_reference(token))),
    both models reading the solution after the policy's prompt, as `train_prm.py` trained it.

    Incremental by default, as the likelihood scorer it extends: both models run only a solution's tokens after
    its longest scored prefix, each from its own cached keys and values.
    """

    def __init__(self, model: Any, tokenizer: Any, *, reference: Any, beta: float, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        if beta <= 0:
            raise ValueError(f"{self.name}: beta must be > 0, got {beta}")
        self.reference = reference.to(self.device).eval()
        self.beta = beta
        # Both models run every scored token, so FLOPs per forward token count both.
        self.num_parameters += int(reference.num_parameters())

    def _token_log_probs(self, model: Any, model_inputs: dict[str, Any]) -> Any:
        import torch

        logits = model(**model_inputs).logits[:, :-1].float()
        return torch.log_softmax(logits, dim=-1).gather(-1, model_inputs["input_ids"][:, 1:, None])[..., 0]

    def _cached_modules(self) -> tuple[Any, ...]:
        return (self.model.get_decoder(), self.reference.get_decoder())

    def _new_step_scores(self, prm_input: Any, start: int, outputs: Any) -> list[float]:
        import torch

        assert isinstance(prm_input, LikelihoodInput)
        spans = [span for span in prm_input.step_spans if span[1] >= start]
        if not spans:
            return []
        hidden, reference_hidden = outputs
        with torch.inference_mode():
            log_probs = torch.log_softmax(self.model.get_output_embeddings()(hidden).float(), dim=-1)
            reference = torch.log_softmax(self.reference.get_output_embeddings()(reference_hidden).float(), dim=-1)
            ids = torch.as_tensor(prm_input.input_ids, device=log_probs.device)
            rewards = []
            for first, last in spans:
                # Row t - 1 - start holds the prediction of token t.
                rows = torch.arange(first - 1, last, device=log_probs.device) - start
                tokens = ids[first: last + 1]
                rewards.append(self.beta * (log_probs[rows, tokens] - reference[rows, tokens]).sum())
            return torch.sigmoid(torch.stack(rewards)).tolist()

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        import torch

        if self._use_prefix_cache(batch[0]):
            return self._incremental_probabilities(batch)
        with torch.inference_mode():
            # Position t - 1 holds the log-probability of token t.
            log_ratio = self._token_log_probs(self.model, model_inputs) - self._token_log_probs(self.reference,
                                                                                                model_inputs)
        scores = []
        for row, prm_input in enumerate(batch):
            assert isinstance(prm_input, LikelihoodInput)
            rewards = torch.stack([self.beta * log_ratio[row, first - 1: last].sum()
                                   for first, last in prm_input.step_spans])
            scores.append(torch.sigmoid(rewards).tolist())
        return scores
