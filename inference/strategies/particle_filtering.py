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

Particle Gibbs (Puri et al. 2025, their Algorithm 2), with `sweeps` > 1: the N particles are split into
`sweeps` sweeps of N / sweeps run one after another (about the compute of one filter of N). After each sweep one
final particle is drawn by weight as the reference; the next sweep is a conditional filter: its last slot holds the
reference's state at each iteration (replayed, neither generated nor scored again), the other slots are sampled as
above and resampled from all slots by weight, so a good solution found once is kept while the rest search around
it. Each sweep's generate calls have their own seeds.

The answer: the equivalence group with the largest total particle weight (`final_selection: weighted`), or the
answer of the heaviest particle (`best`). Completions are the final particles (of the last sweep), duplicates
included.
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
    sweeps: int = 1
    """Particle Gibbs: more than 1 runs this many sweeps of n / sweeps particles, each after the first conditioned
    on a reference particle drawn from the previous sweep; 1 is the plain filter."""

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
        require(isinstance(self.sweeps, int) and self.sweeps >= 1, f"sweeps must be an integer >= 1, got {self.sweeps!r}")
        require(
            self.sweeps == 1 or (self.n % self.sweeps == 0 and self.n // self.sweeps >= 2),
            f"n={self.n} must be a multiple of sweeps={self.sweeps} with at least 2 particles per sweep "
            f"(the reference and one more); e.g. n={2 * self.sweeps}",
        )

    @property
    def particles_per_sweep(self) -> int:
        """Particles of each sweep: n / sweeps."""
        return self.n // self.sweeps


def particle_weights(scores: Sequence[float | None], temperature: float) -> np.ndarray:
    """Normalised weights softmax(logit(score) / temperature); an unscored particle counts as score 0."""
    clipped = np.clip(np.array([0.0 if s is None else s for s in scores], dtype=float), SCORE_CLIP, 1 - SCORE_CLIP)
    logits = np.log(clipped / (1 - clipped)) / temperature
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def effective_sample_size(weights: np.ndarray) -> float:
    """1 / sum(w^2) of normalised weights: N for equal weights, 1 when one particle holds all the weight."""
    return float(1.0 / np.sum(np.square(weights)))


def resample_indices(weights: np.ndarray, how: Resampling, rng: np.random.Generator, count: int | None = None
                     ) -> list[int]:
    """`count` (default len(weights)) ancestor indices (ascending) drawn by `weights`: multinomial, or systematic
    with one uniform draw."""
    n = len(weights) if count is None else count
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
    snapshots: list[list[Partial]] = field(default_factory=list)
    """The particles after each iteration (after any resampling): where a reference's trajectory is read."""

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


def reference_trajectory(population: Population, index: int) -> list[Partial]:
    """The states of final particle `index` after each iteration: per snapshot, the particle itself once it is
    there, else its longest ancestor (of equal ones, one still running)."""
    final = population.particles[index]

    def state(snapshot: list[Partial]) -> Partial:
        if any(p is final for p in snapshot):
            return final
        ancestors = [p for p in snapshot if final.steps[:len(p.steps)] == p.steps]
        return max(ancestors, key=lambda p: (len(p.steps), not p.ended))

    return [state(snapshot) for snapshot in population.snapshots]


def _sweep(ledger: Ledger, settings: Settings, size: int, references: list[list[Partial]] | None,
           rngs: list[np.random.Generator], call_offset: int) -> list[Population]:
    """One filter of `size` particles per problem; with `references`, conditioned on each problem's reference
    trajectory, which takes the last slot (its state at each iteration, not generated or scored)."""
    problems = ledger.problems
    free = size - 1 if references is not None else size
    populations = [Population() for _ in problems]
    for iteration in range(settings.max_iterations):
        if iteration == 0:
            grown = expand(ledger, [Partial(owner=i) for i in range(len(problems))], free, settings, call_offset)
            for partial in _score(ledger, grown, settings):
                populations[partial.owner].particles.append(partial)
            moved = set(range(len(problems)))
        else:
            live = [(owner, k) for owner, pop in enumerate(populations) for k, p in enumerate(pop.particles[:free])
                    if not p.ended]
            replaying = {owner for owner, trajectory in enumerate(references or []) if iteration < len(trajectory)}
            if not live and not replaying:
                break
            parents = [populations[owner].particles[k] for owner, k in live]
            children = _score(ledger, expand(ledger, parents, 1, settings, call_offset + iteration), settings)
            for (owner, k), child in zip(live, children):
                populations[owner].particles[k] = child
            moved = {owner for owner, _ in live} | replaying
        if references is not None:
            for owner, trajectory in enumerate(references):
                populations[owner].particles[free:] = [trajectory[min(iteration, len(trajectory) - 1)]]
        for owner in sorted(moved):
            population = populations[owner]
            weights = population.weights(settings)
            ess = effective_sample_size(weights)
            resampled = ess / size < settings.ess_threshold
            ancestors = (resample_indices(weights, settings.resampling, rngs[owner], free) if resampled
                         else list(range(free)))
            population.particles = [population.particles[a] for a in ancestors] + population.particles[free:]
            ancestors += list(range(free, size))
            population.history.append(FilterStep(iteration, ess, resampled, tuple(ancestors)))
        for population in populations:
            population.snapshots.append(list(population.particles))
        logger.debug("particle filtering iteration %d: %d problems moved", iteration, len(moved))
    return populations


def search(ledger: Ledger, settings: Settings) -> list[Population]:
    """Run the filter (or particle Gibbs' sweeps) on every problem of `ledger` at once; the final Population per
    problem, in problem order."""
    rngs = [_problem_rng(settings.seed, problem) for problem in ledger.problems]
    size = settings.particles_per_sweep if settings.sweeps > 1 else settings.n
    references = None
    for sweep in range(settings.sweeps):
        populations = _sweep(ledger, settings, size, references, rngs, sweep * (settings.max_iterations + 1))
        if sweep + 1 < settings.sweeps:
            # The reference: one final particle drawn by weight (Puri et al.), from the problem's own stream.
            references = [reference_trajectory(pop, int(rngs[owner].choice(size, p=pop.weights(settings))))
                          for owner, pop in enumerate(populations)]
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
        logger.info("particle filtering: %d problems x %d particles in %d sweep(s), %.1f resamplings per problem "
                    "(last sweep)", len(problems), settings.n, settings.sweeps, mean)
    return rows
