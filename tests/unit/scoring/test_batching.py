"""Token-budget batching: padded size per batch within budget, longest first, oversized pairs alone."""

from __future__ import annotations

import pytest

from inference.scoring.batching import token_budget_batches


@pytest.mark.parametrize(
    ("lengths", "budget", "expected"),
    [
        ([10, 30, 20], 60, [[1, 2], [0]]),  # 2 x 30 = 60 fits; adding the 10 would make 3 x 30 = 90
        ([10, 30, 20], 100, [[1, 2, 0]]),
        ([5, 5, 5, 5], 10, [[0, 1], [2, 3]]),  # ties keep input order
        ([50, 8], 40, [[0], [1]]),  # longer than the budget: a batch of its own
        ([], 10, []),
    ],
)
def test_token_budget_batches(lengths, budget, expected):
    assert token_budget_batches(lengths, budget) == expected


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="max_tokens_per_batch must be >= 1, got 0"):
        token_budget_batches([3], 0)
