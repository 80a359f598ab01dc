"""PRM-guided beam search: keep the N/M best partial solutions, expand each into M one-step continuations.

Iteration 0 samples N first steps per problem; each later iteration expands the N/M kept beams into M
continuations each. All problems advance together: one generate call (plus one per lookahead step) and one
PRM call per iteration. Candidates that end (final answer, end of sequence, max_step_tokens, empty step)
go to their problem's finished pool; a problem stops once N have finished or nothing is left to expand.
The search stops after `max_iterations`.

Final solutions (`_finalize`): the finished pool, cut to its N best by agg_score when larger (ties: earlier
finished first), topped up with the best still-active candidates of the problem's last iteration when
fewer than N finished. The answer is chosen among them by `final_selection`.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field

from data_prep.records import Problem
from inference.scoring.aggregate import aggregate
from inference.strategies.common import Ledger
from inference.strategies.tree import Partial, TreeSettings, expand, final_row, rank_key, score
from inference.types import Generator, PRMScorer, ResultRow

logger = logging.getLogger(__name__)

NAME = "beam_search"


@dataclass(frozen=True)
class Settings(TreeSettings):
    """Beam-search settings: n beams in flight, n / beam_width kept per iteration."""


@dataclass
class _Beams:
    """Search state of one problem."""

    finished: list[Partial] = field(default_factory=list)
    """Candidates that ended, in the order they ended."""
    active: list[Partial] = field(default_factory=list)
    """Candidates of the latest iteration that did not end, best rank first."""


def _prune(candidates: list[Partial], states: list[_Beams], settings: Settings) -> list[Partial]:
    """Pool the ended candidates; return the best n/M others of each problem that still needs beams."""
    by_owner: dict[int, list[Partial]] = defaultdict(list)
    for candidate in candidates:
        by_owner[candidate.owner].append(candidate)
    survivors = []
    for owner, group in by_owner.items():
        state = states[owner]
        state.finished.extend(c for c in group if c.ended)
        # sorted() is stable, so exactly tied candidates keep their generation order.
        state.active = sorted((c for c in group if not c.ended), key=rank_key, reverse=True)
        if len(state.finished) < settings.n:
            survivors.extend(state.active[: settings.n // settings.beam_width])
    return survivors


def _agg_key(partial: Partial, settings: Settings) -> float:
    """agg_score of a partial solution; unscored ones come last."""
    return aggregate(partial.step_scores, settings.aggregation) if partial.step_scores else -math.inf


def _finalize(state: _Beams, settings: Settings) -> list[Partial]:
    """At most N final solutions: the N best finished (kept in finishing order), then the best active ones."""
    order = sorted(range(len(state.finished)), key=lambda i: (-_agg_key(state.finished[i], settings), i))
    kept = [state.finished[i] for i in sorted(order[: settings.n])]
    return kept + state.active[: settings.n - len(kept)]


def run(problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings) -> list[ResultRow]:
    """Beam search over all problems at once; one ResultRow per problem with its final solutions."""
    ledger = Ledger(problems, generator, scorer)
    states = [_Beams() for _ in problems]
    parents = [Partial(owner=index) for index in range(len(problems))]
    for iteration in range(settings.max_iterations):
        if not parents:
            break
        width = settings.n if iteration == 0 else settings.beam_width
        candidates = score(ledger, expand(ledger, parents, width, settings, iteration), settings)
        parents = _prune(candidates, states, settings)
        logger.debug("beam search iteration %d: %d candidates, %d kept", iteration, len(candidates), len(parents))
    return [
        final_row(problem, NAME, settings, _finalize(state, settings), ledger.compute[index], generator, scorer)
        for index, (problem, state) in enumerate(zip(problems, states))
    ]
