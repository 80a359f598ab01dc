"""Token draws of the policy's decode loop that depend on each sample's own key, not on the batch it was decoded in.

Each sampled row (the `sample`-th completion of a request) gets its own stream of uniforms, seeded by the call's
seed, its prompt's token ids, the prompt's occurrence in the call (an earlier request with the same prompt is
occurrence 0) and the sample number. At step t the row's token is the inverse of the cumulative distribution of the
warped probabilities at its t-th uniform. So a sample does not change with the batch size, with the other requests
of the call, their order, or which rows finished first (a smaller batch after running out of memory draws the same
samples), which is what `inference.samples` keys stored samples by; and a draw costs one uniform per row instead of
`torch.multinomial`'s one exponential per vocabulary entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any


def prompt_occurrences(prompts: Sequence[Sequence[int]]) -> list[int]:
    """Per prompt, how many earlier prompts of the list have the same token ids."""
    seen: dict[tuple[int, ...], int] = {}
    occurrences = []
    for ids in prompts:
        key = tuple(ids)
        occurrences.append(seen.get(key, 0))
        seen[key] = occurrences[-1] + 1
    return occurrences


def request_keys(seed: int, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """Per prompt of a call, the key its samples' streams start from: the call's seed, a hash of the prompt's token
    ids, and the prompt's occurrence in the call."""
    import numpy as np

    return [[seed % 2**63, int.from_bytes(hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(),
                                                         digest_size=8).digest(), "little"), occurrence]
            for ids, occurrence in zip(prompts, prompt_occurrences(prompts), strict=True)]


def row_uniforms(keys: Sequence[Sequence[int]], rows: Sequence[tuple[int, int]], steps: int) -> Any:
    """A float64 [len(rows), steps] tensor: row (request index, sample number)'s uniforms in [0, 1) for steps 0...,
    from its request's key (`request_keys`) and its sample number."""
    import numpy as np
    import torch

    table = np.empty((len(rows), steps), dtype=np.float64)
    for row, (index, sample) in enumerate(rows):
        table[row] = np.random.default_rng([*keys[index], sample]).random(steps)
    return torch.from_numpy(table)


def draw_tokens(probabilities: Any, uniforms: Any) -> Any:
    """Per row of `probabilities` ([rows, vocabulary]), the token whose cumulative-probability interval holds the
    row's uniform (scaled by the row's total, so unnormalized weights work); tokens of probability 0 are never drawn.
    """
    import torch

    weights = probabilities.to(torch.float64)
    cumulative = weights.cumsum(dim=-1)
    targets = uniforms.to(device=weights.device, dtype=torch.float64) * cumulative[:, -1]
    tokens = torch.searchsorted(cumulative, targets[:, None], right=True).squeeze(1)
    # A target rounded up to the total lands past the last token: take the last one of nonzero probability.
    past_end = tokens >= weights.shape[-1]
    if bool(past_end.any()):
        vocabulary = torch.arange(weights.shape[-1], device=weights.device)
        last_possible = torch.where(weights[past_end] > 0, vocabulary, 0).amax(dim=-1)
        tokens[past_end] = last_possible
    return tokens
