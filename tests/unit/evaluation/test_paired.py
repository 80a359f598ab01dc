"""The one paired 95% interval: hand-computed differences, one problem, and the refusal to pair different problems."""

from __future__ import annotations

import math

import pytest

from inference.evaluation.paired import PairedDifference, paired_difference


def test_paired_difference_is_the_mean_difference_plus_minus_1_96_standard_errors():
    a = {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 1.0}
    b = {"q4": 1.0, "q3": 0.0, "q2": 0.0, "q1": 1.0}  # paired by id, not by order
    # Differences 0, 1, 0, 0: mean 0.25, sample std 0.5, standard error 0.5 / 2 = 0.25, half width 0.49.
    paired = paired_difference(a, b)
    assert paired == PairedDifference(0.25, pytest.approx(-0.24), pytest.approx(0.74), 4)
    assert not paired.excludes_zero
    # Reversed, the same interval mirrored.
    assert paired_difference(b, a) == PairedDifference(-0.25, pytest.approx(-0.74), pytest.approx(0.24), 4)


def test_an_interval_above_or_below_zero_excludes_it():
    a = {f"q{i}": 1.0 for i in range(5)}
    b = {"q0": 0.0, "q1": 0.0, "q2": 0.0, "q3": 0.5, "q4": 1.0}
    # Differences 1, 1, 1, 0.5, 0: mean 0.7, sample variance 0.2, standard error 0.2, half width 0.392.
    ahead = paired_difference(a, b)
    assert ahead == PairedDifference(pytest.approx(0.7), pytest.approx(0.308), pytest.approx(1.092), 5)
    assert ahead.excludes_zero and paired_difference(b, a).excludes_zero


def test_one_problem_has_an_unbounded_interval():
    assert paired_difference({"q": 1.0}, {"q": 0.0}) == PairedDifference(1.0, -math.inf, math.inf, 1)


def test_arms_on_different_problems_are_refused():
    with pytest.raises(ValueError, match=r"cannot pair small \(2 problems\) with large \(2 problems\): their problem "
                                         r"sets differ \(1 only in small, e.g. \['q2'\]; 1 only in large, e\.g\. "
                                         r"\['q3'\]\)"):
        paired_difference({"q1": 1.0, "q2": 0.0}, {"q1": 1.0, "q3": 1.0}, a_name="small", b_name="large")
    with pytest.raises(ValueError, match="neither has a per-problem result"):
        paired_difference({}, {})
