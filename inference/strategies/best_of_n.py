"""Best-of-N: sample N solutions, score them with the PRM, answer with the best one (naive) or best group (weighted)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from data_prep.records import Problem
from inference.strategies.common import Ledger, SamplingSettings, make_row, sample_solutions
from inference.strategies.selection import best_answer, weighted_answer
from inference.types import Generator, PRMScorer, ResultRow, ScoredCompletion

logger = logging.getLogger(__name__)

NAME = "best_of_n"
WEIGHTED_NAME = "weighted_best_of_n"


@dataclass(frozen=True)
class Settings(SamplingSettings):
    """Best-of-N settings (naive and weighted share them)."""


def _run(
    name: str,
    select: Callable[[Sequence[ScoredCompletion]], str | None],
    problems: list[Problem],
    generator: Generator,
    scorer: PRMScorer,
    settings: Settings,
) -> list[ResultRow]:
    ledger = Ledger(problems, generator, scorer)
    solutions = sample_solutions(ledger, settings, score=True)
    logger.info("%s: %d problems x %d samples", name, len(problems), settings.n)
    return [
        make_row(
            problem, name, settings, completions, select(completions), ledger.compute[index],
            policy=generator.name, prm=scorer.name,
        )
        for index, (problem, completions) in enumerate(zip(problems, solutions))
    ]


def run(problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings) -> list[ResultRow]:
    """Naive Best-of-N: the answer of the highest-scoring solution (`best_answer`)."""
    return _run(NAME, best_answer, problems, generator, scorer, settings)


def run_weighted(
    problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings
) -> list[ResultRow]:
    """Weighted Best-of-N: the answer whose equivalence group has the largest score sum (`weighted_answer`)."""
    return _run(WEIGHTED_NAME, weighted_answer, problems, generator, scorer, settings)
