"""Step-score aggregation: last, min, prod, mean, and the errors for empty scores and unknown names."""

import pytest

from inference.scoring.aggregate import AGGREGATIONS, aggregate


@pytest.mark.parametrize(
    ("scores", "how", "expected"),
    [
        ([0.9, 0.2, 0.7], "last", 0.7),
        ([0.9, 0.2, 0.7], "min", 0.2),
        ([0.9, 0.2, 0.7], "prod", 0.9 * 0.2 * 0.7),
        ([0.4], "last", 0.4),
        ([0.4], "min", 0.4),
        ([0.4], "prod", 0.4),
        ((0.5, 0.5), "prod", 0.25),
        ([0.9, 0.2, 0.7], "mean", 0.6),
        ([0.4], "mean", 0.4),
        ((1.0, 0.0, 0.5, 0.5), "mean", 0.5),
    ],
)
def test_aggregate_values(scores, how, expected):
    assert aggregate(scores, how) == pytest.approx(expected, abs=1e-12)


def test_aggregations_are_the_literal_set():
    assert AGGREGATIONS == ("last", "min", "prod", "mean")


@pytest.mark.parametrize("how", ["last", "min", "prod", "mean"])
def test_empty_scores_raise(how):
    with pytest.raises(ValueError, match="empty list of step scores"):
        aggregate([], how)


def test_unknown_aggregation_raises_listing_known():
    with pytest.raises(ValueError, match="unknown aggregation 'median'; use one of last, min, prod, mean"):
        aggregate([0.5], "median")


def test_mean_ranks_a_solution_with_one_weak_step_above_min_and_prod_do():
    # Two solutions: one steady, one with a single weak step among strong ones. Mean (RLHFlow's best-of-N choice)
    # prefers the second; min and prod prefer the first: the aggregations really differ.
    steady, one_weak = [0.7, 0.7, 0.7], [0.95, 0.3, 0.95]
    assert aggregate(one_weak, "mean") > aggregate(steady, "mean")
    assert aggregate(one_weak, "min") < aggregate(steady, "min")
    assert aggregate(one_weak, "prod") < aggregate(steady, "prod")
