"""The headline facts of an evaluation, computed once: the HTML report and the pipeline's summary each word them.

Facts are read from typed points (`MetricPoint`, `ModelEvaluation`): which strategies a user can run, the most
accurate of them, the cheapest one reaching a reference accuracy, the pass@N ceiling and a policy's greedy
accuracy. pass@N, the compute-optimal summary and verifiers that know the answers (the exact checker) are
ceilings, never a strategy that "reaches" anything. Among equally good points the cheapest (smallest N) wins, then
the first by label and verifier name, so both headlines break ties the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from inference.evaluation.compute_optimal import COMPUTE_OPTIMAL
from inference.evaluation.evaluations import ModelEvaluation
from inference.evaluation.metrics import PASS_AT_N, MetricPoint, select
from inference.scoring.checker import SYNTHETIC_CHECKER

CEILING_VERIFIERS: tuple[str, ...] = (SYNTHETIC_CHECKER,)
"""Verifiers that know the right answers: their points show a ceiling, not what a user's verifier can do."""
UNVERIFIED: tuple[str | None, ...] = ("", None, "none")
"""PRM names of an evaluation without a verifier (a greedy run scores nothing)."""


@dataclass(frozen=True)
class Arm:
    """An overall point of a strategy a user can run, and the verifier it ran with ('' when not named)."""

    point: MetricPoint
    verifier: str = ""


def percent(value: float) -> str:
    """An accuracy as the headlines print it: '77.0%'."""
    return f"{100 * value:.1f}%"


def runnable(points: Iterable[MetricPoint]) -> list[MetricPoint]:
    """The overall points of strategies a user can run: not the pass@N ceiling, not the compute-optimal summary."""
    return [p for p in select(points) if p.strategy not in (PASS_AT_N, COMPUTE_OPTIMAL)]


def arms(by_verifier: Mapping[str, Sequence[MetricPoint]]) -> list[Arm]:
    """The runnable points of every verifier (verifier name -> its points) but the ceiling verifiers."""
    return [Arm(point, verifier) for verifier, points in by_verifier.items() if verifier not in CEILING_VERIFIERS
            for point in runnable(points)]


def best_arm(candidates: Sequence[Arm]) -> Arm | None:
    """The most accurate arm (among equals the cheapest), or None."""
    return min(candidates, key=lambda a: (-a.point.accuracy, a.point.n, a.point.label, a.verifier), default=None)


def first_reaching(candidates: Sequence[Arm], accuracy: float) -> Arm | None:
    """The cheapest arm at or above `accuracy` (smallest N, then the most accurate), or None."""
    reached = [a for a in candidates if a.point.accuracy >= accuracy]
    return min(reached, key=lambda a: (a.point.n, -a.point.accuracy, a.point.label, a.verifier), default=None)


def matches_by_verifier(by_verifier: Mapping[str, Sequence[MetricPoint]], accuracy: float) -> dict[str, Arm]:
    """Verifier name -> its cheapest arm reaching `accuracy`, for each verifier (ceilings aside) that has one."""
    found = {}
    for verifier in sorted(by_verifier):
        first = first_reaching(arms({verifier: by_verifier[verifier]}), accuracy)
        if first is not None:
            found[verifier] = first
    return found


def accuracy_at(points: Iterable[MetricPoint], strategy: str, n: int) -> float | None:
    """Overall accuracy of `strategy` at N = n (its first listed beam width), or None where it did not run."""
    found = [p for p in select(points, strategy=strategy) if p.n == n]
    return found[0].accuracy if found else None


def ceiling(points: Iterable[MetricPoint]) -> MetricPoint | None:
    """The pass@N point (any correct answer among N samples) at the largest N, or None."""
    return max(select(points, strategy=PASS_AT_N), key=lambda p: p.n, default=None)


def greedy_accuracy(evaluations: Sequence[ModelEvaluation], policy: str) -> float | None:
    """Accuracy of a policy's greedy run (majority at N = 1): its evaluation without a verifier where there is one,
    else the first verifier's (a run without a PRM joins every verifier of its policy). None without such a point."""
    found = [(e.prm, p) for e in evaluations if e.policy == policy
             for p in select(e.points, strategy="majority") if p.n == 1]
    unverified = [(prm, p) for prm, p in found if prm in UNVERIFIED]
    chosen = unverified or found
    return chosen[0][1].accuracy if chosen else None
