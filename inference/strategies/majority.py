"""Majority vote (self-consistency): sample N solutions and answer with the most frequent equivalent answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from data_prep.records import Problem
from inference.strategies.common import Ledger, SamplingSettings, make_row, sample_solutions
from inference.strategies.selection import majority_answer
from inference.types import Generator, PRMScorer, ResultRow

logger = logging.getLogger(__name__)

NAME = "majority"


@dataclass(frozen=True)
class Settings(SamplingSettings):
    """Majority-vote settings."""

    score_with_prm: bool = True
    """Score the samples with the PRM anyway (the vote ignores the scores), so evaluation can re-select the
    same samples with (weighted) Best-of-N; False skips the PRM and leaves agg_score None."""


def run(problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings) -> list[ResultRow]:
    """One generate call of N full solutions per problem, an optional PRM call, and a vote per problem."""
    ledger = Ledger(problems, generator, scorer if settings.score_with_prm else None)
    solutions = sample_solutions(ledger, settings, score=settings.score_with_prm)
    logger.info("majority: %d problems x %d samples", len(problems), settings.n)
    return [
        make_row(
            problem,
            NAME,
            settings,
            completions,
            majority_answer([c.answer for c in completions]),
            ledger.compute[index],
            policy=generator.name,
            prm=scorer.name if settings.score_with_prm else "",
        )
        for index, (problem, completions) in enumerate(zip(problems, solutions))
    ]
