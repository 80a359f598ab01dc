"""Adaptive majority vote (Aggarwal et al. 2023, adaptive-consistency): sample in rounds, stop once the vote is settled.

Every problem draws `round_size` full solutions per round (one generate call per round for all problems still
sampling, and with `weighted` one PRM call). After each round the votes of the two leading answer groups,
a (first) and b (second; 0 when there is only one), give the Beta stopping rule: with a Beta(prior, prior)
prior on the leading answer's share of the two, the posterior probability that the leader is the majority is
P = P(X > 1/2) for X ~ Beta(a + prior, b + prior). A problem stops once P >= `threshold` or it drew `n`
samples. Votes count 1 per answered sample, or its agg_score with `weighted` (the PRM-weighted variant).
The answer is the final vote's leader (`majority_answer`, or the weighted total with `weighted`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from scipy.special import betainc

from data_prep.grading import group_equivalent
from data_prep.records import Problem
from inference.strategies.common import Ledger, SamplingSettings, call_seed, make_row, require, sample_solutions
from inference.strategies.selection import heaviest_answer
from inference.types import Generator, PRMScorer, ResultRow, ScoredCompletion

logger = logging.getLogger(__name__)

NAME = "adaptive_majority"


@dataclass(frozen=True)
class Settings(SamplingSettings):
    """Adaptive-majority settings: at most n samples per problem, drawn round_size at a time."""

    round_size: int = 4
    """Samples per problem per round; n must be a multiple of it."""
    threshold: float = 0.95
    """Stop once the posterior probability that the leading answer is the majority reaches this (the paper: 0.95)."""
    prior: float = 1.0
    """Beta(prior, prior) prior of the leading answer's share against the runner-up (1.0: uniform)."""
    weighted: bool = False
    """Votes weighted by the PRM's agg_score (scores every round's samples); False needs no PRM."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.round_size, int) and self.round_size >= 1,
                f"round_size must be an integer >= 1, got {self.round_size!r}; e.g. round_size: 4")
        require(self.n % self.round_size == 0,
                f"n={self.n} is not a multiple of round_size={self.round_size}; use a multiple of round_size "
                f"(e.g. n={max(self.round_size, self.n - self.n % self.round_size)}) or a smaller round_size")
        require(0 < self.threshold < 1, f"threshold must be in (0, 1), got {self.threshold!r}; the paper uses 0.95")
        require(self.prior > 0, f"prior must be > 0, got {self.prior!r}; 1.0 is the uniform prior")


def vote_totals(completions: Sequence[ScoredCompletion], weighted: bool) -> list[float]:
    """Votes of each answer group (equivalent answers are one group), largest first; unanswered samples abstain."""
    totals: dict[int, float] = {}
    for completion, group in zip(completions, group_equivalent([c.answer for c in completions])):
        if group is not None:
            totals[group] = totals.get(group, 0.0) + ((completion.agg_score or 0.0) if weighted else 1.0)
    return sorted(totals.values(), reverse=True)


def majority_probability(first: float, second: float, prior: float) -> float:
    """P(X > 1/2) for X ~ Beta(first + prior, second + prior): the leader's posterior chance of being the majority."""
    return float(1.0 - betainc(first + prior, second + prior, 0.5))


def settled(completions: Sequence[ScoredCompletion], settings: Settings) -> bool:
    """Whether the Beta stopping rule stops a problem with these samples."""
    totals = vote_totals(completions, settings.weighted) + [0.0, 0.0]
    if totals[0] == 0:
        return False
    return majority_probability(totals[0], totals[1], settings.prior) >= settings.threshold


def run(problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings) -> list[ResultRow]:
    """Rounds of `round_size` samples for the problems still unsettled; one ResultRow per problem."""
    ledger = Ledger(problems, generator, scorer if settings.weighted else None)
    drawn: list[list[ScoredCompletion]] = [[] for _ in problems]
    live = list(range(len(problems)))
    rounds = 0
    while live:
        # Each round is its own sampling call with its own seed (call 0 is the plain majority's seed).
        samples = sample_solutions(ledger, _round(settings, rounds), score=settings.weighted, owners=live)
        for index, found in zip(live, samples):
            drawn[index].extend(found)
        rounds += 1
        live = [i for i in live if len(drawn[i]) < settings.n and not settled(drawn[i], settings)]
    logger.info("adaptive majority: %d problems, %.1f samples per problem (cap %d)", len(problems),
                sum(map(len, drawn)) / max(1, len(problems)), settings.n)
    rows = []
    for index, (problem, completions) in enumerate(zip(problems, drawn)):
        weights = [(c.agg_score or 0.0) if settings.weighted else 1.0 for c in completions]
        pred = heaviest_answer([c.answer for c in completions], weights)
        rows.append(make_row(problem, NAME, settings, completions, pred, ledger.compute[index],
                             policy=generator.name, prm=scorer.name if settings.weighted else ""))
    return rows


def _round(settings: Settings, index: int) -> Settings:
    """The settings of sampling round `index`: round_size samples with that round's call seed."""
    return replace(settings, n=settings.round_size, seed=call_seed(settings.seed, index))
