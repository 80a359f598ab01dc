"""Difficulty bins: quintiles with ties kept whole, bin edges for new values, oracle and predicted signals."""

from __future__ import annotations

import math

import pytest

from inference.evaluation.bins import (
    level_bins,
    oracle_bins,
    oracle_pass_at_1,
    predicted_bins,
    predicted_scores,
    quantile_bins,
)
from tests.unit.evaluation.helpers import exact_grader, exact_grouper, row, sample


def test_distinct_values_make_equal_quintiles_easiest_first():
    values = {f"p{i}": i / 10 for i in range(10)}
    binning = quantile_bins(values, kind="oracle")
    assert binning.bins == {"p9": 1, "p8": 1, "p7": 2, "p6": 2, "p5": 3, "p4": 3, "p3": 4, "p2": 4, "p1": 5, "p0": 5}
    assert binning.bin_edges == pytest.approx((0.75, 0.55, 0.35, 0.15))
    for pid, value in values.items():
        assert binning.bin_of(value) == binning.bins[pid]
    assert binning.bin_of(2.0) == 1 and binning.bin_of(-1.0) == 5


def test_uneven_count_bins():
    binning = quantile_bins({f"p{i}": float(i) for i in range(7)}, kind="predicted")
    # Ranks 0..6 (p6 first), middles r + 0.5: floor((r + 0.5) * 5 / 7) + 1 = 1 2 2 3 4 4 5.
    assert [binning.bins[f"p{i}"] for i in range(6, -1, -1)] == [1, 2, 2, 3, 4, 4, 5]


def test_tie_groups_go_whole_to_the_bin_of_their_mean_rank():
    values = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5} | {f"z{i}": 0.0 for i in range(6)}
    binning = quantile_bins(values, kind="oracle")
    # a b c: span [0, 3), middle 1.5 -> bin 1; d: [3, 4) -> bin 2; six zeros: [4, 10), middle 7 -> bin 4.
    assert binning.members(1) == ["a", "b", "c"]
    assert binning.members(2) == ["d"]
    assert binning.members(3) == [] and binning.members(5) == []
    assert binning.members(4) == [f"z{i}" for i in range(6)]
    assert binning.bin_edges == (0.75, 0.25, 0.25, -math.inf)
    assert [binning.bin_of(v) for v in (1.0, 0.5, 0.3, 0.2, 0.0)] == [1, 2, 2, 4, 4]
    shuffled = dict(reversed(list(values.items())))
    assert quantile_bins(shuffled, kind="oracle") == binning


def test_all_equal_values_share_one_bin():
    binning = quantile_bins({"a": 0.3, "b": 0.3, "c": 0.3}, kind="predicted")
    assert set(binning.bins.values()) == {3}
    assert binning.bin_of(0.3) == 3 and binning.bin_of(0.9) == 3


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty set of problems"):
        quantile_bins({}, kind="oracle")
    with pytest.raises(ValueError, match="must be finite"):
        quantile_bins({"a": math.nan}, kind="oracle")


def test_oracle_and_predicted_signals():
    rows = [
        row("p1", "best_of_n", gold="A", completions=(sample("A", 0.9), sample("A", 0.7), sample("B", 0.2), sample(None, 0.0))),
        row("p2", "best_of_n", gold="B", completions=(sample("A", 0.1), sample("A", 0.3), sample("A", 0.5), sample("B", 0.9))),
        row("p1", "beam_search", n=4, beam_width=2, correct=True),
    ]
    assert oracle_pass_at_1(rows, grader=exact_grader, grouper=exact_grouper) == {"p1": 0.5, "p2": 0.25}
    assert predicted_scores(rows, k=2) == {"p1": pytest.approx(0.8), "p2": pytest.approx(0.2)}
    # Two problems in five bins: span middles 0.5 and 1.5 of [0, 2) fall in bins 2 and 4.
    assert oracle_bins(rows, grader=exact_grader, grouper=exact_grouper).bins == {"p1": 2, "p2": 4}
    predicted = predicted_bins(rows, k=2, num_bins=2)
    assert predicted.bins == {"p1": 1, "p2": 2} and predicted.bin_edges == pytest.approx((0.5,))
    assert predicted.k == 2
    with pytest.raises(ValueError, match="stores 4 samples but k=5"):
        predicted_scores(rows, k=5)
    unscored = [row("p1", "majority", completions=(sample("A", None),))]
    with pytest.raises(ValueError, match="has no PRM score"):
        predicted_scores(unscored, k=1)


def test_level_bins():
    rows = [row("p1", "majority", level=3), row("p2", "majority", level=None), row("p3", "dvts", level=5)]
    binning = level_bins(rows)
    assert binning.bins == {"p1": 3, "p3": 5} and binning.bin_of(4) == 4
    with pytest.raises(ValueError, match="level in 1..5"):
        binning.bin_of(0.5)
