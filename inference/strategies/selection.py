"""Pure answer selection over sampled solutions: majority vote, best score, weighted Best-of-N.

Strategies and the evaluation code (which re-selects on subsamples of stored completions) share these.
Answers are grouped by mathematical equivalence (`data_prep.grading.group_equivalent`); solutions without
a final answer never win. Tie rule, everywhere: among exactly tied candidates, the one that comes first in
the input wins (for groups: the group whose first member comes first). The returned answer is the text of
the winning group's first member (or of the winning solution).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from data_prep.grading import group_equivalent
from inference.types import ScoredCompletion

FinalSelection = Literal["weighted", "best"]
"""How tree search picks its answer among its final solutions: weighted Best-of-N or the best score."""


def _scores(completions: Sequence[ScoredCompletion]) -> list[float]:
    """agg_score of each completion that has an answer (0.0 placeholder for those without, never used)."""
    for index, completion in enumerate(completions):
        if completion.answer is not None and completion.agg_score is None:
            raise ValueError(
                f"completion {index} (answer {completion.answer!r}) has no PRM score; score the samples with the PRM "
                "(majority: score_with_prm=True) before selecting by score"
            )
    return [c.agg_score if c.answer is not None and c.agg_score is not None else 0.0 for c in completions]


def _heaviest_group(answers: Sequence[str | None], weights: Sequence[float]) -> str | None:
    """First member of the equivalence group with the largest total weight; earliest group wins exact ties."""
    totals: dict[int, float] = {}
    first: dict[int, int] = {}
    for index, (group, weight) in enumerate(zip(group_equivalent(list(answers)), weights)):
        if group is None:
            continue
        totals[group] = totals.get(group, 0.0) + weight
        first.setdefault(group, index)
    if not totals:
        return None
    winner = max(totals, key=lambda group: (totals[group], -first[group]))
    return answers[first[winner]]


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer, equivalent answers counted as one; None when no answer is given.

    Ties: the tied group whose first member comes first in `answers` wins.
    """
    return _heaviest_group(answers, [1.0] * len(answers))


def heaviest_answer(answers: Sequence[str | None], weights: Sequence[float]) -> str | None:
    """The answer whose equivalence group has the largest total of `weights` (one per answer); same tie rule.

    Strategies with their own weights (particle filtering's particle weights, adaptive majority's votes) use it.
    """
    if len(answers) != len(weights):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights; pass one weight per answer")
    return _heaviest_group(answers, weights)


def weighted_answer(completions: Sequence[ScoredCompletion]) -> str | None:
    """Weighted Best-of-N: the answer whose equivalence group has the largest sum of agg_score.

    Ties (exactly equal sums): the tied group whose first member comes first wins. None when no completion
    has an answer.
    """
    return _heaviest_group([c.answer for c in completions], _scores(completions))


def best_answer(completions: Sequence[ScoredCompletion]) -> str | None:
    """Naive Best-of-N: the answer of the highest-agg_score completion among those that have an answer.

    Ties: the first of the tied completions wins. None when no completion has an answer.
    """
    scores = _scores(completions)
    candidates = [i for i, c in enumerate(completions) if c.answer is not None]
    if not candidates:
        return None
    winner = max(candidates, key=lambda i: (scores[i], -i))
    return completions[winner].answer


def select_answer(completions: Sequence[ScoredCompletion], how: FinalSelection) -> str | None:
    """`weighted_answer` or `best_answer`, by name."""
    if how == "weighted":
        return weighted_answer(completions)
    if how == "best":
        return best_answer(completions)
    raise ValueError(f"unknown final selection {how!r}; use 'weighted' or 'best'")
