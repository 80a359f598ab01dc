"""Difficulty bins: given levels, oracle pass@1 quintiles (needs gold) and predicted PRM-score quintiles (no gold).

Quintiles, ties included: problems are ranked by their value, highest (easiest) first; problem at rank r
(0-based) covers the span [r, r + 1) of [0, P), and a span whose middle m lies in [(b-1) P / B, b P / B) is in
bin b, so bin 1 is the easiest. Problems with exactly equal values are never split: a tie group's span is the
union of its members' spans and the whole group goes to the bin of its middle. Bins are therefore contiguous
ranges of values, sizes are as equal as the ties allow, and a bin can be empty when a large tie group spans it
(e.g. many problems with pass@1 = 0). The result does not depend on input order.

The edges between bins are midpoints between neighbouring bins' values, so `Binning.bin_of` puts a new value
(a held-out problem's predicted score, read before search) in a bin the same way: value >= bin_edges[q-1]
means bin <= q.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from inference.evaluation.metrics import (
    AnswerMatcher,
    BinKind,
    Grouper,
    default_grading,
    prepare_samples,
)
from inference.strategies import is_subsampled, subsampled_strategies
from inference.types import ResultRow

NUM_BINS = 5


@dataclass(frozen=True)
class Binning:
    """Problems assigned to difficulty bins 1..num_bins (1 = easiest), with the rule to bin a new value."""

    kind: BinKind
    bins: dict[str, int]
    """Problem id -> bin."""
    values: dict[str, float]
    """Problem id -> the difficulty signal (pass@1, mean PRM score: higher is easier; for levels, the level)."""
    bin_edges: tuple[float, ...]
    """Non-increasing, num_bins - 1 of them: value >= bin_edges[q-1] puts a value in bin <= q (empty for levels)."""
    num_bins: int = NUM_BINS
    k: int | None = None
    """Predicted bins: how many first samples' PRM scores were averaged into each value."""

    def bin_of(self, value: float) -> int:
        """Bin of a new value: the level itself for level bins, else by the bin edges."""
        if self.kind == "level":
            if value != int(value) or not 1 <= value <= self.num_bins:
                raise ValueError(f"level bins need a level in 1..{self.num_bins}, got {value}")
            return int(value)
        return 1 + sum(value < t for t in self.bin_edges)

    def members(self, bin_index: int) -> list[str]:
        return sorted(pid for pid, b in self.bins.items() if b == bin_index)


def quantile_bins(
    values: Mapping[str, float], *, kind: BinKind, num_bins: int = NUM_BINS, k: int | None = None
) -> Binning:
    """Equal-count bins of `values` (higher = easier = bin 1), tie groups kept whole (module docstring)."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    if not values:
        raise ValueError("cannot bin an empty set of problems; pass at least one problem's value")
    bad = {pid: v for pid, v in values.items() if not math.isfinite(v)}
    if bad:
        raise ValueError(f"difficulty values must be finite, got {bad}; check the scores of these problems")
    ordered = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    total = len(ordered)
    bins: dict[str, int] = {}
    start = 0
    while start < total:
        end = start
        while end + 1 < total and ordered[end + 1][1] == ordered[start][1]:
            end += 1
        middle = (start + end + 1) / 2
        bin_index = min(num_bins, math.floor(middle * num_bins / total) + 1)
        for pid, _ in ordered[start : end + 1]:
            bins[pid] = bin_index
        start = end + 1
    bin_edges = []
    for q in range(1, num_bins):
        easier = [values[p] for p, b in bins.items() if b <= q]
        harder = [values[p] for p, b in bins.items() if b > q]
        if not easier:
            bin_edges.append(math.inf)
        elif not harder:
            bin_edges.append(-math.inf)
        else:
            bin_edges.append((min(easier) + max(harder)) / 2)
    return Binning(kind=kind, bins=bins, values=dict(values), bin_edges=tuple(bin_edges), num_bins=num_bins, k=k)


def level_bins(rows: Iterable[ResultRow]) -> Binning:
    """Bins = the levels the benchmark gives (problems without a level are left out)."""
    levels = {row.problem_id: row.level for row in rows if row.level is not None}
    return Binning(
        kind="level", bins=dict(levels), values={p: float(v) for p, v in levels.items()}, bin_edges=(),
        num_bins=max(NUM_BINS, *levels.values()) if levels else NUM_BINS,
    )


def sampling_rows(rows: Iterable[ResultRow]) -> dict[str, ResultRow]:
    """Per problem, the sampling row with the most stored completions, preferring rows with PRM scores."""

    def rank(row: ResultRow) -> tuple[int, bool]:
        return len(row.completions), row.has_prm_scores

    chosen: dict[str, ResultRow] = {}
    for row in rows:
        if is_subsampled(row.strategy) and (
            row.problem_id not in chosen or rank(row) > rank(chosen[row.problem_id])
        ):
            chosen[row.problem_id] = row
    if not chosen:
        raise ValueError(
            f"no sampling rows ({', '.join(subsampled_strategies())}) with stored completions; difficulty bins are "
            "estimated from a sampling run, so run majority or best_of_n first"
        )
    return chosen


def oracle_pass_at_1(
    rows: Iterable[ResultRow], *, grader: AnswerMatcher | None = None, grouper: Grouper | None = None
) -> dict[str, float]:
    """Per problem, the fraction of its stored samples whose answer matches gold (needs gold answers)."""
    if grader is None or grouper is None:
        default_grader, default_grouper = default_grading()
        grader, grouper = grader or default_grader, grouper or default_grouper
    result = {}
    for pid, row in sampling_rows(rows).items():
        correct = prepare_samples(row, grader, grouper).correct
        result[pid] = sum(correct) / len(correct)
    return result


def predicted_scores(rows: Iterable[ResultRow], *, k: int) -> dict[str, float]:
    """Per problem, the mean agg_score of its first k stored samples: a difficulty estimate needing no gold."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    result = {}
    for pid, row in sampling_rows(rows).items():
        first = row.completions[:k]
        if len(first) < k:
            raise ValueError(f"problem {pid!r} stores {len(first)} samples but k={k}; use k <= {len(first)}")
        scores = [c.agg_score for c in first]
        if any(s is None for s in scores):
            raise ValueError(
                f"problem {pid!r}: a sample among the first {k} has no PRM score; predicted difficulty needs "
                "scored samples (best_of_n rows, or majority with score_with_prm=True)"
            )
        result[pid] = sum(scores) / k
    return result


def oracle_bins(rows: Iterable[ResultRow], *, grader: AnswerMatcher | None = None, grouper: Grouper | None = None,
                num_bins: int = NUM_BINS) -> Binning:
    """Quintiles of the policy's pass@1 estimated from its own samples (bin 1 = highest pass@1)."""
    return quantile_bins(oracle_pass_at_1(rows, grader=grader, grouper=grouper), kind="oracle", num_bins=num_bins)


def predicted_bins(rows: Iterable[ResultRow], *, k: int, num_bins: int = NUM_BINS) -> Binning:
    """Quintiles of the PRM's mean score over each problem's first k samples (bin 1 = highest score)."""
    return quantile_bins(predicted_scores(rows, k=k), kind="predicted", num_bins=num_bins, k=k)
