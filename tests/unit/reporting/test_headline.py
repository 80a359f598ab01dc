"""The headline facts that the HTML report and the pipeline's summary share: runnable arms, the best one, the cheapest
reaching a reference (ties alike in both), ceilings, greedy accuracy."""

from __future__ import annotations

from inference.evaluation.evaluations import ModelEvaluation
from inference.evaluation.metrics import MetricPoint
from inference.reporting.headline import (
    Arm,
    accuracy_at,
    arms,
    best_arm,
    ceiling,
    first_reaching,
    greedy_accuracy,
    matches_by_verifier,
    percent,
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
