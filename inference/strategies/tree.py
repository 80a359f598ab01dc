"""Partial solutions and the step-level moves beam search and DVTS share: expand, look ahead, score.

Every move is batched over all partial solutions of all problems: one generate call per expansion (plus one
per lookahead step) and one PRM call per scoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from data_prep.steps import STEP_SEPARATOR, extract_boxed_answer, join_steps, split_steps
from inference.scoring.aggregate import aggregate
from data_prep.records import Problem
from inference.strategies.common import Ledger, StrategySettings, call_seed, make_row, require, scored_completion
from inference.strategies.selection import FinalSelection, select_answer
from inference.types import Compute, Completion, Generator, PRMScorer, ResultRow, SamplingParams, ScoredCompletion


@dataclass(frozen=True)
class TreeSettings(StrategySettings):
    """Settings of step-level tree search (beam search, DVTS)."""

    beam_width: int = 4
    """M: continuations generated from each kept partial solution per iteration; must divide n."""
    max_step_tokens: int = 512
    """Most new tokens per step; a step cut at this length ends its partial solution."""
    max_iterations: int = 40
    """Most expansion rounds (steps per solution); the reference uses 40."""
    lookahead: int = 0
    """Greedy steps rolled past each candidate before ranking it by the score of its last rolled step;
    the rolled steps are then dropped (their tokens still count)."""
    final_selection: FinalSelection = "weighted"
    """How the answer is chosen among the final solutions: weighted Best-of-N or the best agg_score."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.beam_width >= 1, f"beam_width must be >= 1, got {self.beam_width}; e.g. beam_width: 4")
        require(
            self.n % self.beam_width == 0,
            f"n={self.n} is not a multiple of beam_width={self.beam_width}; use a multiple of beam_width "
            f"(e.g. n={max(self.beam_width, self.n - self.n % self.beam_width)})",
        )
        require(self.max_step_tokens >= 1, f"max_step_tokens must be >= 1, got {self.max_step_tokens}; e.g. 512")
        require(
            self.max_iterations >= 1, f"max_iterations must be >= 1, got {self.max_iterations}; the reference uses 40"
        )
        require(self.lookahead >= 0, f"lookahead must be >= 0, got {self.lookahead}; use 0 to turn it off")
        require(
            self.final_selection in ("weighted", "best"),
            f"final_selection must be 'weighted' or 'best', got {self.final_selection!r}",
        )


@dataclass(frozen=True)
class Partial:
    """A partial solution of problem `owner` in a search tree."""

    owner: int
    """Index of its problem in the run's problem list."""
    steps: tuple[str, ...] = ()
    num_tokens: int = 0
    """Policy tokens of its own steps (lookahead excluded)."""
    ended: bool = False
    """Left the search: wrote a final answer, hit end of sequence or max_step_tokens, or wrote an empty step."""
    finished: bool = False
    """Wrote a final answer or hit end of sequence (ScoredCompletion.finished)."""
    group: int = 0
    """DVTS subtree index (0 in beam search)."""
    step_scores: tuple[float, ...] = ()
    rank: float | None = None
    """Ranking score: aggregated step scores, or the last lookahead step's score; None before scoring."""


def rank_key(partial: Partial) -> float:
    """Sort key for ranking: unscored partial solutions rank last."""
    return -math.inf if partial.rank is None else partial.rank


def prefix_of(steps: Sequence[str]) -> str:
    """Text the policy continues from: the steps joined, ending with the separator ("" for no steps)."""
    return join_steps(list(steps)) + STEP_SEPARATOR if steps else ""


def extend(parent: Partial, completion: Completion) -> Partial:
    """`parent` plus the step(s) of one generated continuation; an empty continuation ends it."""
    new_steps = tuple(split_steps(completion.text))
    answered = extract_boxed_answer(completion.text) is not None
    return replace(
        parent,
        steps=parent.steps + new_steps,
        num_tokens=parent.num_tokens + completion.num_tokens,
        ended=answered or completion.finish_reason != "stop" or not new_steps,
        finished=answered or completion.finish_reason == "eos",
        step_scores=(),
        rank=None,
    )


def _step_params(settings: TreeSettings, temperature: float, seed: int) -> SamplingParams:
    return SamplingParams(temperature, settings.top_p if temperature > 0 else 1.0, settings.max_step_tokens, seed)


def expand(
    ledger: Ledger, parents: Sequence[Partial], width: int, settings: TreeSettings, call_index: int
) -> list[Partial]:
    """`width` one-step continuations of every parent in one generate call; children in parent order."""
    params = _step_params(settings, settings.temperature, call_seed(settings.seed, call_index))
    outputs = ledger.generate(
        [p.owner for p in parents], [prefix_of(p.steps) for p in parents], n=width, params=params, stop=[STEP_SEPARATOR]
    )
    return [extend(parent, completion) for parent, out in zip(parents, outputs) for completion in out]


def _roll(ledger: Ledger, candidates: Sequence[Partial], settings: TreeSettings) -> list[Partial]:
    """Each candidate that has not ended, rolled up to `lookahead` greedy steps further (one call per step)."""
    rolled = list(candidates)
    params = _step_params(settings, 0.0, settings.seed)
    for _ in range(settings.lookahead):
        live = [i for i, partial in enumerate(rolled) if not partial.ended]
        outputs = ledger.generate(
            [rolled[i].owner for i in live], [prefix_of(rolled[i].steps) for i in live], n=1, params=params,
            stop=[STEP_SEPARATOR],
        )
        for i, out in zip(live, outputs):
            rolled[i] = extend(rolled[i], out[0])
    return rolled


def score(ledger: Ledger, candidates: Sequence[Partial], settings: TreeSettings) -> list[Partial]:
    """Candidates with their step scores and ranking score, from one PRM call (after any lookahead rollouts).

    With lookahead, the PRM scores the rolled sequence; a candidate keeps the scores of its own steps (a PRM
    scores each step from the steps before it) and ranks by the score of the last rolled step.
    """
    rolled = _roll(ledger, candidates, settings) if settings.lookahead else list(candidates)
    results = ledger.score([r.owner for r in rolled], [r.steps for r in rolled])
    scored = []
    for candidate, roll, result in zip(candidates, rolled, results):
        if result is None:
            scored.append(candidate)
            continue
        own = result.step_scores[: len(candidate.steps)]
        rolled_further = len(roll.steps) > len(candidate.steps)
        rank = result.step_scores[-1] if rolled_further else aggregate(own, settings.aggregation)
        scored.append(replace(candidate, step_scores=own, rank=rank))
    return scored


def to_completion(partial: Partial, settings: TreeSettings) -> ScoredCompletion:
    """The ScoredCompletion of a final partial solution."""
    return scored_completion(
        join_steps(list(partial.steps)), partial.steps, partial.step_scores, settings.aggregation,
        num_tokens=partial.num_tokens, finished=partial.finished,
    )


def final_row(
    problem: Problem, strategy: str, settings: TreeSettings, finals: Sequence[Partial], compute: Compute,
    generator: Generator, scorer: PRMScorer,
) -> ResultRow:
    """A problem's result row from its final partial solutions: their completions and the selected answer."""
    completions = [to_completion(partial, settings) for partial in finals]
    pred = select_answer(completions, settings.final_selection)
    return make_row(problem, strategy, settings, completions, pred, compute, policy=generator.name, prm=scorer.name)
