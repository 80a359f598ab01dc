"""Compute-optimal routing on a hand-made accuracy table: choices, route(), held-out comparison, savings, JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from inference.evaluation.bins import quantile_bins
from inference.evaluation.compute_optimal import (
    COMPUTE_OPTIMAL,
    Router,
    StrategyChoice,
    ComputeOptimalReport,
    EqualBudgetGap,
    apply_router,
    compute_savings,
    equal_budget_gaps,
    evaluate_compute_optimal,
    fit_router,
)
from inference.evaluation.metrics import PASS_AT_N, ProblemOutcome, aggregate, select

# Eight problems; predicted difficulty (higher = easier): q0-q3 easy, q4-q7 hard.
VALUES = {"q0": 0.9, "q1": 0.75, "q2": 0.7, "q3": 0.6, "q4": 0.25, "q5": 0.2, "q6": 0.15, "q7": 0.1}
EASY = {"q0", "q1", "q2", "q3"}
# Accuracy per (strategy, N) on easy / hard problems. Majority costs 10 policy tokens per sample, beam search
# the same plus 20 PRM tokens per sample. pass@N is perfect everywhere but is never a candidate.
TABLE = {
    ("majority", None, 4): (1.0, 0.0),
    ("majority", None, 16): (1.0, 0.0),
    ("beam_search", 4, 4): (0.5, 1.0),
    ("beam_search", 4, 16): (1.0, 1.0),
    (PASS_AT_N, None, 4): (1.0, 1.0),
}


def outcomes() -> list[ProblemOutcome]:
    result = []
    for (strategy, beam_width, n), (easy, hard) in TABLE.items():
        for pid in VALUES:
            result.append(
                ProblemOutcome(
                    problem_id=pid, level=None, strategy=strategy, n=n, beam_width=beam_width,
                    accuracy=easy if pid in EASY else hard, variance=0.0,
                    policy_tokens=10.0 * n, prm_tokens=20.0 * n if strategy == "beam_search" else 0.0,
                )
            )
    return result


def fitted() -> Router:
    binning = quantile_bins(VALUES, kind="predicted", num_bins=2)
    return fit_router(outcomes(), binning, ["q0", "q1", "q4", "q5"])


def test_choices_per_bin_and_budget():
    router = fitted()
    # Fitting values .9 .75 | .25 .2 -> threshold (.75 + .25) / 2 = .5.
    assert router.bin_edges == (0.5,)
    assert router.budgets == [4, 16]
    assert router.choice[(1, 4)] == StrategyChoice("majority", None, 1.0, 2)
    assert router.choice[(2, 4)] == StrategyChoice("beam_search", 4, 1.0, 2)
    # Easy at N=16: majority and beam search tie at 1.0; majority is cheaper (160 vs 480 tokens).
    assert router.choice[(1, 16)].strategy == "majority"
    assert router.choice[(2, 16)].label == "beam_search (M=4)"
    assert router.choice[(2, 16)].settings == {"beam_width": 4}
    assert router.k is None
    binning = replace(quantile_bins(VALUES, kind="predicted", num_bins=2), k=3)
    assert fit_router(outcomes(), binning, ["q0", "q1", "q4", "q5"]).k == 3  # the inference arm averages 3 scores


def test_route_by_predicted_score():
    router = fitted()
    assert router.route(0.95, 4).strategy == "majority"
    assert router.route(0.5, 4).strategy == "majority"  # on the threshold: the easier bin
    assert router.route(0.49, 4).strategy == "beam_search"
    assert router.route(0.0, 16).beam_width == 4
    with pytest.raises(ValueError, match=r"budget 8 is not in the router's budgets \[4, 16\]"):
        router.route(0.5, 8)


def test_held_out_comparison_and_savings():
    router = fitted()
    heldout = ["q2", "q3", "q6", "q7"]
    routed = apply_router(router, outcomes(), VALUES, heldout)
    assert {o.problem_id: o.strategy for o in routed} == {pid: COMPUTE_OPTIMAL for pid in heldout}
    points = aggregate(outcomes() + routed, problem_ids=heldout, policy_params=2, prm_params=3)
    overall = {(p.label, p.n): p for p in select(points)}
    assert overall[(COMPUTE_OPTIMAL, 4)].accuracy == 1.0
    assert overall[("majority", 4)].accuracy == 0.5
    assert overall[("beam_search (M=4)", 4)].accuracy == 0.75
    # Compute-optimal at N=4: easy -> majority (40 tokens), hard -> beam (40 + 80): mean 40 policy, 40 PRM.
    assert (overall[(COMPUTE_OPTIMAL, 4)].policy_tokens, overall[(COMPUTE_OPTIMAL, 4)].prm_tokens) == (40.0, 40.0)
    savings = {s.reference: s for s in compute_savings(points)}
    assert list(savings)[0] == "beam_search (M=4)"  # the best single strategy comes first
    beam = savings["beam_search (M=4)"]
    assert (beam.reference_n, beam.reference_accuracy, beam.compute_optimal_n) == (16, 1.0, 4)
    # Beam @16: 160 policy + 320 PRM tokens vs 80; FLOPs 2(2*160 + 3*320) = 2560 vs 2(2*40 + 3*40) = 400.
    assert beam.token_ratio == pytest.approx(6.0)
    assert beam.flops_ratio == pytest.approx(6.4)
    assert savings["majority"].reference_n == 4 and savings["majority"].token_ratio == pytest.approx(0.5)
    assert PASS_AT_N not in savings


def test_evaluate_compute_optimal_fits_on_its_split():
    binning = quantile_bins(VALUES, kind="predicted", num_bins=2)
    report = evaluate_compute_optimal(outcomes(), binning, folds=None, fit_fraction=0.5, seed=3)
    assert report.folds is None and report.heldout_description == "4 held-out problems"
    assert sorted(report.fit_ids + report.heldout_ids) == sorted(VALUES)
    assert len(report.fit_ids) == 4 and not set(report.fit_ids) & set(report.heldout_ids)
    assert report.router == fit_router(outcomes(), binning, report.fit_ids)
    co = {p.n: p for p in select(report.points, strategy=COMPUTE_OPTIMAL)}
    assert co[4].num_problems == 4
    assert co[16].accuracy == 1.0
    per_bin = [p for p in report.points if p.strategy == COMPUTE_OPTIMAL and p.level is not None]
    assert {p.bin_kind for p in per_bin} == {"predicted"}


def test_json_round_trip_and_errors(tmp_path):
    router = fitted()
    path = tmp_path / "router.json"
    router.save(path)
    assert Router.load(path) == router
    with_k = replace(router, k=4)
    with_k.save(path)
    assert Router.load(path).k == 4
    data = json.loads(path.read_text())
    data["extra"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"router.json: not a ttc-router/1 router file"):
        Router.load(path)
    gappy = Router("predicted", (0.6,), 2, {(1, 4): StrategyChoice("majority", None, 1.0, 2)})
    with pytest.raises(ValueError, match="no choice for bin 2 at budget 4"):
        gappy.route(0.1, 4)


def test_cross_fitting_routes_every_problem_with_a_router_fitted_without_it():
    """Each fold is routed by a router fitted on the other folds: a problem whose fold-mates disagree with the
    rest is routed by the rest. Hand-made: on q0 only beam search is right at N=4, everywhere else majority."""
    values = {f"q{i}": 0.9 - 0.1 * i for i in range(6)}
    table = []
    for pid in values:
        for strategy, beam_width in (("majority", None), ("beam_search", 4)):
            right = (strategy == "beam_search") == (pid == "q0")
            table.append(ProblemOutcome(problem_id=pid, level=None, strategy=strategy, n=4, beam_width=beam_width,
                                        accuracy=1.0 if right else 0.0, variance=0.0, policy_tokens=40.0,
                                        prm_tokens=0.0))
    binning = quantile_bins(values, kind="predicted", num_bins=1)
    report = evaluate_compute_optimal(table, binning, folds=3, seed=0)
    assert report.folds == 3 and sorted(report.heldout_ids) == sorted(values) == sorted(report.fit_ids)
    assert report.heldout_description == "6 held-out problems (3-fold cross-fitting)"
    # The saved router is fitted on all six problems: majority (5 of 6 right).
    assert report.router.choice[(1, 4)].strategy == "majority"
    co = select(report.points, strategy=COMPUTE_OPTIMAL)
    # Every fold's router picks majority (q0 is one problem against at least three), so q0 is lost: 5/6.
    assert [(p.n, p.num_problems, p.accuracy) for p in co] == [(4, 6, pytest.approx(5 / 6))]
    with pytest.raises(ValueError, match="3 folds need at least 3 problems"):
        evaluate_compute_optimal(table[:4], quantile_bins({"q0": 0.9, "q1": 0.8}, kind="predicted", num_bins=1),
                                 folds=3)


def test_min_gain_backs_off_to_the_pooled_choice_when_a_bin_wins_narrowly():
    """Bins 1 and 2 each have a narrow per-bin winner; pooled over both, majority is best."""
    values = {"e0": 0.9, "e1": 0.8, "h0": 0.2, "h1": 0.1}
    accuracy = {  # (strategy, problem) -> accuracy at N=4
        ("majority", "e0"): 1.0, ("majority", "e1"): 0.5, ("majority", "h0"): 1.0, ("majority", "h1"): 1.0,
        ("beam_search", "e0"): 1.0, ("beam_search", "e1"): 0.7, ("beam_search", "h0"): 0.0, ("beam_search", "h1"): 0.0,
    }
    table = [ProblemOutcome(problem_id=pid, level=None, strategy=strategy, n=4,
                            beam_width=4 if strategy == "beam_search" else None, accuracy=acc, variance=0.0,
                            policy_tokens=40.0, prm_tokens=0.0) for (strategy, pid), acc in accuracy.items()]
    binning = quantile_bins(values, kind="predicted", num_bins=2)
    per_bin = fit_router(table, binning, list(values))
    assert per_bin.choice[(1, 4)].strategy == "beam_search"  # 0.85 vs 0.75 on the easy bin
    assert per_bin.choice[(2, 4)].strategy == "majority"
    # Beam search's 10-point lead on the easy bin is within min_gain=0.1: the pooled choice (majority) stays.
    backed_off = fit_router(table, binning, list(values), min_gain=0.1)
    assert backed_off.choice[(1, 4)] == StrategyChoice("majority", None, 0.75, 2)
    assert fit_router(table, binning, list(values), min_gain=0.05).choice[(1, 4)].strategy == "beam_search"


def _outcome(pid: str, strategy: str, n: int, accuracy: float, beam_width: int | None = None) -> ProblemOutcome:
    return ProblemOutcome(problem_id=pid, level=None, strategy=strategy, n=n, beam_width=beam_width,
                          accuracy=accuracy, variance=None, policy_tokens=10.0 * n, prm_tokens=0.0)


def test_equal_budget_gaps_are_paired_per_problem_with_a_95_percent_interval():
    routed = [_outcome(f"q{i}", COMPUTE_OPTIMAL, 4, a) for i, a in enumerate((1.0, 1.0, 0.0, 1.0))]
    singles = [_outcome(f"q{i}", "majority", 4, a) for i, a in enumerate((1.0, 0.0, 0.0, 1.0))]
    singles += [_outcome(f"q{i}", "beam_search", 4, a, beam_width=2) for i, a in enumerate((1.0, 1.0, 0.5, 1.0))]
    singles += [_outcome(f"q{i}", PASS_AT_N, 4, 1.0) for i in range(4)]  # a ceiling, never compared
    singles += [_outcome("q0", "best_of_n", 4, 0.0)]  # not run on every routed problem: no paired comparison
    singles += [_outcome(f"q{i}", "majority", 8, 1.0) for i in range(4)]  # no compute-optimal outcome at N=8
    gaps = equal_budget_gaps(routed, singles)
    # Differences against majority: 0, 1, 0, 0 -> mean 0.25, sample std 0.5, standard error 0.25.
    # Against beam search: 0, 0, -0.5, 0 -> mean -0.125, sample std 0.25, standard error 0.125.
    assert gaps == [
        EqualBudgetGap(4, "beam_search (M=2)", -0.125, pytest.approx(-0.125 - 1.96 * 0.125),
                       pytest.approx(-0.125 + 1.96 * 0.125), 4),
        EqualBudgetGap(4, "majority", 0.25, pytest.approx(0.25 - 1.96 * 0.25), pytest.approx(0.25 + 1.96 * 0.25), 4),
    ]


def test_report_carries_the_gaps_and_reads_reports_written_before_them():
    binning = quantile_bins(VALUES, kind="predicted", num_bins=2)
    report = evaluate_compute_optimal(outcomes(), binning, folds=2, seed=0)
    assert {(g.n, g.reference) for g in report.gaps} == {(4, "majority"), (4, "beam_search (M=4)"),
                                                         (16, "majority"), (16, "beam_search (M=4)")}
    assert all(g.num_problems == 8 and g.low <= g.difference <= g.high for g in report.gaps)
    data = json.loads(json.dumps(report.to_dict()))
    assert ComputeOptimalReport.from_dict(data) == report
    del data["gaps"]
    assert ComputeOptimalReport.from_dict(data).gaps == ()
