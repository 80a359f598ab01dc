"""DVTS (diverse verifier tree search): N/M independent greedy PRM-guided subtrees, one finalist each.

Iteration 0 samples N first steps per problem in one request and deals them out in blocks of M to the N/M
subtrees (separate requests with one prefix could get identical samples under one per-call seed). Each
iteration, every subtree keeps its single best-ranked candidate (ties: the first generated); if that one
ended, the subtree is done and it is the subtree's finalist, else it is expanded into M continuations.
After `max_iterations`, a live subtree's finalist is its best (unfinished) candidate. All subtrees of all
problems advance together: one generate call (plus one per lookahead step) and one PRM call per iteration.
The answer is chosen among the N/M finalists by `final_selection` (weighted Best-of-N by default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from data_prep.records import Problem
from inference.strategies.common import Ledger
from inference.strategies.tree import Partial, TreeSettings, expand, final_row, rank_key, score
from inference.types import Generator, PRMScorer, ResultRow

logger = logging.getLogger(__name__)

NAME = "dvts"


@dataclass(frozen=True)
class Settings(TreeSettings):
    """DVTS settings: n / beam_width subtrees per problem, each expanding its best step into beam_width."""


def _deal_subtrees(children: list[Partial], settings: Settings) -> list[Partial]:
    """Label the N first steps of each problem (consecutive in `children`) with subtrees 0..N/M-1, M each."""
    return [replace(child, group=(k % settings.n) // settings.beam_width) for k, child in enumerate(children)]


def _keep_best(candidates: list[Partial], finalists: list[dict[int, Partial]]) -> list[Partial]:
    """Record each subtree's best candidate as its finalist; return those that have not ended."""
    best: dict[tuple[int, int], Partial] = {}
    for candidate in candidates:
        key = (candidate.owner, candidate.group)
        if key not in best or rank_key(candidate) > rank_key(best[key]):
            best[key] = candidate
    for (owner, group), partial in best.items():
        finalists[owner][group] = partial
    return [partial for partial in best.values() if not partial.ended]


def run(problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings) -> list[ResultRow]:
    """DVTS over all problems at once; one ResultRow per problem with its N/M finalists."""
    ledger = Ledger(problems, generator, scorer)
    finalists: list[dict[int, Partial]] = [{} for _ in problems]
    parents = [Partial(owner=index) for index in range(len(problems))]
    for iteration in range(settings.max_iterations):
        if not parents:
            break
        if iteration == 0:
            children = _deal_subtrees(expand(ledger, parents, settings.n, settings, iteration), settings)
        else:
            children = expand(ledger, parents, settings.beam_width, settings, iteration)
        parents = _keep_best(score(ledger, children, settings), finalists)
        logger.debug("dvts iteration %d: %d subtrees still growing", iteration, len(parents))
    return [
        final_row(problem, NAME, settings, [finalists[index][group] for group in sorted(finalists[index])],
                  ledger.compute[index], generator, scorer)
        for index, problem in enumerate(problems)
    ]
