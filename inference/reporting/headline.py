"""The headline facts of an evaluation, computed once: the HTML report and the pipeline's summary each word them.

Facts are read from typed points (`MetricPoint`, `ModelEvaluation`): which strategies a user can run, the most
accurate of them, the cheapest one reaching a reference accuracy, the pass@N ceiling and a policy's greedy
accuracy. pass@N, the compute-optimal summary and verifiers that know the answers (the exact checker) are
ceilings, never a strategy that "reaches" anything. Among equally good points the cheapest (smallest N) wins, then
the first by label and verifier name, so both headlines break ties the same way.

A claim that one arm is ahead of another comes with a `PairedComparison`: the two arms' per-problem accuracies
(`ProblemOutcome`, what `ttc-infer eval` writes to outcomes.jsonl) paired by problem id, the mean difference and
its 95% interval (`inference.evaluation.paired`, the one definition). Arms of two policies' runs pair the same
way; arms on different problem sets are refused. A claim is "ahead" or "behind" only when its interval excludes
zero, else "within noise", and `comparison_text` words it the same in both headlines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from inference.evaluation.compute_optimal import COMPUTE_OPTIMAL
from inference.evaluation.evaluations import ModelEvaluation
from inference.evaluation.metrics import PASS_AT_N, MetricPoint, select
from inference.evaluation.paired import PairedDifference, paired_difference
from inference.scoring.checker import SYNTHETIC_CHECKER
from inference.strategies import kind_of

CEILING_VERIFIERS: tuple[str, ...] = (SYNTHETIC_CHECKER,)
"""Verifiers that know the right answers: their points show a ceiling, not what a user's verifier can do."""
UNVERIFIED: tuple[str | None, ...] = ("", None, "none")
"""PRM names of an evaluation without a verifier (a greedy run scores nothing)."""
FALL_FROM_N = 4
"""The budget naive best-of-N at its largest N is compared with (does it fall?): where the tree strategies start."""
Verdict = Literal["ahead", "behind", "within noise"]
"""How a paired comparison reads: ahead / behind only when its 95% interval excludes zero."""


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


def point_at(points: Iterable[MetricPoint], strategy: str, n: int) -> MetricPoint | None:
    """The overall point of `strategy` at N = n (its first listed beam width), or None where it did not run."""
    return next((p for p in select(points, strategy=strategy) if p.n == n), None)


def tree_budget(points: Iterable[MetricPoint]) -> int | None:
    """The largest N a tree search (a strategy of the registry's kind "tree") ran at, or None."""
    return max((p.n for p in runnable(points) if kind_of(p.strategy) == "tree"), default=None)


def accuracy_at(points: Iterable[MetricPoint], strategy: str, n: int) -> float | None:
    """Overall accuracy of `strategy` at N = n (its first listed beam width), or None where it did not run."""
    found = point_at(points, strategy, n)
    return None if found is None else found.accuracy


def ceiling(points: Iterable[MetricPoint]) -> MetricPoint | None:
    """The pass@N point (any correct answer among N samples) at the largest N, or None."""
    return max(select(points, strategy=PASS_AT_N), key=lambda p: p.n, default=None)


def _greedy(evaluations: Sequence[ModelEvaluation], policy: str) -> tuple[ModelEvaluation, MetricPoint] | None:
    """A policy's greedy point (majority at N = 1) and its evaluation: the one without a verifier where there is
    one, else the first verifier's (a run without a PRM joins every verifier of its policy)."""
    found = [(e, p) for e in evaluations if e.policy == policy for p in select(e.points, strategy="majority")
             if p.n == 1]
    unverified = [(e, p) for e, p in found if e.prm in UNVERIFIED]
    chosen = unverified or found
    return chosen[0] if chosen else None


def greedy_accuracy(evaluations: Sequence[ModelEvaluation], policy: str) -> float | None:
    """Accuracy of a policy's greedy run (majority at N = 1): its evaluation without a verifier where there is one,
    else the first verifier's (a run without a PRM joins every verifier of its policy). None without such a point."""
    greedy = _greedy(evaluations, policy)
    return None if greedy is None else greedy[1].accuracy


def greedy_outcomes(evaluations: Sequence[ModelEvaluation], policy: str, *, where: str = "evaluations"
                    ) -> dict[str, float] | None:
    """Problem id -> correctness of the policy's greedy run (the run `greedy_accuracy` reads), or None without one."""
    greedy = _greedy(evaluations, policy)
    return None if greedy is None else per_problem(greedy[0], greedy[1], where=where)


@dataclass(frozen=True)
class PairedComparison:
    """Arm A against arm B on the same problems: A minus B with its paired 95% interval, and how that reads."""

    arm: str
    """What A is, e.g. 'weighted_best_of_n at N=16 (prm-oracle)'."""
    against: str
    """What B is, e.g. 'policy-large greedy'."""
    paired: PairedDifference
    """A minus B over the problems both were evaluated on (the same set: `compare` refuses others)."""

    @property
    def verdict(self) -> Verdict:
        if self.paired.low > 0:
            return "ahead"
        return "behind" if self.paired.high < 0 else "within noise"


def per_problem(evaluation: ModelEvaluation, point: MetricPoint, *, where: str = "evaluation") -> dict[str, float]:
    """Problem id -> accuracy of the arm of `point` (strategy, beam width, N) in `evaluation`'s outcomes.

    Raises naming `where` when the evaluation holds no outcome of that arm (an eval directory without
    outcomes.jsonl) or two outcomes of one problem (two runs of the same arm in one evaluation)."""
    found: dict[str, float] = {}
    for o in evaluation.outcomes:
        if (o.strategy, o.beam_width, o.n) == (point.strategy, point.beam_width, point.n):
            if o.problem_id in found:
                raise ValueError(f"{where}: two outcomes of problem {o.problem_id!r} for {_describe(evaluation, point)}"
                                 "; evaluate each arm once")
            found[o.problem_id] = o.accuracy
    if not found:
        raise ValueError(f"{where}: no per-problem outcome of {_describe(evaluation, point)}, expected one per "
                         "problem in outcomes.jsonl; rerun `ttc-infer eval` to write them")
    return found


def _describe(evaluation: ModelEvaluation, point: MetricPoint) -> str:
    verifier = f" with {evaluation.prm}" if evaluation.prm not in UNVERIFIED else ""
    return f"{evaluation.policy}{verifier}: {point.label} at N={point.n}"


def compare(arm: Mapping[str, float], against: Mapping[str, float], *, arm_name: str, against_name: str
            ) -> PairedComparison:
    """`arm` minus `against` (problem id -> accuracy each), paired by problem; different problem sets raise."""
    return PairedComparison(arm_name, against_name,
                            paired_difference(arm, against, a_name=arm_name, b_name=against_name))


def signed_points(difference: float) -> str:
    """An accuracy difference in percentage points, signed: '+1.2', '-0.6'."""
    return f"{100 * difference:+.1f}"


def comparison_text(comparison: PairedComparison, against: str) -> str:
    """'within noise of majority: +0.8 points, 95% CI -2.1 to +3.7, n=100' (`against` names arm B briefly)."""
    paired = comparison.paired
    relation = {"ahead": "ahead of", "behind": "behind", "within noise": "within noise of"}[comparison.verdict]
    return (f"{relation} {against}: {signed_points(paired.difference)} points, 95% CI {signed_points(paired.low)} "
            f"to {signed_points(paired.high)}, n={paired.num_problems}")
