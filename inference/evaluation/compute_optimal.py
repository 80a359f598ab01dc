"""Compute-optimal routing: per difficulty bin and budget N, the strategy that was best on a fitting split.

Held-out comparison by cross-fitting (the default): problems are cut into k seeded folds; each fold is routed by a
router fitted on the other folds, so every problem is held out exactly once and the comparison with single
strategies covers all problems. With `folds=None` one seeded split (`fit_fraction`) is used instead. The router
written for the inference arm is fitted on all problems. Each comparison at equal N is paired over the held-out
problems, with a 95% interval of the difference (`EqualBudgetGap`): with ~100 problems, a point or two either way
is noise, and the interval says so.

Fitting: on the fitting problems, problems are binned (oracle or
predicted quintiles are recomputed from the fitting problems alone, levels are taken as given), and for each
(bin, N) the candidate (strategy, beam width) with the highest mean accuracy wins; exact ties go to the lower
mean tokens (policy + PRM), then to the label in alphabetical order. A candidate must have an outcome for every
fitting problem of the bin at that N. pass@N (an oracle) and rows of an earlier compute-optimal run are never
candidates. The `Router` keeps the bin edges, so a held-out problem (or a new one, before search) is routed by
its difficulty value alone: `router.route(predicted_score, budget)`.

The k samples used to predict difficulty are not charged to the compute-optimal budget (as in Snell et al.).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from data_prep.io import read_json, write_json

from inference.evaluation.bins import Binning, quantile_bins
from inference.evaluation.paired import paired_difference
from inference.evaluation.metrics import (
    PASS_AT_N,
    BinKind,
    MetricPoint,
    ProblemOutcome,
    aggregate,
    record_from_dict,
    select,
    fold_ids,
    split_ids,
    strategy_label,
)

logger = logging.getLogger(__name__)

COMPUTE_OPTIMAL = "compute_optimal"
"""Strategy name of compute-optimal outcomes and points."""
ROUTER_FORMAT = "ttc-router/1"
_EXCLUDED = (PASS_AT_N, COMPUTE_OPTIMAL)


@dataclass(frozen=True)
class StrategyChoice:
    """What to run for one (bin, budget): a strategy and its settings, with the evidence for it."""

    strategy: str
    beam_width: int | None
    fit_accuracy: float
    """Mean accuracy of this choice on the fitting problems of the bin."""
    num_fit_problems: int

    @property
    def settings(self) -> dict:
        """Settings to pass to the strategy besides N (beam width for beam search / DVTS)."""
        return {} if self.beam_width is None else {"beam_width": self.beam_width}

    @property
    def label(self) -> str:
        return strategy_label(self.strategy, self.beam_width)


@dataclass(frozen=True)
class Router:
    """Difficulty bin + budget -> strategy choice; callable before search from a predicted difficulty."""

    bin_kind: BinKind
    bin_edges: tuple[float, ...]
    """Bin edges on the difficulty value (higher = easier), as in `Binning.bin_edges`; empty for levels.
    An edge next to an empty end bin is +-inf (`Infinity` in the JSON file, which Python's json reads)."""
    num_bins: int
    choice: dict[tuple[int, int], StrategyChoice]
    """(bin, budget) -> what to run."""
    k: int | None = None
    """Predicted bins: the score to route by is the mean aggregated PRM score of a problem's first k samples."""

    @property
    def budgets(self) -> list[int]:
        return sorted({budget for _, budget in self.choice})

    def bin_of(self, value: float) -> int:
        """The bin a difficulty value falls in (the level itself for level routers)."""
        return Binning(self.bin_kind, {}, {}, self.bin_edges, self.num_bins).bin_of(value)

    def route(self, predicted_score: float, budget: int) -> StrategyChoice:
        """The strategy to run at `budget` for a problem whose difficulty value is `predicted_score`."""
        bin_index = self.bin_of(predicted_score)
        choice = self.choice.get((bin_index, budget))
        if choice is None:
            known = sorted(b for b, n in self.choice if n == budget)
            if not known:
                raise ValueError(f"budget {budget} is not in the router's budgets {self.budgets}; use one of them")
            raise ValueError(
                f"the router has no choice for bin {bin_index} at budget {budget} (no fitting problem fell in that "
                f"bin; bins with choices: {known}); refit with more fitting problems"
            )
        return choice

    def to_dict(self) -> dict:
        return {
            "format": ROUTER_FORMAT,
            "bin_kind": self.bin_kind,
            "num_bins": self.num_bins,
            "bin_edges": list(self.bin_edges),
            "k": self.k,
            "choice": [
                {"bin": b, "budget": n, "strategy": c.strategy, "beam_width": c.beam_width,
                 "fit_accuracy": c.fit_accuracy, "num_fit_problems": c.num_fit_problems}
                for (b, n), c in sorted(self.choice.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "router") -> Router:
        """Inverse of `to_dict`; a wrong format or unknown / missing key raises naming `where`."""
        expected = {"format", "bin_kind", "num_bins", "bin_edges", "k", "choice"}
        if not isinstance(data, dict) or set(data) != expected or data["format"] != ROUTER_FORMAT:
            raise ValueError(
                f"{where}: not a {ROUTER_FORMAT} router file (keys "
                f"{sorted(data) if isinstance(data, dict) else data!r}, expected {sorted(expected)}); "
                "write it with Router.save"
            )
        choice_keys = {"bin", "budget", "strategy", "beam_width", "fit_accuracy", "num_fit_problems"}
        choices = {}
        for index, entry in enumerate(data["choice"]):
            if not isinstance(entry, dict) or set(entry) != choice_keys:
                raise ValueError(
                    f"{where}: choice {index} must have exactly the keys {sorted(choice_keys)}, got {entry!r}")
            choices[(int(entry["bin"]), int(entry["budget"]))] = StrategyChoice(
                entry["strategy"], entry["beam_width"], float(entry["fit_accuracy"]), int(entry["num_fit_problems"])
            )
        k = None if data["k"] is None else int(data["k"])
        return cls(data["bin_kind"], tuple(float(t) for t in data["bin_edges"]), int(data["num_bins"]), choices, k)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Router:
        data = read_json(path, fix="write router files with Router.save")
        return cls.from_dict(data, where=str(path))


def _fit_binning(binning: Binning, fit_ids: Sequence[str]) -> Binning:
    if binning.kind == "level":
        return replace(binning, bins={p: binning.bins[p] for p in fit_ids if p in binning.bins})
    values = {p: binning.values[p] for p in fit_ids if p in binning.values}
    return quantile_bins(values, kind=binning.kind, num_bins=binning.num_bins, k=binning.k)


Arm = tuple[str, int | None]
"""A candidate: strategy and beam width."""


def _mean_accuracy(outcomes: Sequence[ProblemOutcome]) -> float:
    return float(np.mean([o.accuracy for o in outcomes]))


def _best_arm(arms: Mapping[Arm, Sequence[ProblemOutcome]]) -> Arm:
    """Highest mean accuracy; exact ties go to fewer mean tokens (policy + PRM), then to the label."""
    def key(arm: Arm) -> tuple:
        tokens = float(np.mean([o.policy_tokens + o.prm_tokens for o in arms[arm]]))
        return -_mean_accuracy(arms[arm]), tokens, strategy_label(*arm)

    return min(arms, key=key)


def fit_router(
    outcomes: Iterable[ProblemOutcome], binning: Binning, fit_ids: Iterable[str], *, min_gain: float | None = None
) -> Router:
    """Choose, per (bin, N), the candidate with the best mean accuracy on the fitting problems of the bin.

    `min_gain`: a bin keeps the candidate that is best over all fitting problems at that N (the pooled choice)
    unless its own best beats the pooled choice on the bin's fitting problems by more than this much accuracy.
    A handful of problems per bin makes per-bin winners noisy; this backs off to the pooled choice where the
    bin's evidence for another strategy is weak. None chooses per bin alone.
    """
    fit_binning = _fit_binning(binning, sorted(set(fit_ids)))
    if not fit_binning.bins:
        raise ValueError("no fitting problem has a difficulty value in the binning; check problem ids / levels")
    by_arm: dict[tuple[int, int, str, int | None], dict[str, ProblemOutcome]] = defaultdict(dict)
    for o in outcomes:
        b = fit_binning.bins.get(o.problem_id)
        if b is not None and o.strategy not in _EXCLUDED:
            by_arm[(b, o.n, o.strategy, o.beam_width)][o.problem_id] = o
    # (bin, N) -> {(strategy, beam width): its outcomes}, for candidates with an outcome on every fitting problem.
    candidates: dict[tuple[int, int], dict[Arm, list[ProblemOutcome]]] = defaultdict(dict)
    for (b, n, strategy, beam_width), found in by_arm.items():
        members = fit_binning.members(b)
        if len(found) < len(members):
            logger.debug("%s at N=%d misses %d problems of bin %d; not a candidate",
                         strategy_label(strategy, beam_width), n, len(members) - len(found), b)
            continue
        candidates[(b, n)][(strategy, beam_width)] = list(found.values())
    pooled: dict[int, Arm] = {}  # N -> the best candidate over all fitting problems (complete in every bin)
    if min_gain is not None:
        for n in {n for _, n in candidates}:
            bins = [arms for (_, m), arms in candidates.items() if m == n]
            shared = set.intersection(*(set(arms) for arms in bins))
            if shared:
                pooled[n] = _best_arm({arm: [o for arms in bins for o in arms[arm]] for arm in shared})
    choices: dict[tuple[int, int], StrategyChoice] = {}
    for (b, n), arms in candidates.items():
        arm = _best_arm(arms)
        if n in pooled and _mean_accuracy(arms[arm]) - _mean_accuracy(arms[pooled[n]]) <= min_gain:
            arm = pooled[n]
        choices[(b, n)] = StrategyChoice(arm[0], arm[1], _mean_accuracy(arms[arm]), len(arms[arm]))
    if not choices:
        raise ValueError("no strategy has outcomes for every fitting problem of any bin; run the strategies on all problems")
    return Router(fit_binning.kind, fit_binning.bin_edges, fit_binning.num_bins, choices, fit_binning.k)


def apply_router(
    router: Router, outcomes: Iterable[ProblemOutcome], difficulty: Mapping[str, float], problem_ids: Iterable[str]
) -> list[ProblemOutcome]:
    """Compute-optimal outcome of each problem at each budget: the outcome of the strategy routed to."""
    index = {(o.problem_id, o.strategy, o.beam_width, o.n): o for o in outcomes}
    result = []
    for pid in sorted(set(problem_ids)):
        if pid not in difficulty:
            raise ValueError(f"problem {pid!r} has no difficulty value; it cannot be routed")
        bin_index = router.bin_of(difficulty[pid])
        for budget in router.budgets:
            choice = router.choice.get((bin_index, budget))
            if choice is None:
                logger.warning("problem %r: no router choice for bin %d at N=%d; left out", pid, bin_index, budget)
                continue
            chosen = index.get((pid, choice.strategy, choice.beam_width, budget))
            if chosen is None:
                raise ValueError(f"problem {pid!r} has no {choice.label} outcome at N={budget}, the routed choice; "
                                 "run every candidate strategy on every problem")
            result.append(replace(chosen, strategy=COMPUTE_OPTIMAL, beam_width=None))
    return result


@dataclass(frozen=True)
class ComputeSaving:
    """How much smaller a budget compute-optimal needs to match one single strategy's best held-out accuracy."""

    reference: str
    """Label of the single strategy."""
    reference_n: int
    """Smallest N at which the single strategy reaches its best accuracy."""
    reference_accuracy: float
    compute_optimal_n: int | None
    """Smallest N at which compute-optimal reaches that accuracy; None when it never does."""
    compute_optimal_accuracy: float | None
    token_ratio: float | None
    """Reference tokens / compute-optimal tokens (policy + PRM) per problem at those N."""
    flops_ratio: float | None
    """Reference FLOPs / compute-optimal FLOPs; None without parameter counts."""


@dataclass(frozen=True)
class EqualBudgetGap:
    """Compute-optimal minus one single strategy at the same N, paired over the held-out problems."""

    n: int
    reference: str
    """Label of the single strategy."""
    difference: float
    """Mean over problems of (compute-optimal accuracy - the strategy's accuracy); > 0: compute-optimal is ahead."""
    low: float
    high: float
    """95% interval of the mean difference (`inference.evaluation.paired`: normal approximation of the paired
    per-problem differences)."""
    num_problems: int


@dataclass(frozen=True)
class ComputeOptimalReport:
    """Held-out comparison of compute-optimal routing against every single strategy at equal budget."""

    bin_kind: BinKind
    router: Router
    """The router for the inference arm: fitted on `fit_ids` (all problems when cross-fitting)."""
    fit_ids: tuple[str, ...]
    heldout_ids: tuple[str, ...]
    """Problems in the held-out comparison (all problems when cross-fitting, each routed by the other folds)."""
    points: tuple[MetricPoint, ...]
    """Held-out points, compute-optimal and single strategies, overall and per (held-out) bin."""
    savings: tuple[ComputeSaving, ...]
    """One per single strategy, the best single strategy (highest accuracy) first."""
    folds: int | None = None
    """Cross-fitting folds; None for one fit / held-out split."""
    gaps: tuple[EqualBudgetGap, ...] = ()
    """Compute-optimal vs each single strategy at each N, with a 95% interval (N ascending, then by label)."""

    @property
    def heldout_description(self) -> str:
        """'100 held-out problems (5-fold cross-fitting)' for titles and summaries."""
        how = f" ({self.folds}-fold cross-fitting)" if self.folds else ""
        return f"{len(self.heldout_ids)} held-out problems{how}"

    def to_dict(self) -> dict:
        return {
            "bin_kind": self.bin_kind, "router": self.router.to_dict(), "fit_ids": list(self.fit_ids),
            "heldout_ids": list(self.heldout_ids), "points": [asdict(p) for p in self.points],
            "savings": [asdict(s) for s in self.savings], "folds": self.folds,
            "gaps": [asdict(g) for g in self.gaps],
        }

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "compute-optimal report") -> ComputeOptimalReport:
        expected = {"bin_kind", "router", "fit_ids", "heldout_ids", "points", "savings", "folds"}
        # "gaps" came later: a report without them (an earlier eval run) still reads, with no gaps.
        if not isinstance(data, dict) or not expected <= set(data) <= expected | {"gaps"}:
            raise ValueError(f"{where}: not a compute-optimal report (expected keys {sorted(expected)}); "
                             "it is written by `ttc-infer eval`")
        return cls(
            bin_kind=data["bin_kind"], router=Router.from_dict(data["router"], where=f"{where}: router"),
            fit_ids=tuple(data["fit_ids"]), heldout_ids=tuple(data["heldout_ids"]), folds=data["folds"],
            points=tuple(record_from_dict(MetricPoint, p, where=f"{where}: point {i}")
                         for i, p in enumerate(data["points"])),
            savings=tuple(record_from_dict(ComputeSaving, s, where=f"{where}: saving {i}")
                          for i, s in enumerate(data["savings"])),
            gaps=tuple(record_from_dict(EqualBudgetGap, g, where=f"{where}: gap {i}")
                       for i, g in enumerate(data.get("gaps", []))),
        )


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def compute_savings(points: Sequence[MetricPoint]) -> list[ComputeSaving]:
    """Overall points -> the saving of compute-optimal against each single strategy (best strategy first)."""
    overall = select(points)
    optimal = sorted((p for p in overall if p.strategy == COMPUTE_OPTIMAL), key=lambda p: p.n)
    arms: dict[str, list[MetricPoint]] = defaultdict(list)
    for p in overall:
        if p.strategy not in _EXCLUDED:
            arms[p.label].append(p)
    savings = []
    for label, arm in arms.items():
        ref = min(arm, key=lambda p: (-p.accuracy, p.n))
        reached = next((p for p in optimal if p.accuracy >= ref.accuracy - 1e-12), None)
        savings.append(
            ComputeSaving(
                reference=label, reference_n=ref.n, reference_accuracy=ref.accuracy,
                compute_optimal_n=None if reached is None else reached.n,
                compute_optimal_accuracy=None if reached is None else reached.accuracy,
                token_ratio=None if reached is None else _ratio(
                    ref.policy_tokens + ref.prm_tokens, reached.policy_tokens + reached.prm_tokens),
                flops_ratio=None if reached is None else _ratio(ref.flops, reached.flops),
            )
        )
    return sorted(savings, key=lambda s: (-s.reference_accuracy, s.reference))


def equal_budget_gaps(routed: Sequence[ProblemOutcome], singles: Sequence[ProblemOutcome]) -> list[EqualBudgetGap]:
    """Paired differences of compute-optimal against every single strategy that has an outcome for each routed
    problem at that N, with `inference.evaluation.paired`'s 95% interval."""
    optimal: dict[int, dict[str, float]] = defaultdict(dict)
    for o in routed:
        optimal[o.n][o.problem_id] = o.accuracy
    arms: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for o in singles:
        if o.strategy not in _EXCLUDED and o.problem_id in optimal.get(o.n, {}):
            arms[(o.n, strategy_label(o.strategy, o.beam_width))][o.problem_id] = o.accuracy
    gaps = []
    for (n, label), accuracy in sorted(arms.items()):
        if len(accuracy) < len(optimal[n]):
            continue  # the strategy was not run on every routed problem at this N: no paired comparison
        paired = paired_difference(optimal[n], accuracy, a_name=f"{COMPUTE_OPTIMAL} at N={n}",
                                   b_name=f"{label} at N={n}")
        gaps.append(EqualBudgetGap(n, label, paired.difference, paired.low, paired.high, paired.num_problems))
    return gaps


def evaluate_compute_optimal(
    outcomes: Sequence[ProblemOutcome],
    binning: Binning,
    *,
    folds: int | None = 5,
    fit_fraction: float = 0.5,
    min_gain: float | None = None,
    seed: int = 0,
    policy_params: int | None = None,
    prm_params: int | None = None,
) -> ComputeOptimalReport:
    """Compare compute-optimal routing with single strategies on problems no router it used was fitted on.

    `folds`: cross-fitting, every problem routed by a router fitted on the other folds; None: fit on a seeded
    `fit_fraction` of the problems and compare on the rest. Per-bin points use the bins of the returned router.
    """
    if folds is None:
        fit_ids, heldout_ids = split_ids(binning.values, fit_fraction=fit_fraction, seed=seed)
        router = fit_router(outcomes, binning, fit_ids, min_gain=min_gain)
        routed = apply_router(router, outcomes, binning.values, heldout_ids)
    else:
        fit_ids = heldout_ids = sorted(binning.values)
        routed = []
        for fold in fold_ids(heldout_ids, folds=folds, seed=seed):
            held = set(fold)
            fold_router = fit_router(outcomes, binning, [p for p in heldout_ids if p not in held], min_gain=min_gain)
            routed += apply_router(fold_router, outcomes, binning.values, fold)
        router = fit_router(outcomes, binning, fit_ids, min_gain=min_gain)
    heldout_bins = {pid: router.bin_of(binning.values[pid]) for pid in heldout_ids}
    singles = [o for o in outcomes if o.strategy != COMPUTE_OPTIMAL]
    points = aggregate(
        singles + routed, bins=heldout_bins, bin_kind=binning.kind, problem_ids=heldout_ids,
        policy_params=policy_params, prm_params=prm_params,
    )
    return ComputeOptimalReport(
        bin_kind=binning.kind, router=router, fit_ids=tuple(fit_ids), heldout_ids=tuple(heldout_ids),
        points=tuple(points), savings=tuple(compute_savings(points)), folds=folds,
        gaps=tuple(equal_budget_gaps(routed, singles)),
    )
