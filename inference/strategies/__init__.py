"""Search strategies by name: each is a Settings dataclass plus `run(problems, generator, scorer, settings)`.

The registry (`STRATEGIES`) is the one place that says what a strategy is: its kind (independent samples,
tree search over steps, or adaptive sampling), whether a run with given settings calls the PRM, whether
evaluation may subsample its rows for smaller N (and with which selection rule), and how plots draw it.
Runner, metrics, difficulty bins, plots, headline and the compute-optimal router read these entries, so a
new strategy is one module, its test and one line here.

Entries (one module each): `majority` (majority.py), `best_of_n` and `weighted_best_of_n` (best_of_n.py),
`beam_search` (beam_search.py), `dvts` (dvts.py), `particle_filtering` (particle_filtering.py), `mcts`
(mcts.py), `adaptive_majority` (adaptive_majority.py). Answer selection helpers live in selection.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from data_prep.records import Problem
from inference.strategies import (
    adaptive_majority,
    beam_search,
    best_of_n,
    dvts,
    majority,
    mcts,
    particle_filtering,
)
from inference.strategies.selection import best_answer, majority_answer, select_answer, weighted_answer
from inference.types import Generator, PRMScorer, ResultRow

RunFn = Callable[[list[Problem], Generator, PRMScorer, Any], list[ResultRow]]
Kind = Literal["sampling", "tree", "adaptive"]
"""sampling: N independent full solutions; tree: step-level search guided by the PRM; adaptive: samples in
rounds and stops a problem early, so its compute per problem varies."""
SubsetSelection = Literal["vote", "weighted", "best"]
"""How evaluation re-selects the answer on a subset of a row's stored samples: majority vote (no PRM),
weighted Best-of-N, or the best-scored sample."""


def _always(settings: Any) -> bool:
    return True


@dataclass(frozen=True)
class Strategy:
    """A registry entry: settings class, run function, and what the rest of ttc needs to know about it."""

    name: str
    settings: type
    run: RunFn
    kind: Kind
    color: str
    """Matplotlib colour of its lines and bars."""
    marker: str = "o"
    """Matplotlib marker of its points."""
    subset_selection: SubsetSelection | None = None
    """Set for strategies whose rows store N independent samples: runs at equal sampling settings share one
    set, and evaluation subsamples it to every smaller N with this rule. None: one run per N."""
    uses_prm: Callable[[Any], bool] = _always
    """Whether a run with the given Settings calls the PRM (majority without score_with_prm does not)."""

    @property
    def subsampled(self) -> bool:
        """Rows store independent samples that evaluation subsamples for smaller N (and runs share)."""
        return self.subset_selection is not None


STRATEGIES: dict[str, Strategy] = {
    "majority": Strategy("majority", majority.Settings, majority.run, "sampling", "tab:blue", "o", "vote",
                         lambda s: s.score_with_prm),
    "best_of_n": Strategy("best_of_n", best_of_n.Settings, best_of_n.run, "sampling", "tab:orange", "o", "best"),
    "weighted_best_of_n": Strategy("weighted_best_of_n", best_of_n.Settings, best_of_n.run_weighted, "sampling",
                                   "tab:green", "o", "weighted"),
    "beam_search": Strategy("beam_search", beam_search.Settings, beam_search.run, "tree", "tab:red", "s"),
    "dvts": Strategy("dvts", dvts.Settings, dvts.run, "tree", "tab:purple", "s"),
    "particle_filtering": Strategy("particle_filtering", particle_filtering.Settings, particle_filtering.run, "tree",
                                   "tab:brown", "D"),
    "mcts": Strategy("mcts", mcts.Settings, mcts.run, "tree", "tab:cyan", "^"),
    "adaptive_majority": Strategy("adaptive_majority", adaptive_majority.Settings, adaptive_majority.run, "adaptive",
                                  "tab:olive", "v", uses_prm=lambda s: s.weighted),
}


def get_strategy(name: str) -> Strategy:
    """The registry entry for `name`; an unknown name raises KeyError listing the known ones."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def is_subsampled(name: str) -> bool:
    """Whether `name` is a registered strategy whose rows evaluation subsamples (False for unknown names)."""
    entry = STRATEGIES.get(name)
    return entry is not None and entry.subsampled


def kind_of(name: str) -> Kind | None:
    """The registered kind of `name`, or None for names that are not strategies (pass@N, compute_optimal)."""
    entry = STRATEGIES.get(name)
    return None if entry is None else entry.kind


def subsampled_strategies() -> tuple[str, ...]:
    """Names of the strategies whose rows evaluation subsamples, in registry order."""
    return tuple(name for name, entry in STRATEGIES.items() if entry.subsampled)


def make_settings(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The Settings of strategy `name` from a mapping; keys the strategy does not have are errors."""
    strategy = get_strategy(name)
    options = dict(options or {})
    known = [f.name for f in dataclasses.fields(strategy.settings)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(unknown)} for strategy {name!r}; its settings are: {', '.join(known)}"
        )
    return strategy.settings(**options)


__all__ = [
    "STRATEGIES",
    "Kind",
    "Strategy",
    "SubsetSelection",
    "best_answer",
    "get_strategy",
    "is_subsampled",
    "kind_of",
    "majority_answer",
    "make_settings",
    "select_answer",
    "subsampled_strategies",
    "weighted_answer",
]
