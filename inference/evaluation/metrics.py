"""Accuracy at N per strategy, per difficulty level, and against compute (tokens and FLOPs), from result rows.

Subsampled strategies (the registry's entries with a `subset_selection`: majority, best_of_n,
weighted_best_of_n) store N_max completions per problem; their accuracy at N < N_max is the mean over size-N
subsets of those completions (`num_subsamples` seeded random
subsets, or every subset when there are no more than `num_subsamples` of them). pass@N (any correct answer
among N samples, the ceiling) uses the unbiased estimator 1 - C(n-c, N) / C(n, N). Tree search, adaptive
sampling and any other strategy need a run per N: their accuracy at N is read from their own rows (mean over
seeds).

Selection on a subset follows `inference.strategies.selection` exactly (solutions without an answer never win;
exact ties go to the earliest group / solution), but runs on answer-group ids: each problem's answers are
grouped by equivalence and each group is graded against gold once (by its first member's answer), so the
thousands of subsets per problem cost no further grading. A unit test checks both agree.

Compute of a subsampled strategy: policy tokens are the subset's own `num_tokens` summed; PRM tokens are the
row's `compute.prm_tokens` scaled by N / N_max (every completion is scored once, so PRM work is taken as
proportional to the number of completions kept); a vote (subset_selection "vote") and pass@N need no
verifier and count 0 PRM tokens. FLOPs = 2 x parameters x forward tokens for each model (`flops`): the tokens
each model actually ran, `compute.policy_forward_tokens` (prompt prefill and generated tokens) and
`compute.prm_forward_tokens` (fewer than the scored tokens where the PRM's prefix cache served). A subsampled
strategy's forward tokens at N are the subset's generated tokens plus the row's prefill scaled by N / N_max, and
the PRM's scaled by N / N_max. Rows written before forward tokens were counted read them as the scored tokens.

Spread (`accuracy_std`): each problem's correctness varies over its subsets (or over seeds for per-run
strategies) with variance v_i; `accuracy_std` = sqrt(sum v_i) / P is the standard deviation of the benchmark
accuracy over random draws of one subset (run) per problem. 0 at N = N_max; None for per-run strategies run
with a single seed.
"""

from __future__ import annotations

import itertools
import logging
import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Literal

import numpy as np

from inference.config import powers_of_two
from inference.strategies import STRATEGIES, get_strategy, is_subsampled, subsampled_strategies
from inference.types import Compute, ResultRow

logger = logging.getLogger(__name__)

PASS_AT_N = "pass@n"
"""Strategy name of the pass@N ceiling points (any correct answer among N samples)."""
BinKind = Literal["level", "oracle", "predicted"]
"""How problems were grouped: given levels, oracle pass@1 quintiles, or predicted (PRM score) quintiles."""

AnswerMatcher = Callable[[str, "str | None"], bool]
"""(gold, predicted answer) -> equivalent; `data_prep.grading.answers_match` by default."""
Grouper = Callable[[list], list]
"""answers -> one group id per answer (None for no answer); `data_prep.grading.group_equivalent` by default."""


@dataclass(frozen=True)
class MetricPoint:
    """Accuracy and mean per-problem compute of one strategy at one N, over all problems or one bin."""

    strategy: str
    n: int
    level: int | None
    """Level or bin index (1 = easiest bin); None for all problems."""
    bin_kind: BinKind | None
    """What `level` means; None when `level` is None."""
    accuracy: float
    accuracy_std: float | None
    """Spread over subsets (sampling) or seeds (per-run strategies), see the module docstring."""
    policy_tokens: float
    """Mean policy tokens generated per problem."""
    prm_tokens: float
    """Mean PRM tokens scored per problem."""
    flops: float | None
    """Mean FLOPs per problem (from the forward tokens); None when a needed parameter count was not given."""
    num_problems: int
    beam_width: int | None = None
    """Beam width M of beam search / DVTS points; None for other strategies."""
    policy_forward_tokens: float | None = None
    """Mean tokens the policy ran per problem (prefill included); None: not counted, read as `policy_tokens`."""
    prm_forward_tokens: float | None = None
    """Mean tokens the PRM ran per problem; None: not counted, read as `prm_tokens`."""

    @property
    def label(self) -> str:
        return strategy_label(self.strategy, self.beam_width)


@dataclass(frozen=True)
class ProblemOutcome:
    """Expected correctness and compute of one strategy at one N on one problem."""

    problem_id: str
    level: int | None
    strategy: str
    n: int
    beam_width: int | None
    accuracy: float
    """Mean correctness over subsets (sampling), exact probability (pass@N) or mean over seeds."""
    variance: float | None
    """Variance of correctness over subsets / seeds; None for a single run."""
    policy_tokens: float
    prm_tokens: float
    policy_forward_tokens: float | None = None
    """Tokens the policy ran (prefill included); None: read as `policy_tokens`."""
    prm_forward_tokens: float | None = None
    """Tokens the PRM ran; None: read as `prm_tokens`."""

    @property
    def forward_tokens(self) -> tuple[float, float]:
        """(policy, PRM) tokens run, what FLOPs count."""
        return (self.policy_tokens if self.policy_forward_tokens is None else self.policy_forward_tokens,
                self.prm_tokens if self.prm_forward_tokens is None else self.prm_forward_tokens)


@dataclass(frozen=True)
class ProblemSamples:
    """The stored samples of one problem, graded once: what subsampling needs."""

    problem_id: str
    level: int | None
    group_ids: tuple[int, ...]
    """Answer group per completion, numbered by first appearance; -1 for a completion without an answer."""
    group_correct: tuple[bool, ...]
    """Whether each group's answer (its first member's) matches gold."""
    scores: tuple[float | None, ...]
    """agg_score per completion (None when the samples were not scored)."""
    num_tokens: tuple[int, ...]
    prm_tokens: int
    """PRM tokens the row spent scoring all its completions."""
    prm_forward_tokens: int = 0
    """Of those, the tokens the PRM ran (`Compute.forward_tokens`)."""
    prefill_tokens: int = 0
    """Prompt tokens the policy ran for the row's samples (its forward tokens beyond the generated ones)."""

    @property
    def n_max(self) -> int:
        return len(self.group_ids)

    @property
    def correct(self) -> tuple[bool, ...]:
        return tuple(g >= 0 and self.group_correct[g] for g in self.group_ids)


def strategy_label(strategy: str, beam_width: int | None) -> str:
    """Display name: `beam_search (M=4)`, `majority`."""
    return strategy if beam_width is None else f"{strategy} (M={beam_width})"


def flops(compute: Compute, policy_params: int, prm_params: int) -> float:
    """FLOPs of one problem's compute (`forward_flops` of the tokens its policy and PRM ran)."""
    policy_run, prm_run = compute.forward_tokens
    return forward_flops(policy_params, policy_run, prm_params, prm_run)


def forward_flops(policy_params: int, policy_tokens: float, prm_params: int, prm_tokens: float) -> float:
    """The one FLOPs formula: 2 x parameters x tokens for the policy and for the PRM (forward passes only)."""
    return 2.0 * (policy_params * policy_tokens + prm_params * prm_tokens)


def default_grading() -> tuple[AnswerMatcher, Grouper]:
    """`data_prep.grading.answers_match` and `group_equivalent` (imported on first use)."""
    from data_prep.grading import answers_match, group_equivalent

    return answers_match, group_equivalent


def prepare_samples(row: ResultRow, grader: AnswerMatcher, grouper: Grouper) -> ProblemSamples:
    """Group a sampling row's answers by equivalence and grade each group once against gold."""
    if not row.completions:
        raise ValueError(f"row {row.problem_id!r} ({row.strategy}) has no stored completions to subsample")
    answers = [c.answer for c in row.completions]
    raw = list(grouper(answers))
    if len(raw) != len(answers):
        raise ValueError(f"grouper returned {len(raw)} group ids for {len(answers)} answers of {row.problem_id!r}")
    renumber: dict[int, int] = {}
    group_ids: list[int] = []
    correct: list[bool] = []
    for answer, group in zip(answers, raw):
        if group is None or answer is None:
            group_ids.append(-1)
            continue
        if group not in renumber:
            renumber[group] = len(renumber)
            correct.append(bool(grader(row.gold, answer)))
        group_ids.append(renumber[group])
    policy_run, prm_run = row.compute.forward_tokens
    return ProblemSamples(
        problem_id=row.problem_id,
        level=row.level,
        group_ids=tuple(group_ids),
        group_correct=tuple(correct),
        scores=tuple(c.agg_score for c in row.completions),
        num_tokens=tuple(c.num_tokens for c in row.completions),
        prm_tokens=row.compute.prm_tokens,
        prm_forward_tokens=prm_run,
        prefill_tokens=max(policy_run - row.compute.policy_tokens, 0),
    )


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def subsets(n_max: int, n: int, num_subsamples: int, rng: np.random.Generator) -> np.ndarray:
    """Index subsets of size n (rows, ascending): all of them when C(n_max, n) <= num_subsamples, else random."""
    if not 1 <= n <= n_max:
        raise ValueError(f"subset size n={n} must be in 1..{n_max} (the stored completions)")
    if math.comb(n_max, n) <= num_subsamples:
        return np.array(list(itertools.combinations(range(n_max), n)), dtype=np.int64).reshape(-1, n)
    draws = np.argsort(rng.random((num_subsamples, n_max)), axis=1)[:, :n]
    return np.sort(draws, axis=1)


def _select_groups(groups: np.ndarray, weights: np.ndarray, num_groups: int) -> np.ndarray:
    """Per subset row, the group with the largest total weight; exact ties go to the group seen first.

    Same rule as `inference.strategies.selection`: completions without an answer (group -1) never vote.
    Returns -1 for a subset with no answer at all.
    """
    num_rows, n = groups.shape
    has = groups >= 0
    rows = np.repeat(np.arange(num_rows), n).reshape(num_rows, n)
    totals = np.zeros((num_rows, num_groups + 1))
    np.add.at(totals, (rows[has], groups[has]), weights[has])
    first = np.full((num_rows, num_groups + 1), n, dtype=np.int64)
    positions = np.tile(np.arange(n), (num_rows, 1))
    np.minimum.at(first, (rows[has], groups[has]), positions[has])
    present = first < n
    best = np.where(present, totals, -np.inf).max(axis=1, keepdims=True)
    key = np.where(present & (totals == best), -first, np.iinfo(np.int64).min)
    winners = key.argmax(axis=1)
    return np.where(present.any(axis=1), winners, -1)


def subset_correctness(samples: ProblemSamples, strategy: str, index_sets: np.ndarray) -> np.ndarray:
    """0/1 correctness of `strategy` on each subset (row of completion indices)."""
    groups = np.asarray(samples.group_ids, dtype=np.int64)[index_sets]
    correct_of_group = np.append(np.asarray(samples.group_correct, dtype=bool), False)  # index -1 -> False
    num_groups = len(samples.group_correct)
    selection = get_strategy(strategy).subset_selection if is_subsampled(strategy) else None
    if selection is None:
        raise ValueError(f"{strategy!r} is not a subsampled strategy; use one of {', '.join(subsampled_strategies())}")
    if selection == "vote":
        winners = _select_groups(groups, np.ones(groups.shape), num_groups)
        return correct_of_group[winners].astype(float)
    if any(s is None for s, g in zip(samples.scores, samples.group_ids) if g >= 0):
        raise ValueError(
            f"problem {samples.problem_id!r}: {strategy} needs PRM scores but some stored completions have "
            "agg_score=None; score the samples with the PRM when generating them"
        )
    scores = np.array([s if s is not None else 0.0 for s in samples.scores], dtype=float)[index_sets]
    if selection == "weighted":
        winners = _select_groups(groups, scores, num_groups)
        return correct_of_group[winners].astype(float)
    masked = np.where(groups >= 0, scores, -np.inf)  # selection == "best"
    best = masked.argmax(axis=1)  # first of exact ties
    chosen = groups[np.arange(len(groups)), best]
    chosen = np.where(np.isfinite(masked.max(axis=1)), chosen, -1)
    return correct_of_group[chosen].astype(float)


def _rng(seed: int, problem_id: str, n: int) -> np.random.Generator:
    """Per (problem, N) stream: results do not depend on row order, and strategies share subsets."""
    return np.random.default_rng([seed, zlib.crc32(problem_id.encode()), n])


def sampling_outcomes(
    samples: ProblemSamples, strategy: str, ns: Sequence[int], *, num_subsamples: int, seed: int
) -> list[ProblemOutcome]:
    """`strategy`@N on one problem for each N, averaged over subsets of the stored samples."""
    outcomes = []
    tokens = np.asarray(samples.num_tokens, dtype=float)
    for n in ns:
        index_sets = subsets(samples.n_max, n, num_subsamples, _rng(seed, samples.problem_id, n))
        correct = subset_correctness(samples, strategy, index_sets)
        share = n / samples.n_max
        votes = get_strategy(strategy).subset_selection == "vote"
        prm = 0.0 if votes else samples.prm_tokens * share
        prm_run = 0.0 if votes else samples.prm_forward_tokens * share
        generated = float(tokens[index_sets].sum(axis=1).mean())
        outcomes.append(
            ProblemOutcome(
                problem_id=samples.problem_id, level=samples.level, strategy=strategy, n=n, beam_width=None,
                accuracy=float(correct.mean()), variance=float(correct.var()),
                policy_tokens=generated, prm_tokens=prm,
                policy_forward_tokens=generated + samples.prefill_tokens * share, prm_forward_tokens=prm_run,
            )
        )
    return outcomes


def pass_outcomes(samples: ProblemSamples, ns: Sequence[int]) -> list[ProblemOutcome]:
    """pass@N on one problem (exact expectation over all size-N subsets) for each N."""
    c = sum(samples.correct)
    mean_tokens = sum(samples.num_tokens) / samples.n_max
    outcomes = []
    for n in ns:
        p = pass_at_k(samples.n_max, c, n)
        outcomes.append(
            ProblemOutcome(
                problem_id=samples.problem_id, level=samples.level, strategy=PASS_AT_N, n=n, beam_width=None,
                accuracy=p, variance=p * (1.0 - p), policy_tokens=mean_tokens * n, prm_tokens=0.0,
                policy_forward_tokens=mean_tokens * n + samples.prefill_tokens * n / samples.n_max,
                prm_forward_tokens=0.0,
            )
        )
    return outcomes


def run_outcomes(rows: Iterable[ResultRow]) -> list[ProblemOutcome]:
    """Per-run strategies (beam search, DVTS, ...): correctness at each run N, averaged over seeds."""
    by_key: dict[tuple, list[ResultRow]] = defaultdict(list)
    for row in rows:
        by_key[(row.problem_id, row.strategy, row.n, row.beam_width)].append(row)
    outcomes = []
    for (problem_id, strategy, n, beam_width), group in by_key.items():
        seeds = [row.seed for row in group]
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                f"problem {problem_id!r}: several {strategy_label(strategy, beam_width)} rows at n={n} with the same "
                f"seed {seeds}; these are different settings of one strategy, so evaluate each settings' rows separately"
            )
        correct = np.array([float(row.correct) for row in group])
        outcomes.append(
            ProblemOutcome(
                problem_id=problem_id, level=group[0].level, strategy=strategy, n=n, beam_width=beam_width,
                accuracy=float(correct.mean()), variance=float(correct.var()) if len(group) > 1 else None,
                policy_tokens=float(np.mean([row.compute.policy_tokens for row in group])),
                prm_tokens=float(np.mean([row.compute.prm_tokens for row in group])),
                policy_forward_tokens=float(np.mean([row.compute.forward_tokens[0] for row in group])),
                prm_forward_tokens=float(np.mean([row.compute.forward_tokens[1] for row in group])),
            )
        )
    return outcomes


def default_ns(n_max: int) -> list[int]:
    """The sweep's budgets up to n_max (`powers_of_two`), with n_max itself included."""
    ns = list(powers_of_two(n_max))
    return ns if ns and ns[-1] == n_max else ns + [n_max]


def split_ids(ids: Iterable[str], *, fit_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of problem ids into (fit, held-out); independent of input order, both sides non-empty."""
    unique = sorted(set(ids))
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    if len(unique) < 2:
        raise ValueError(f"splitting needs at least 2 problems, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    num_fit = min(len(unique) - 1, max(1, round(fit_fraction * len(unique))))
    fit = sorted(unique[i] for i in order[:num_fit])
    return fit, sorted(unique[i] for i in order[num_fit:])


def fold_ids(ids: Iterable[str], *, folds: int, seed: int) -> list[list[str]]:
    """Seeded partition of problem ids into `folds` parts of near-equal size; independent of input order."""
    unique = sorted(set(ids))
    if folds < 2:
        raise ValueError(f"cross-fitting needs folds >= 2, got {folds}")
    if len(unique) < folds:
        raise ValueError(f"{folds} folds need at least {folds} problems, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    return [sorted(unique[i] for i in order[k::folds]) for k in range(folds)]


def _check_one_model(rows: Sequence[ResultRow]) -> None:
    policies = {row.policy for row in rows}
    prms = {row.prm for row in rows if row.prm}
    if len(policies) > 1 or len(prms) > 1:
        raise ValueError(
            f"rows mix policies {sorted(policies)} / PRMs {sorted(prms)}; evaluate each (policy, PRM) separately "
            "(split them with inference.evaluation.rows.by_model)"
        )


def problem_outcomes(
    rows: Sequence[ResultRow],
    *,
    ns: Sequence[int] | None = None,
    num_subsamples: int = 32,
    seed: int = 0,
    derive_sampling: bool = False,
    grader: AnswerMatcher | None = None,
    grouper: Grouper | None = None,
) -> list[ProblemOutcome]:
    """Per-problem outcomes of every strategy in `rows` at every N, plus the pass@N ceiling.

    Sampling rows give their own strategy at every N in `ns` (default: 1, 2, 4, ... up to each row's own number
    of samples, so a one-sample greedy row beside 64-sample rows gives N = 1 for its strategy alone), subsampled
    from the row with the most samples of each (problem, strategy); rows of the same sampling strategy at smaller
    N (a sweep that shares samples writes one per N) are left out. With `derive_sampling=True` the sampling
    strategies a problem has no row for are computed from one of its sampling rows (the largest with PRM scores):
    the samples are the same, only the selection differs.
    """
    if num_subsamples < 1:
        raise ValueError(f"num_subsamples must be >= 1, got {num_subsamples}")
    _check_one_model(rows)
    if grader is None or grouper is None:
        default_grader, default_grouper = default_grading()
        grader, grouper = grader or default_grader, grouper or default_grouper
    sampling: dict[str, dict[str, ResultRow]] = defaultdict(dict)  # problem -> strategy -> row
    others, superseded = [], 0
    for row in rows:
        if not is_subsampled(row.strategy):
            others.append(row)
            continue
        kept = sampling[row.problem_id].get(row.strategy)
        if kept is not None and len(kept.completions) == len(row.completions):
            raise ValueError(
                f"problem {row.problem_id!r} has two {row.strategy} rows with {len(row.completions)} samples "
                f"(seeds {kept.seed}, {row.seed}); evaluate one sampling run (seed) at a time"
            )
        superseded += kept is not None
        if kept is None or len(row.completions) > len(kept.completions):
            sampling[row.problem_id][row.strategy] = row
    if superseded:
        # A sweep with shared samples stores a row per N whose samples are the first N of the largest one.
        logger.info("%d sampling rows with fewer samples than their problem's largest were left out: "
                    "every N is subsampled from the largest stored set", superseded)
    outcomes = run_outcomes(others)
    if not sampling:
        return outcomes
    prepared: dict[tuple, ProblemSamples] = {}

    def samples_of(row: ResultRow) -> ProblemSamples:
        # Sampling strategies of one run usually store the same samples: group and grade them once.
        key = (row.problem_id, row.gold, row.level, row.compute.prm_tokens, row.completions)
        if key not in prepared:
            prepared[key] = prepare_samples(row, grader, grouper)
        return prepared[key]

    sizes = {len(row.completions) for by_strategy in sampling.values() for row in by_strategy.values()}
    given_ns = ns is not None
    if ns is None:
        ns = default_ns(max(sizes))
        if len(sizes) > 1:
            logger.info("sampling rows store %s completions; each is evaluated at N up to its own", sorted(sizes))
    for problem_id, by_strategy in sampling.items():
        for row in by_strategy.values():
            if given_ns and max(ns) > len(row.completions):
                raise ValueError(
                    f"N={max(ns)} exceeds the {len(row.completions)} completions stored for problem {problem_id!r} "
                    f"({row.strategy}); pass ns up to {len(row.completions)}"
                )
        # A derived strategy reuses the largest row whose samples carry PRM scores (majority may store none).
        scored = [r for r in by_strategy.values() if r.has_prm_scores]
        fallback = max(scored or list(by_strategy.values()), key=lambda r: len(r.completions))
        for strategy in subsampled_strategies() if derive_sampling else tuple(by_strategy):
            votes = get_strategy(strategy).subset_selection == "vote"
            if strategy not in by_strategy and not votes and not scored:
                # Nothing to derive a PRM selection from: e.g. a PRM with tree-search rows only, which the
                # unscored greedy row joins.
                continue
            source = by_strategy.get(strategy, fallback)
            outcomes += sampling_outcomes(samples_of(source), strategy, _up_to(ns, source),
                                          num_subsamples=num_subsamples, seed=seed)
        outcomes += pass_outcomes(samples_of(fallback), _up_to(ns, fallback))
    return outcomes


def _up_to(ns: Sequence[int], row: ResultRow) -> list[int]:
    return [n for n in ns if n <= len(row.completions)]


def _point(
    group: Sequence[ProblemOutcome], level: int | None, bin_kind: BinKind | None,
    policy_params: int | None, prm_params: int | None,
) -> MetricPoint:
    head = group[0]
    policy_tokens = float(np.mean([o.policy_tokens for o in group]))
    prm_tokens = float(np.mean([o.prm_tokens for o in group]))
    policy_run, prm_run = (float(value) for value in np.mean([o.forward_tokens for o in group], axis=0))
    variances = [o.variance for o in group]
    std = None if any(v is None for v in variances) else math.sqrt(sum(variances)) / len(group)
    point_flops = None
    if policy_params is not None and (prm_params is not None or prm_run == 0):
        point_flops = forward_flops(policy_params, policy_run, prm_params or 0, prm_run)
    return MetricPoint(
        strategy=head.strategy, n=head.n, level=level, bin_kind=bin_kind,
        accuracy=float(np.mean([o.accuracy for o in group])), accuracy_std=std,
        policy_tokens=policy_tokens, prm_tokens=prm_tokens, flops=point_flops, num_problems=len(group),
        beam_width=head.beam_width, policy_forward_tokens=policy_run, prm_forward_tokens=prm_run,
    )


def aggregate(
    outcomes: Iterable[ProblemOutcome],
    *,
    bins: Mapping[str, int] | None = None,
    bin_kind: BinKind = "level",
    include_overall: bool = True,
    problem_ids: Iterable[str] | None = None,
    policy_params: int | None = None,
    prm_params: int | None = None,
) -> list[MetricPoint]:
    """Mean over problems: one point per (strategy, beam width, N) overall and per bin.

    `bins` maps problem id -> bin (default: each outcome's level, bin_kind "level"); problems without a bin
    count only in the overall points. `problem_ids` restricts to those problems (e.g. a held-out split).
    """
    keep = None if problem_ids is None else set(problem_ids)
    groups: dict[tuple, list[ProblemOutcome]] = defaultdict(list)
    for o in outcomes:
        if keep is not None and o.problem_id not in keep:
            continue
        key = (o.strategy, o.beam_width, o.n)
        if include_overall:
            groups[key + (None,)].append(o)
        b = o.level if bins is None else bins.get(o.problem_id)
        if b is not None:
            groups[key + (b,)].append(o)
    points = [
        _point(group, key[3], None if key[3] is None else bin_kind, policy_params, prm_params)
        for key, group in groups.items()
    ]
    return sorted(points, key=_sort_key)


def strategy_rank(strategy: str) -> tuple[int, str]:
    """Sort key of a strategy name: the registry's order, then compute_optimal and pass@N, then alphabetical."""
    order = (*STRATEGIES, "compute_optimal", PASS_AT_N)  # read now: a strategy registered later sorts too
    return (order.index(strategy) if strategy in order else len(order), strategy)


def _sort_key(p: MetricPoint) -> tuple:
    return (p.bin_kind or "", p.level or 0, strategy_rank(p.strategy), p.beam_width or 0, p.n)


def compute_metrics(
    rows: Sequence[ResultRow],
    *,
    policy_params: int | None = None,
    prm_params: int | None = None,
    ns: Sequence[int] | None = None,
    num_subsamples: int = 32,
    seed: int = 0,
    derive_sampling: bool = False,
    grader: AnswerMatcher | None = None,
    grouper: Grouper | None = None,
) -> list[MetricPoint]:
    """`problem_outcomes` then `aggregate` by level: the standard metric table of one (policy, PRM) run."""
    outcomes = problem_outcomes(
        rows, ns=ns, num_subsamples=num_subsamples, seed=seed, derive_sampling=derive_sampling,
        grader=grader, grouper=grouper,
    )
    return aggregate(outcomes, policy_params=policy_params, prm_params=prm_params)


def select(
    points: Iterable[MetricPoint],
    *,
    strategy: str | None = None,
    level: int | None = None,
    bin_kind: BinKind | None = None,
    beam_width: int | None = None,
) -> list[MetricPoint]:
    """Points of one bin (level=None, bin_kind=None: overall), optionally of one strategy / beam width."""
    return [
        p for p in points
        if p.level == level and p.bin_kind == bin_kind
        and (strategy is None or p.strategy == strategy)
        and (beam_width is None or p.beam_width == beam_width)
    ]


def record_from_dict(cls: type, data: Mapping, *, where: str) -> object:
    """A flat frozen record (MetricPoint, ProblemOutcome, ...) from its `asdict` form; unknown / missing keys raise.

    Extra `label`, `policy` and `prm` keys (written next to the record's own fields) are ignored.
    """
    names = [f.name for f in fields(cls) if f.init]
    required = [f.name for f in fields(cls) if f.init and f.default is MISSING and f.default_factory is MISSING]
    unknown = sorted(set(data) - set(names) - {"label", "policy", "prm"})
    missing = [name for name in required if name not in data]
    if unknown or missing:
        raise ValueError(f"{where}: not a {cls.__name__} (unknown keys {unknown}, missing keys {missing}); "
                         "files of metrics are written by `ttc-infer eval`")
    return cls(**{name: data[name] for name in names if name in data})


def points_to_records(points: Iterable[MetricPoint]) -> list[dict]:
    """One flat dict per point (for CSV, JSON, W&B tables)."""
    return [asdict(p) | {"label": p.label} for p in points]


def accuracy_table(
    points: Iterable[MetricPoint], *, level: int | None = None, bin_kind: BinKind | None = None
) -> list[dict]:
    """One dict per strategy label with an `N=k` column per budget: accuracy in % (± std when known)."""
    table: dict[str, dict] = {}
    for p in select(points, level=level, bin_kind=bin_kind):
        cell = f"{100 * p.accuracy:.1f}" + ("" if not p.accuracy_std else f" ± {100 * p.accuracy_std:.1f}")
        table.setdefault(p.label, {"strategy": p.label})[f"N={p.n}"] = cell
    columns = sorted({k for r in table.values() for k in r if k != "strategy"}, key=lambda k: int(k[2:]))
    return [{"strategy": name} | {c: r.get(c, "") for c in columns} for name, r in table.items()]
