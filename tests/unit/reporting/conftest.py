"""Shared evaluation results for report tests: a small simulated run, its metrics and compute-optimal report."""

from __future__ import annotations

import pytest

from inference.evaluation.bins import oracle_bins
from inference.evaluation.compute_optimal import evaluate_compute_optimal
from inference.evaluation.metrics import aggregate, problem_outcomes
from inference.evaluation.processbench import ProcessBenchMetrics, ProcessBenchReport
from tests.unit.evaluation.helpers import exact_grader, exact_grouper, simulated_rows

GRADING = {"grader": exact_grader, "grouper": exact_grouper}


@pytest.fixture(scope="session")
def run():
    """(rows, outcomes, points with FLOPs) of a 20-problem simulated run with 8 stored samples."""
    rows = simulated_rows(20, 8)
    outcomes = problem_outcomes(rows, **GRADING)
    return rows, outcomes, aggregate(outcomes, policy_params=1_000, prm_params=8_000)


@pytest.fixture(scope="session")
def co_report(run):
    rows, outcomes, _ = run
    return evaluate_compute_optimal(outcomes, oracle_bins(rows, **GRADING), policy_params=1_000, prm_params=8_000)


@pytest.fixture(scope="session")
def pb_reports():
    def metrics(f1: float) -> ProcessBenchMetrics:
        return ProcessBenchMetrics(0.4, f1, f1, f1, 10, 10)

    return [
        ProcessBenchReport("prm-a", metrics(0.55), metrics(0.5), 0.71, 10, 20),
        ProcessBenchReport("prm-b", metrics(0.35), metrics(0.3), None, 10, 20),
    ]
