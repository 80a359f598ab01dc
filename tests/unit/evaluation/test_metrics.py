"""Accuracy at N by subsampling stored samples, pass@N, per-run strategies, compute and FLOPs, on hand-made rows."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import numpy as np
import pytest

import inference.strategies.selection as selection
from inference.evaluation.metrics import (
    PASS_AT_N,
    MetricPoint,
    accuracy_table,
    aggregate,
    compute_metrics,
    default_ns,
    flops,
    pass_at_k,
    prepare_samples,
    problem_outcomes,
    select,
    split_ids,
    subset_correctness,
    subsets,
)
from inference.types import Compute
from tests.unit.evaluation.helpers import P1, exact_grader, exact_grouper, row, sample, sampling_rows

GRADING = {"grader": exact_grader, "grouper": exact_grouper}


def outcome_map(outcomes):
    return {(o.problem_id, o.strategy, o.n): o for o in outcomes}


def test_p1_accuracy_at_every_n_matches_hand_enumeration():
    # Hand enumeration over all subsets of A(.1) B(.9) A(.3) C(.5), gold A (see helpers.P1):
    # N=2: majority right on {0,1} {0,2} {0,3} {2,3} (ties -> first), BoN and weighted only on {0,2}.
    # N=3: majority right on {0,1,2} {0,1,3} {0,2,3}; BoN and weighted never (B .9 or C .5 beat A's .4).
    outcomes = outcome_map(problem_outcomes(sampling_rows(), ns=[1, 2, 3, 4], num_subsamples=100, **GRADING))
    expected = {
        "majority": {1: 0.5, 2: 4 / 6, 3: 3 / 4, 4: 1.0},
        "best_of_n": {1: 0.5, 2: 1 / 6, 3: 0.0, 4: 0.0},
        "weighted_best_of_n": {1: 0.5, 2: 1 / 6, 3: 0.0, 4: 0.0},
        PASS_AT_N: {1: 0.5, 2: 5 / 6, 3: 1.0, 4: 1.0},
    }
    for strategy, by_n in expected.items():
        for n, accuracy in by_n.items():
            assert outcomes[("p1", strategy, n)].accuracy == pytest.approx(accuracy), (strategy, n)
    assert outcomes[("p1", "majority", 2)].variance == pytest.approx(2 / 9)
    assert outcomes[("p1", "majority", 4)].variance == 0.0


def test_exhaustive_n_max_gives_the_full_selection():
    # N = N_max is one subset: p2 (X X - Y, gold Y): majority X wrong, BoN skips the unanswered .99 -> Y right.
    outcomes = outcome_map(problem_outcomes(sampling_rows(), ns=[4], **GRADING))
    assert outcomes[("p2", "majority", 4)].accuracy == 0.0
    assert outcomes[("p2", "best_of_n", 4)].accuracy == 1.0
    assert outcomes[("p2", "weighted_best_of_n", 4)].accuracy == 1.0
    assert outcomes[("p2", PASS_AT_N, 4)].accuracy == 1.0


def test_compute_scales_with_the_subset():
    outcomes = outcome_map(problem_outcomes(sampling_rows(), ns=[2, 3, 4], num_subsamples=100, **GRADING))
    # Tokens 10 20 30 40: every subset of 2 averages 2 x 25 policy tokens; PRM 200 x 2/4; majority needs no PRM.
    assert outcomes[("p1", "best_of_n", 2)].policy_tokens == pytest.approx(50.0)
    assert outcomes[("p1", "best_of_n", 2)].prm_tokens == pytest.approx(100.0)
    assert outcomes[("p1", "majority", 2)].prm_tokens == 0.0
    assert outcomes[("p1", PASS_AT_N, 3)].policy_tokens == pytest.approx(75.0)
    assert outcomes[("p1", "weighted_best_of_n", 4)].policy_tokens == pytest.approx(100.0)


def test_points_overall_and_per_level_with_flops():
    points = compute_metrics(sampling_rows(), ns=[4], policy_params=10, prm_params=100, **GRADING)
    overall = {p.strategy: p for p in select(points)}
    assert overall["majority"].accuracy == 0.5 and overall["majority"].num_problems == 2
    assert overall["best_of_n"].accuracy == 0.5
    # Mean tokens per problem: policy (100 + 20) / 2 = 60, PRM (200 + 40) / 2 = 120.
    bon = overall["best_of_n"]
    assert (bon.policy_tokens, bon.prm_tokens) == (60.0, 120.0)
    assert bon.flops == 2 * (10 * 60 + 100 * 120)
    assert overall["majority"].flops == 2 * 10 * 60
    assert bon.accuracy_std == 0.0
    level1 = {p.strategy: p for p in select(points, level=1, bin_kind="level")}
    level2 = {p.strategy: p for p in select(points, level=2, bin_kind="level")}
    assert (level1["majority"].accuracy, level2["majority"].accuracy) == (1.0, 0.0)
    assert (level1["best_of_n"].accuracy, level2["best_of_n"].accuracy) == (0.0, 1.0)
    assert level1["majority"].num_problems == 1


def test_subsampled_forward_tokens_scale_the_prefill_and_prm_by_n_over_n_max():
    import dataclasses

    rows = [dataclasses.replace(row, compute=dataclasses.replace(
        row.compute, policy_forward_tokens=row.compute.policy_tokens + 40, prm_forward_tokens=row.compute.prm_tokens // 2))
        for row in sampling_rows()]
    points = {(p.strategy, p.n): p for p in select(compute_metrics(rows, ns=[2, 4], policy_params=10, prm_params=100,
                                                                   **GRADING))}
    for strategy in ("best_of_n", "weighted_best_of_n"):
        at_2, at_4 = points[(strategy, 2)], points[(strategy, 4)]
        assert at_4.policy_forward_tokens == pytest.approx(at_4.policy_tokens + 40)
        assert at_2.policy_forward_tokens == pytest.approx(at_2.policy_tokens + 20)  # half the samples, half the prefill
        assert at_4.prm_forward_tokens == pytest.approx(at_4.prm_tokens / 2)
        assert at_4.flops == pytest.approx(2 * (10 * at_4.policy_forward_tokens + 100 * at_4.prm_forward_tokens))
    assert points[("majority", 4)].prm_forward_tokens == 0.0


def test_flops_of_compute_and_missing_prm_params():
    assert flops(Compute(policy_tokens=100, prm_tokens=50), 1_000, 8_000) == 2 * (1_000 * 100 + 8_000 * 50)
    # Counted forward tokens are what ran (prefill in, cached PRM prefixes out): FLOPs take them.
    ran = Compute(policy_tokens=100, prm_tokens=50, policy_forward_tokens=130, prm_forward_tokens=20)
    assert flops(ran, 1_000, 8_000) == 2 * (1_000 * 130 + 8_000 * 20)
    points = compute_metrics(sampling_rows(), ns=[4], policy_params=10, **GRADING)
    overall = {p.strategy: p for p in select(points)}
    assert overall["best_of_n"].flops is None  # PRM tokens spent, PRM size unknown
    assert overall["majority"].flops == 2 * 10 * 60


def test_per_run_strategies_average_over_seeds():
    rows = [
        row("p1", "beam_search", n=4, beam_width=2, seed=0, correct=True, policy_tokens=100, prm_tokens=300),
        row("p1", "beam_search", n=4, beam_width=2, seed=1, correct=False, policy_tokens=200, prm_tokens=500),
        row("p2", "beam_search", n=4, beam_width=2, seed=0, correct=True, policy_tokens=60, prm_tokens=100),
        row("p2", "beam_search", n=4, beam_width=2, seed=1, correct=True, policy_tokens=60, prm_tokens=100),
        row("p1", "dvts", n=8, beam_width=4, correct=True, policy_tokens=10),
        row("p2", "dvts", n=8, beam_width=4, correct=False, policy_tokens=30),
    ]
    points = {(p.strategy, p.n): p for p in select(compute_metrics(rows, **GRADING))}
    beam = points[("beam_search", 4)]
    assert beam.accuracy == 0.75 and beam.beam_width == 2 and beam.label == "beam_search (M=2)"
    assert beam.accuracy_std == pytest.approx(math.sqrt(0.25 + 0.0) / 2)
    assert (beam.policy_tokens, beam.prm_tokens) == (105.0, 250.0)
    dvts = points[("dvts", 8)]
    assert dvts.accuracy == 0.5 and dvts.accuracy_std is None and dvts.policy_tokens == 20.0


def test_subsample_mean_estimates_the_exact_mean():
    # 8 samples, C(8, 3) = 56 > 16 subsets: random subsets, each sorted and without repeats, seeded.
    rng = np.random.default_rng(0)
    drawn = subsets(8, 3, 16, rng)
    assert drawn.shape == (16, 3)
    assert all(len(set(r)) == 3 and list(r) == sorted(r) for r in drawn)
    assert subsets(4, 2, 6, rng).tolist() == [list(c) for c in itertools.combinations(range(4), 2)]
    answers = ["A", "B", "A", "C", "A", "B", "D", "B"]
    completions = tuple(sample(a, 0.5) for a in answers)
    rows = [row("p", "majority", gold="A", completions=completions)]
    exact = problem_outcomes(rows, ns=[3], num_subsamples=56, **GRADING)
    approx = problem_outcomes(rows, ns=[3], num_subsamples=2000, seed=3, **GRADING)
    again = problem_outcomes(rows, ns=[3], num_subsamples=2000, seed=3, **GRADING)
    assert approx == again
    assert approx[0].accuracy == pytest.approx(exact[0].accuracy, abs=0.03)


def test_selection_on_group_ids_matches_strategy_selection(monkeypatch):
    monkeypatch.setattr(selection, "group_equivalent", exact_grouper)
    rng = random.Random(7)
    for trial in range(200):
        size = rng.randint(1, 7)
        completions = tuple(
            sample(rng.choice(["A", "B", "C", None]), rng.choice([0.1, 0.5, 0.5, 0.9]), 1) for _ in range(size)
        )
        samples = prepare_samples(row("p", "best_of_n", gold="A", completions=completions), exact_grader, exact_grouper)
        index_sets = np.array(list(itertools.combinations(range(size), rng.randint(1, size))))
        for strategy, pick in [
            ("majority", lambda cs: selection.majority_answer([c.answer for c in cs])),
            ("best_of_n", selection.best_answer),
            ("weighted_best_of_n", selection.weighted_answer),
        ]:
            got = subset_correctness(samples, strategy, index_sets)
            want = [float(exact_grader("A", pick([completions[i] for i in s]))) for s in index_sets]
            assert got.tolist() == want, (trial, strategy, completions)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(4, 2, 2, 5 / 6), (10, 0, 5, 0.0), (10, 10, 1, 1.0), (5, 1, 1, 0.2), (5, 2, 4, 1.0), (6, 1, 3, 0.5)],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_equals_enumeration():
    correct = [True, False, False, True, False, False, False]
    for k in range(1, 8):
        subsets_k = list(itertools.combinations(correct, k))
        assert pass_at_k(7, 2, k) == pytest.approx(sum(any(s) for s in subsets_k) / len(subsets_k))


def test_default_ns_and_split():
    assert default_ns(16) == [1, 2, 4, 8, 16]
    assert default_ns(12) == [1, 2, 4, 8, 12]
    assert default_ns(1) == [1]
    fit, held = split_ids([f"q{i}" for i in range(10)], fit_fraction=0.3, seed=1)
    assert len(fit) == 3 and len(held) == 7 and not set(fit) & set(held)
    assert split_ids(reversed([f"q{i}" for i in range(10)]), fit_fraction=0.3, seed=1) == (fit, held)


def test_derive_sampling_from_one_row():
    rows = sampling_rows(("majority",))
    outcomes = outcome_map(problem_outcomes(rows, ns=[4], derive_sampling=True, **GRADING))
    assert outcomes[("p2", "best_of_n", 4)].accuracy == 1.0
    assert outcomes[("p2", "best_of_n", 4)].prm_tokens == 40.0
    assert outcomes[("p2", "majority", 4)].prm_tokens == 0.0
    # Majority stored without PRM scores: weighted BoN is derived from the scored best_of_n row instead.
    unscored = tuple(replace(c, agg_score=None, step_scores=()) for c in P1)
    rows = [row("p1", "majority", completions=unscored), row("p1", "best_of_n", completions=P1, prm_tokens=200)]
    outcomes = outcome_map(problem_outcomes(rows, ns=[4], derive_sampling=True, **GRADING))
    assert outcomes[("p1", "weighted_best_of_n", 4)].accuracy == 0.0  # B (.9) beats A (.1 + .3)
    assert outcomes[("p1", "majority", 4)].accuracy == 1.0
    assert len(outcomes) == 4  # three strategies and pass@N


def test_a_one_sample_greedy_row_does_not_cap_the_other_strategies_at_n_1():
    """A greedy majority row (one sample, no PRM) evaluated with a PRM's best-of-N rows of 4 samples: best-of-N
    keeps N = 1, 2, 4 (the reference line must not cut the PRM's curve to one point); majority has N = 1 only."""
    rows = [row("p1", "majority", completions=P1[:1], prm=""), row("p1", "best_of_n", completions=P1, prm_tokens=200)]
    outcomes = outcome_map(problem_outcomes(rows, derive_sampling=True, **GRADING))
    assert sorted(n for (_, strategy, n) in outcomes if strategy == "best_of_n") == [1, 2, 4]
    assert sorted(n for (_, strategy, n) in outcomes if strategy == "weighted_best_of_n") == [1, 2, 4]
    assert sorted(n for (_, strategy, n) in outcomes if strategy == "majority") == [1]
    assert outcomes[("p1", "best_of_n", 4)].accuracy == 0.0  # B has the top score (.9)
    with pytest.raises(ValueError, match="N=4 exceeds the 1 completions"):
        problem_outcomes(rows, ns=[1, 4], **GRADING)


def test_unscored_rows_alone_derive_majority_but_no_prm_selection():
    """A PRM with tree-search rows only (the exact checker's beam search) is joined by the unscored greedy row:
    majority is derived from it, best-of-N and weighted best-of-N are left out instead of failing."""
    unscored = tuple(replace(c, agg_score=None, step_scores=()) for c in P1)
    rows = [row("p1", "majority", completions=unscored[:1], prm="")]
    outcomes = outcome_map(problem_outcomes(rows, derive_sampling=True, **GRADING))
    assert sorted(strategy for (_, strategy, _) in outcomes) == ["majority", PASS_AT_N]
    with pytest.raises(ValueError, match="best_of_n needs PRM scores"):
        problem_outcomes([row("p1", "best_of_n", completions=unscored)], **GRADING)


def test_sweep_rows_at_smaller_n_are_left_out_for_the_largest():
    # A shared-sample sweep writes majority at n=2 (the first two samples) and n=4; N=2 is subsampled from n=4.
    rows = [
        row("p1", "majority", gold="A", completions=P1[:2], correct=True),
        row("p1", "majority", gold="A", completions=P1),
    ]
    outcomes = outcome_map(problem_outcomes(rows, ns=[2, 4], **GRADING))
    assert outcomes[("p1", "majority", 2)].accuracy == pytest.approx(4 / 6)
    assert outcomes[("p1", "majority", 4)].accuracy == 1.0
    same_size = [row("p1", "majority", completions=P1, seed=0), row("p1", "majority", completions=P1, seed=1)]
    with pytest.raises(ValueError, match=r"two majority rows with 4 samples \(seeds 0, 1\)"):
        problem_outcomes(same_size, **GRADING)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"N=8 exceeds the 4 completions stored for problem 'p1'"):
        problem_outcomes(sampling_rows(), ns=[8], **GRADING)
    unscored = [row("p1", "best_of_n", completions=(sample("A", None), sample("B", None)))]
    with pytest.raises(ValueError, match=r"problem 'p1': best_of_n needs PRM scores"):
        problem_outcomes(unscored, **GRADING)
    mixed = sampling_rows() + [row("p3", "majority", completions=P1, policy="policy-3b")]
    with pytest.raises(ValueError, match="rows mix policies"):
        problem_outcomes(mixed, **GRADING)
    twice = [row("p1", "dvts", n=4, beam_width=2, correct=True), row("p1", "dvts", n=4, beam_width=2)]
    with pytest.raises(ValueError, match="same seed"):
        problem_outcomes(twice, **GRADING)


def test_accuracy_table():
    points = [
        MetricPoint("majority", 1, None, None, 0.5, 0.1, 10, 0, None, 4),
        MetricPoint("majority", 4, None, None, 0.75, 0.0, 40, 0, None, 4),
        MetricPoint("beam_search", 4, None, None, 0.8, None, 40, 90, None, 4, beam_width=2),
    ]
    assert accuracy_table(points) == [
        {"strategy": "majority", "N=1": "50.0 ± 10.0", "N=4": "75.0"},
        {"strategy": "beam_search (M=2)", "N=1": "", "N=4": "80.0"},
    ]
    assert aggregate([], policy_params=1) == []
