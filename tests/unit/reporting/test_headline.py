"""The headline facts that the HTML report and the pipeline's summary share: runnable arms, the best one, the cheapest
reaching a reference (ties alike in both), ceilings, greedy accuracy, paired comparisons with their 95% intervals."""

from __future__ import annotations

import pytest

from inference.evaluation.evaluations import ModelEvaluation
from inference.evaluation.metrics import MetricPoint, ProblemOutcome
from inference.evaluation.paired import PairedDifference
from inference.reporting.headline import (
    Arm,
    PairedComparison,
    accuracy_at,
    arms,
    best_arm,
    ceiling,
    compare,
    comparison_text,
    first_reaching,
    greedy_accuracy,
    greedy_outcomes,
    matches_by_verifier,
    per_problem,
    percent,
    point_at,
    runnable,
)


def point(strategy: str, n: int, accuracy: float, *, beam_width: int | None = None, level: int | None = None
          ) -> MetricPoint:
    return MetricPoint(strategy, n, level, None if level is None else "level", accuracy, None, 100.0 * n, 0.0, None,
                       50, beam_width=beam_width)


BY_VERIFIER = {
    "prm-oracle": [point("majority", 1, 0.30), point("majority", 16, 0.45), point("dvts", 4, 0.55, beam_width=4),
                   point("weighted_best_of_n", 16, 0.55), point("compute_optimal", 16, 0.9),
                   point("pass@n", 4, 0.7), point("pass@n", 16, 0.95), point("majority", 16, 0.99, level=1)],
    "likelihood": [point("best_of_n", 8, 0.62), point("weighted_best_of_n", 4, 0.60)],
    "synthetic-checker": [point("beam_search", 4, 0.97, beam_width=4)],
}


def test_runnable_points_leave_out_ceilings_summaries_and_bins():
    kept = runnable(BY_VERIFIER["prm-oracle"])
    assert [(p.strategy, p.n) for p in kept] == [("majority", 1), ("majority", 16), ("dvts", 4),
                                                 ("weighted_best_of_n", 16)]
    assert {a.verifier for a in arms(BY_VERIFIER)} == {"prm-oracle", "likelihood"}  # the exact checker is a ceiling


def test_best_arm_breaks_ties_by_the_smaller_budget_then_label_then_verifier():
    main = [Arm(p) for p in runnable(BY_VERIFIER["prm-oracle"])]
    best = best_arm(main)
    assert (best.point.label, best.point.n) == ("dvts (M=4)", 4)  # 55% at N=4 beats 55% at N=16
    pooled = best_arm(arms(BY_VERIFIER))
    assert (pooled.verifier, pooled.point.strategy, pooled.point.n) == ("likelihood", "best_of_n", 8)
    twins = [Arm(point("best_of_n", 4, 0.5), "b"), Arm(point("best_of_n", 4, 0.5), "a")]
    assert best_arm(twins).verifier == first_reaching(twins, 0.5).verifier == "a"
    assert best_arm([]) is None


def test_first_reaching_is_the_cheapest_then_the_most_accurate():
    pooled = arms(BY_VERIFIER)
    first = first_reaching(pooled, 0.55)
    assert (first.verifier, first.point.strategy, first.point.n) == ("likelihood", "weighted_best_of_n", 4)
    assert first_reaching(pooled, 0.96) is None  # only the exact checker gets there
    matches = matches_by_verifier(BY_VERIFIER, 0.61)
    assert list(matches) == ["likelihood"] and matches["likelihood"].point.n == 8


def test_accuracy_at_ceiling_and_greedy_accuracy():
    assert accuracy_at(BY_VERIFIER["prm-oracle"], "majority", 16) == 0.45
    assert accuracy_at(BY_VERIFIER["prm-oracle"], "beam_search", 16) is None
    assert ceiling(BY_VERIFIER["prm-oracle"]).n == 16 and ceiling(BY_VERIFIER["likelihood"]) is None
    sampled = ModelEvaluation("small", "prm-oracle", (), (point("majority", 1, 0.3),))
    unverified = ModelEvaluation("small", "", (), (point("majority", 1, 0.4),))
    assert greedy_accuracy([sampled], "small") == 0.3
    assert greedy_accuracy([sampled, unverified], "small") == 0.4  # the run without a verifier, when there is one
    assert greedy_accuracy([sampled], "large") is None
    assert percent(0.825) == "82.5%"


def outcome(pid: str, strategy: str, n: int, accuracy: float, beam_width: int | None = None) -> ProblemOutcome:
    return ProblemOutcome(pid, 1, strategy, n, beam_width, accuracy, None, 10.0 * n, 0.0)


# Five problems of a small policy's run with a PRM, and a large policy's greedy run on the same problems.
SMALL = ModelEvaluation("small", "prm-oracle", (
    *(outcome(f"q{i}", "weighted_best_of_n", 16, a) for i, a in enumerate((1, 1, 1, 0.5, 1))),
    *(outcome(f"q{i}", "majority", 16, a) for i, a in enumerate((0, 0, 0, 0, 1))),
    *(outcome(f"q{i}", "beam_search", 16, a, beam_width=4) for i, a in enumerate((1, 0, 1, 0, 1))),
), (point("weighted_best_of_n", 16, 0.9), point("majority", 16, 0.2), point("beam_search", 16, 0.6, beam_width=4)))
LARGE = ModelEvaluation("large", "", tuple(outcome(f"q{i}", "majority", 1, a) for i, a in enumerate((1, 1, 0, 0, 1))),
                        (point("majority", 1, 0.6),))


def test_an_arm_ahead_beyond_noise_reads_ahead_with_the_hand_computed_interval():
    weighted = per_problem(SMALL, point_at(SMALL.points, "weighted_best_of_n", 16))
    majority = per_problem(SMALL, point_at(SMALL.points, "majority", 16))
    assert weighted == {"q0": 1, "q1": 1, "q2": 1, "q3": 0.5, "q4": 1}
    # Differences 1, 1, 1, 0.5, 0: mean 0.7, sample variance 0.2, standard error sqrt(0.2 / 5) = 0.2,
    # half width 1.96 * 0.2 = 0.392.
    ahead = compare(weighted, majority, arm_name="weighted", against_name="majority")
    assert ahead == PairedComparison(
        "weighted", "majority", PairedDifference(pytest.approx(0.7), pytest.approx(0.308), pytest.approx(1.092), 5))
    assert ahead.verdict == "ahead"
    assert comparison_text(ahead, "majority") == "ahead of majority: +70.0 points, 95% CI +30.8 to +109.2, n=5"
    behind = compare(majority, weighted, arm_name="majority", against_name="weighted")
    assert behind.verdict == "behind"
    assert comparison_text(behind, "it") == "behind it: -70.0 points, 95% CI -109.2 to -30.8, n=5"


def test_arms_of_two_policies_pair_by_problem_id_and_an_interval_across_zero_is_within_noise():
    beam = per_problem(SMALL, point_at(SMALL.points, "beam_search", 16))
    large = greedy_outcomes([LARGE, SMALL], "large")
    assert large == {"q0": 1, "q1": 1, "q2": 0, "q3": 0, "q4": 1}
    # Differences 0, -1, 1, 0, 0: mean 0, sample variance 0.5, standard error sqrt(0.1) = 0.31623,
    # half width 0.61981.
    level = compare(beam, large, arm_name="beam", against_name="large greedy")
    half_width = 0.619806
    assert level.paired == PairedDifference(0.0, pytest.approx(-half_width, abs=1e-6),
                                            pytest.approx(half_width, abs=1e-6), 5)
    assert level.verdict == "within noise"
    assert comparison_text(level, "large greedy") == (
        "within noise of large greedy: +0.0 points, 95% CI -62.0 to +62.0, n=5")
    assert greedy_outcomes([SMALL], "large") is None


def test_arms_on_different_problem_sets_are_refused():
    shifted = {f"q{i + 1}": a for i, a in enumerate((1, 1, 0, 0, 1))}  # q1..q5 against q0..q4
    with pytest.raises(ValueError, match=r"cannot pair beam \(5 problems\) with large greedy \(5 problems\): their "
                                         r"problem sets differ \(1 only in beam, e.g. \['q0'\]; 1 only in large "
                                         r"greedy, e.g. \['q5'\]\)"):
        compare(per_problem(SMALL, point_at(SMALL.points, "beam_search", 16)), shifted, arm_name="beam",
                against_name="large greedy")


def test_an_arm_without_per_problem_outcomes_or_with_two_of_a_problem_is_refused():
    bare = ModelEvaluation("small", "prm-oracle", (), SMALL.points)
    with pytest.raises(ValueError, match=r"^runs/x/eval: no per-problem outcome of small with prm-oracle: "
                                         r"beam_search \(M=4\) at N=16, expected one per problem in outcomes.jsonl"):
        per_problem(bare, point_at(bare.points, "beam_search", 16), where="runs/x/eval")
    twice = ModelEvaluation("large", "", LARGE.outcomes + LARGE.outcomes[:1], LARGE.points)
    with pytest.raises(ValueError, match=r"^evaluation: two outcomes of problem 'q0' for large: majority at N=1; "
                                         r"evaluate each arm once"):
        greedy_outcomes([twice], "large", where="evaluation")
