"""Step-score aggregation: last, min, prod, and the errors for empty scores and unknown names."""

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
    ],
)
def test_aggregate_values(scores, how, expected):
    assert aggregate(scores, how) == pytest.approx(expected, abs=1e-12)


def test_aggregations_are_the_literal_set():
    assert AGGREGATIONS == ("last", "min", "prod")


@pytest.mark.parametrize("how", ["last", "min", "prod"])
def test_empty_scores_raise(how):
    with pytest.raises(ValueError, match="empty list of step scores"):
        aggregate([], how)


def test_unknown_aggregation_raises_listing_known():
    with pytest.raises(ValueError, match="unknown aggregation 'mean'; use one of last, min, prod"):
        aggregate([0.5], "mean")
