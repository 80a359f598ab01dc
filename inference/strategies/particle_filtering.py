"""Particle filtering over steps (Puri et al. 2025): N weighted partial solutions, resampled by their PRM scores.

Iteration 0 samples N first steps per problem in one request (the N particles); each later iteration extends
every particle that has not ended by one step. All problems advance together: one generate call and one PRM
call per iteration. A particle's weight is the softmax over its problem's particles of logit(score) / T, the
score being its prefix's aggregated step scores (`aggregation`, last step by default) and T `weight_temperature`:
the PRM's score estimates the chance the prefix leads to a correct answer, as in the paper (and its_hub). After
each iteration, a problem whose effective sample size 1 / sum(w^2) falls below `ess_threshold` x N is resampled:
N particles drawn with replacement by weight (multinomial, or systematic: one uniform draw, N evenly spaced
points), from a stream seeded by the run's seed and the problem id, so a row does not depend on chunking or
sharding. Particles that ended (final answer, end of sequence, max_step_tokens, empty step) stay in the
population with their last weight and can be drawn again; they are not extended. The search stops once every
particle ended or after `max_iterations`.

The answer: the equivalence group with the largest total particle weight (`final_selection: weighted`), or the
answer of the heaviest particle (`best`). Completions are the N final particles, duplicates included.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from data_prep.records import Problem
from inference.scoring.aggregate import aggregate
from inference.strategies.common import Ledger, StrategySettings, make_row, require
from inference.strategies.selection import FinalSelection, heaviest_answer
from inference.strategies.tree import Partial, expand, to_completion
from inference.types import Generator, PRMScorer, ResultRow

logger = logging.getLogger(__name__)

NAME = "particle_filtering"
Resampling = Literal["multinomial", "systematic"]
SCORE_CLIP = 1e-6
"""Scores are clipped to [SCORE_CLIP, 1 - SCORE_CLIP] before the logit, so exact 0/1 scores give finite weights."""


@dataclass(frozen=True)
class Settings(StrategySettings):
    """Particle-filtering settings: n particles per problem."""

    weight_temperature: float = 1.0
    """T in softmax(logit(score) / T): below 1 sharpens the weights towards the best-scored particles."""
    resampling: Resampling = "systematic"
    """How particles are redrawn: `multinomial` (N independent draws) or `systematic` (lower variance)."""
    ess_threshold: float = 1.0
    """Resample a problem when its effective sample size / N falls below this: 1.0 (the paper's and its_hub's
    every-step resampling) whenever the weights are not all equal, 0.5 the classic adaptive rule, 0 never."""
    max_step_tokens: int = 512
    """Most new tokens per step; a step cut at this length ends its particle."""
    max_iterations: int = 40
    """Most extension rounds (steps per particle)."""
    final_selection: FinalSelection = "weighted"
    """How the answer is chosen among the final particles: total particle weight per answer, or the heaviest."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            isinstance(self.weight_temperature, (int, float)) and self.weight_temperature > 0,
            f"weight_temperature must be > 0, got {self.weight_temperature!r}; the paper uses 1.0",
        )
        require(
            self.resampling in ("multinomial", "systematic"),
            f"resampling must be 'multinomial' or 'systematic', got {self.resampling!r}",
        )
        require(
            isinstance(self.ess_threshold, (int, float)) and 0 <= self.ess_threshold <= 1,
            f"ess_threshold must be in [0, 1], got {self.ess_threshold!r}; 1.0 resamples every step, 0.5 adaptively",
        )
        require(self.max_step_tokens >= 1, f"max_step_tokens must be >= 1, got {self.max_step_tokens}; e.g. 512")
        require(self.max_iterations >= 1, f"max_iterations must be >= 1, got {self.max_iterations}; e.g. 40")
        require(
            self.final_selection in ("weighted", "best"),
            f"final_selection must be 'weighted' or 'best', got {self.final_selection!r}",
        )


def particle_weights(scores: Sequence[float | None], temperature: float) -> np.ndarray:
    """Normalised weights softmax(logit(score) / temperature); an unscored particle counts as score 0."""
    clipped = np.clip(np.array([0.0 if s is None else s for s in scores], dtype=float), SCORE_CLIP, 1 - SCORE_CLIP)
    logits = np.log(clipped / (1 - clipped)) / temperature
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def effective_sample_size(weights: np.ndarray) -> float:
    """1 / sum(w^2) of normalised weights: N for equal weights, 1 when one particle holds all the weight."""
    return float(1.0 / np.sum(np.square(weights)))


def resample_indices(weights: np.ndarray, how: Resampling, rng: np.random.Generator) -> list[int]:
    """N ancestor indices (ascending) drawn by `weights`: multinomial, or systematic with one uniform draw."""
    n = len(weights)
    cumulative = np.cumsum(weights)
    cumulative[-1] = 1.0  # no index past the end from rounding
    if how == "systematic":
        positions = (rng.random() + np.arange(n)) / n
    elif how == "multinomial":
        positions = np.sort(rng.random(n))
    else:
        raise ValueError(f"unknown resampling {how!r}; use 'multinomial' or 'systematic'")
    return [int(i) for i in np.searchsorted(cumulative, positions, side="right")]


@dataclass(frozen=True)
class FilterStep:
    """What one iteration did to one problem's particles."""

    iteration: int
    ess: float
    resampled: bool
    ancestors: tuple[int, ...]
    """Index of each new particle's ancestor (0..N-1 unchanged when not resampled)."""


@dataclass
class Population:
    """One problem's particles and the history of its iterations."""

    particles: list[Partial] = field(default_factory=list)
    history: list[FilterStep] = field(default_factory=list)

    def weights(self, settings: Settings) -> np.ndarray:
        return particle_weights([p.rank for p in self.particles], settings.weight_temperature)

    @property
    def resamplings(self) -> int:
        return sum(step.resampled for step in self.history)


def _score(ledger: Ledger, partials: list[Partial], settings: Settings) -> list[Partial]:
    """Partials with their step scores and aggregated score (`rank`), from one PRM call."""
    results = ledger.score([p.owner for p in partials], [p.steps for p in partials])
    return [
        partial if result is None else replace(
            partial, step_scores=result.step_scores, rank=aggregate(result.step_scores, settings.aggregation))
        for partial, result in zip(partials, results)
    ]


def _problem_rng(seed: int, problem: Problem) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(problem.id.encode())])


def search(ledger: Ledger, settings: Settings) -> list[Population]:
    """Run the filter on every problem of `ledger` at once; one Population per problem, in problem order."""
    problems = ledger.problems
    rngs = [_problem_rng(settings.seed, problem) for problem in problems]
    populations = [Population() for _ in problems]
    for iteration in range(settings.max_iterations):
        if iteration == 0:
            grown = expand(ledger, [Partial(owner=i) for i in range(len(problems))], settings.n, settings, 0)
            for partial in _score(ledger, grown, settings):
                populations[partial.owner].particles.append(partial)
            moved = set(range(len(problems)))
        else:
            live = [(owner, k) for owner, pop in enumerate(populations) for k, p in enumerate(pop.particles)
                    if not p.ended]
            if not live:
                break
            parents = [populations[owner].particles[k] for owner, k in live]
            for (owner, k), child in zip(live, _score(ledger, expand(ledger, parents, 1, settings, iteration),
                                                       settings)):
                populations[owner].particles[k] = child
            moved = {owner for owner, _ in live}
        for owner in sorted(moved):
            population = populations[owner]
            weights = population.weights(settings)
            ess = effective_sample_size(weights)
            resampled = ess / settings.n < settings.ess_threshold
            ancestors = (resample_indices(weights, settings.resampling, rngs[owner]) if resampled
                         else list(range(settings.n)))
            if resampled:
                population.particles = [population.particles[a] for a in ancestors]
            population.history.append(FilterStep(iteration, ess, resampled, tuple(ancestors)))
        logger.debug("particle filtering iteration %d: %d problems moved", iteration, len(moved))
    return populations


def select(population: Population, settings: Settings) -> str | None:
    """The answer of a final population by `final_selection`."""
    answers = [to_completion(p, settings).answer for p in population.particles]
    weights = population.weights(settings)
    if settings.final_selection == "weighted":
        return heaviest_answer(answers, [float(w) for w in weights])
    answered = [i for i, answer in enumerate(answers) if answer is not None]
    if not answered:
        return None
    return answers[max(answered, key=lambda i: (weights[i], -i))]


def run(problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings) -> list[ResultRow]:
    """Particle filtering over all problems at once; one ResultRow per problem with its N final particles."""
    ledger = Ledger(problems, generator, scorer)
    populations = search(ledger, settings)
    rows = []
    for index, (problem, population) in enumerate(zip(problems, populations)):
        completions = [to_completion(p, settings) for p in population.particles]
        rows.append(make_row(problem, NAME, settings, completions, select(population, settings),
                             ledger.compute[index], policy=generator.name, prm=scorer.name))
    if populations:
        mean = sum(p.resamplings for p in populations) / len(populations)
        logger.info("particle filtering: %d problems x %d particles, %.1f resamplings per problem",
                    len(problems), settings.n, mean)
    return rows
