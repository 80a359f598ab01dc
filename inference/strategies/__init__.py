"""Search strategies by name: each is a Settings dataclass plus `run(problems, generator, scorer, settings)`.

Entries (one module each): `majority` (majority.py), `best_of_n` and `weighted_best_of_n` (best_of_n.py),
`beam_search` (beam_search.py), `dvts` (dvts.py). Answer selection helpers live in selection.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from data_prep.records import Problem
from inference.strategies import beam_search, best_of_n, dvts, majority
from inference.strategies.selection import best_answer, majority_answer, select_answer, weighted_answer
from inference.types import Generator, PRMScorer, ResultRow

RunFn = Callable[[list[Problem], Generator, PRMScorer, Any], list[ResultRow]]


@dataclass(frozen=True)
class Strategy:
    """A registry entry: the strategy's settings class and its run function."""

    name: str
    settings: type
    run: RunFn
    samples: bool = False
    """Draws N independent samples per problem: its rows store them all, so runs at equal sampling settings can
    share one set and evaluation can subsample them to every smaller N."""


STRATEGIES: dict[str, Strategy] = {
    "majority": Strategy("majority", majority.Settings, majority.run, samples=True),
    "best_of_n": Strategy("best_of_n", best_of_n.Settings, best_of_n.run, samples=True),
    "weighted_best_of_n": Strategy("weighted_best_of_n", best_of_n.Settings, best_of_n.run_weighted, samples=True),
    "beam_search": Strategy("beam_search", beam_search.Settings, beam_search.run),
    "dvts": Strategy("dvts", dvts.Settings, dvts.run),
}

SAMPLING_STRATEGIES: tuple[str, ...] = tuple(name for name, entry in STRATEGIES.items() if entry.samples)
"""Strategies whose rows store N independent samples (the registry's `samples` entries), in registry order."""


def get_strategy(name: str) -> Strategy:
    """The registry entry for `name`; an unknown name raises KeyError listing the known ones."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


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
    "SAMPLING_STRATEGIES",
    "STRATEGIES",
    "Strategy",
    "best_answer",
    "get_strategy",
    "majority_answer",
    "make_settings",
    "select_answer",
    "weighted_answer",
]
