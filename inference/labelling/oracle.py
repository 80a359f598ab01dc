"""Oracle step labels of a sampled solution (synthetic world only): True before the first wrong step, False from it on."""

from __future__ import annotations

from collections.abc import Sequence

from data_prep.labels import oracle_labels
from data_prep.records import Problem


def oracle_step_labels(problem: Problem, steps: Sequence[str]) -> list[bool]:
    """The exact checker's labels of `steps`; a problem outside the synthetic world is an error naming it."""
    try:
        return oracle_labels(problem, steps)
    except ValueError as error:
        raise ValueError(f"problem {problem.id!r}: the oracle labels synthetic-world problems only ({error})") from None


__all__ = ["oracle_step_labels"]
