"""Token-budget batching and the forward loop shared by every PRM scorer style."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.memory import halve_on_oom
from inference.types import PRMScore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PRMInput:
    """One (problem, steps) pair as the PRM sees it."""

    input_ids: tuple[int, ...]
    score_positions: tuple[int, ...]
    """Index in `input_ids` whose output scores each step, one per step in step order."""


def token_budget_batches(lengths: Sequence[int], max_tokens_per_batch: int) -> list[list[int]]:
    """Group indices into batches whose padded size (rows x longest row) fits the budget.

    Longest first, so each batch holds similar lengths; a sequence longer than the budget gets a batch of its own.
    """
    if max_tokens_per_batch < 1:
        raise ValueError(f"max_tokens_per_batch must be >= 1, got {max_tokens_per_batch}")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    for index in order:
        # The first index of a batch is its longest, so the padded size is rows x that length.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens_per_batch:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def checked_inputs(problems: Sequence[str], step_lists: Sequence[Sequence[str]],
                   build: Callable[[str, Sequence[str]], PRMInput], max_length: int | None) -> list[PRMInput]:
    """The PRM input of each (problem, steps) pair, built by `build`: ValueError for mismatched lists, a pair without
    steps or one longer than `max_length` (the PRM's context), naming the pair."""
    if len(problems) != len(step_lists):
        raise ValueError(f"{len(problems)} problems but {len(step_lists)} step lists; pass one step list per problem")
    inputs = []
    for index, (problem, steps) in enumerate(zip(problems, step_lists, strict=True)):
        if not steps:
            raise ValueError(f"pair {index} has no steps; a PRM scores at least one step")
        prm_input = build(problem, steps)
        if len(prm_input.score_positions) != len(steps):
            raise RuntimeError(f"pair {index}: {len(prm_input.score_positions)} score positions for {len(steps)} steps")
        if max_length is not None and len(prm_input.input_ids) > max_length:
            raise ValueError(
                f"pair {index} is {len(prm_input.input_ids)} tokens, longer than the PRM's context "
                f"({max_length}); shorten the solution (max_tokens) or use a longer-context PRM"
            )
        inputs.append(prm_input)
    return inputs


class BatchedPRMScorer:
    """The `PRMScorer` loop: build inputs, batch by token budget, one forward per batch, scores in input order.

    Subclasses implement `build_input` (the style's text layout) and `step_probabilities` (the style's head).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        path: str,
        device: Any,
        max_tokens_per_batch: int,
    ) -> None:
        if max_tokens_per_batch < 1:
            raise ValueError(f"max_tokens_per_batch must be >= 1, got {max_tokens_per_batch}")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_tokens_per_batch = max_tokens_per_batch
        self.name = Path(str(path).rstrip("/")).name
        self.num_parameters = int(model.num_parameters())
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # Right padding is masked out and never read, so any id works when the tokenizer has no pad token.
        self.pad_id = pad_id if pad_id is not None else 0
        self.max_length: int | None = getattr(model.config, "max_position_embeddings", None)
        self.forward_passes = 0
        """Model forward passes made so far (one per token-budget batch)."""
        self.forward_tokens = 0
        """Tokens run through the model so far (padding excluded; fewer than scored where a cache served)."""
        self._batch_forward_tokens: list[int] | None = None
        """Set by a `step_probabilities` that runs fewer tokens than each row's (a prefix cache): per row of the
        batch, the tokens it ran. None: every row ran whole."""

    def build_input(self, problem: str, steps: Sequence[str]) -> PRMInput:
        raise NotImplementedError

    def step_probabilities(self, model_inputs: dict[str, Any], batch: list[PRMInput]) -> list[list[float]]:
        raise NotImplementedError

    def score(self, problems: list[str], step_lists: list[list[str]]) -> list[PRMScore]:
        """Per-step scores in [0, 1] for each (problem, steps) pair, in input order."""
        inputs = checked_inputs(problems, step_lists, self.build_input, self.max_length)
        results: list[PRMScore | None] = [None] * len(inputs)
        for batch_indices in token_budget_batches([len(x.input_ids) for x in inputs], self.max_tokens_per_batch):
            longest = max(len(inputs[index].input_ids) for index in batch_indices)

            def attempt(budget: int, batch_indices: list[int] = batch_indices) -> None:
                # Within a smaller budget the batch splits into several forward passes.
                for sub in token_budget_batches([len(inputs[i].input_ids) for i in batch_indices], budget):
                    batch = [inputs[batch_indices[i]] for i in sub]
                    self._batch_forward_tokens = None
                    probabilities = self.step_probabilities(self._collate(batch), batch)
                    self.forward_passes += 1
                    ran = self._batch_forward_tokens or [len(prm_input.input_ids) for prm_input in batch]
                    self.forward_tokens += sum(ran)
                    for i, prm_input, scores, tokens in zip(sub, batch, probabilities, ran, strict=True):
                        results[batch_indices[i]] = PRMScore(step_scores=tuple(scores),
                                                             num_tokens=len(prm_input.input_ids), forward_tokens=tokens)

            # Out of memory halves the token budget for this and later batches, down to one sequence per pass.
            _, self.max_tokens_per_batch = halve_on_oom(
                attempt, self.max_tokens_per_batch, smallest=min(longest, self.max_tokens_per_batch),
                what=f"PRM {self.name}: score", knob="prm.max_tokens_per_batch")
        return [result for result in results if result is not None]

    def _collate(self, batch: list[PRMInput]) -> dict[str, Any]:
        import torch

        width = max(len(x.input_ids) for x in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prm_input in enumerate(batch):
            input_ids[row, : len(prm_input.input_ids)] = torch.tensor(prm_input.input_ids, dtype=torch.long)
            attention_mask[row, : len(prm_input.input_ids)] = 1
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
