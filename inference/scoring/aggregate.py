"""Aggregation of a solution's per-step PRM scores into one solution score (last, min, prod or mean)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import get_args

from inference.types import Aggregation

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
"""The aggregations `aggregate` knows: `last` (the reference default), `min`, `prod`, `mean` (RLHFlow's best-of-N)."""


def check_aggregation(how: str) -> None:
    """Raise ValueError naming the known aggregations when `how` is not one of them."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; use one of {', '.join(AGGREGATIONS)}")


def aggregate(step_scores: Sequence[float], how: Aggregation) -> float:
    """One score for a solution from its step scores: the last one, the minimum, the product or the mean."""
    check_aggregation(how)
    if len(step_scores) == 0:
        raise ValueError(f"cannot aggregate ({how}) an empty list of step scores; a solution needs at least one step")
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "mean":
        return float(math.fsum(step_scores) / len(step_scores))
    return float(math.prod(step_scores))
