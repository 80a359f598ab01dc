"""Rows read back from result files, split by model, and evaluated with the real equivalence grader."""

from __future__ import annotations

from inference.evaluation.metrics import compute_metrics, select
from inference.evaluation.rows import by_model, read_rows
from inference.results import append_results
from tests.unit.evaluation.helpers import row, sample


def test_read_rows_from_files_and_directories(tmp_path):
    first = [row("p1", "majority", completions=(sample("A"),)), row("p2", "majority", completions=(sample("B"),))]
    second = [row("p1", "dvts", n=4, beam_width=2, correct=True)]
    append_results(tmp_path / "results_a.jsonl", first)
    append_results(tmp_path / "results_b.jsonl", second)
    assert read_rows(tmp_path / "results_a.jsonl") == first
    assert read_rows(tmp_path) == first + second


def test_by_model_puts_prm_free_rows_with_every_prm():
    rows = [
        row("p1", "majority", prm=""),
        row("p1", "best_of_n", prm="prm-a"),
        row("p1", "best_of_n", prm="prm-b"),
        row("p1", "majority", policy="other", prm=""),
    ]
    groups = by_model(rows)
    assert sorted(groups) == [("other", ""), ("policy-1b", "prm-a"), ("policy-1b", "prm-b")]
    assert [r.strategy for r in groups[("policy-1b", "prm-a")]] == ["majority", "best_of_n"]


def test_default_grading_groups_equivalent_answers():
    # \frac{1}{2} and 0.5 are one answer: majority over (1/2, 0.5, 3) picks it, and it matches gold "1/2".
    completions = (sample(r"\frac{1}{2}"), sample("3"), sample("0.5"))
    points = compute_metrics([row("p1", "majority", gold=r"\frac12", completions=completions)], ns=[3])
    (majority,) = select(points, strategy="majority")
    assert majority.accuracy == 1.0
    (ceiling,) = select(points, strategy="pass@n")
    assert ceiling.accuracy == 1.0
