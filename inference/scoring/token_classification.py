"""Token-classification PRM (what TRL's PRMTrainer trains): a class score on the last token of each step separator."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from data_prep.labels import tokenize_steps
from data_prep.steps import STEP_SEPARATOR
from inference.scoring.batching import BatchedPRMScorer, PRMInput
from inference.scoring.prefix_cache import (
    CachedSequence,
    PrefixKVCache,
    cache_keyword,
    check_causal,
    forward_with_prefixes,
    has_only_full_attention,
    probe_tolerance,
)

logger = logging.getLogger(__name__)

DEFAULT_PREFIX_CACHE_BYTES = 1 << 30
"""Keys and values of scored solutions kept for incremental scoring (1 GiB; 0 turns it off)."""


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
        self.prefix_cache = PrefixKVCache(prefix_cache_bytes)
        self._cache_keyword: str | None = None
        self._prefix_caching: bool | None = None if prefix_cache_bytes > 0 else False
        """None until the first batch decides (see `_use_prefix_cache`)."""

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

    def _use_prefix_cache(self, probe: PRMInput) -> bool:
        """Decided once: the model takes a cache, has only full attention, and scores a split sequence as a whole."""
        if self._prefix_caching is None:
            self._cache_keyword = cache_keyword(self.model)
            self._prefix_caching = False
            if self._cache_keyword is None or not has_only_full_attention(self.model.config):
                logger.info("%s: the model takes no key/value cache; every solution is scored whole", self.name)
            elif len(probe.input_ids) > 1:
                difference = check_causal(self.model, self._cache_keyword, self.pad_id, self.device, probe.input_ids)
                self._prefix_caching = difference <= probe_tolerance(self.model.dtype)
                if not self._prefix_caching:
                    logger.info(
                        "%s: a split forward differs from a full one by %.2g (not a causal model); every solution "
                        "is scored whole", self.name, difference,
                    )
            else:
                self._prefix_caching = None  # decide on a longer sequence
        return bool(self._prefix_caching)

    def _incremental_probabilities(self, batch: list[PRMInput]) -> list[list[float]]:
        """Scores from the cache where the whole sequence was scored before, else one forward over new tokens."""
        known: dict[tuple[int, ...], tuple[float, ...]] = {}
        todo: dict[tuple[int, ...], tuple[PRMInput, CachedSequence | None]] = {}
        for prm_input in batch:
            if prm_input.input_ids in known or prm_input.input_ids in todo:
                continue  # identical rows are scored once
            prefix = self.prefix_cache.longest_prefix(prm_input.input_ids, prm_input.score_positions)
            if prefix is not None and len(prefix.input_ids) == len(prm_input.input_ids):
                known[prm_input.input_ids] = prefix.step_scores
            else:
                todo[prm_input.input_ids] = (prm_input, prefix)
        if todo:
            rows = [(ids, prefix) for ids, (_, prefix) in todo.items()]
            outputs = forward_with_prefixes(self.model, str(self._cache_keyword), self.pad_id, self.device, rows)
            for (prm_input, prefix), (logits, keys, values) in zip(todo.values(), outputs, strict=True):
                start = len(prefix.input_ids) if prefix is not None else 0
                new_positions = [p - start for p in prm_input.score_positions if p >= start]
                earlier = prefix.step_scores if prefix is not None else ()
                step_scores = earlier + tuple(self._probabilities(logits[new_positions]))
                known[prm_input.input_ids] = step_scores
                self.prefix_cache.put(
                    CachedSequence(prm_input.input_ids, prm_input.score_positions, step_scores, keys, values)
                )
        return [list(known[prm_input.input_ids]) for prm_input in batch]
