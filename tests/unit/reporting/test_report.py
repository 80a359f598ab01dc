"""`ttc-infer eval` then `ttc-infer report` through the real CLI on a results file with two PRMs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import inference.evaluation.bins as bins
import inference.evaluation.metrics as metrics
from inference import cli
from inference.config import ConfigError
from inference.evaluation.evaluations import ModelEvaluation, write_evaluations
from inference.evaluation.metrics import ProblemOutcome, aggregate
from inference.evaluation.processbench import ProcessBenchMetrics, ProcessBenchReport
from inference.reporting.config import ReportConfig
from inference.reporting.report import read_reference_outcomes, run_report
from inference.results import append_results
from tests.unit.evaluation.helpers import exact_grader, exact_grouper, simulated_rows


def test_eval_then_report_via_cli(tmp_path, capsys, monkeypatch):
    for module in (metrics, bins):  # string-equality grading keeps this test fast (grading has its own tests)
        monkeypatch.setattr(module, "default_grading", lambda: (exact_grader, exact_grouper))
    rows = simulated_rows(20, 4) + [dataclasses.replace(r, prm="prm-b") for r in simulated_rows(20, 4, seed=1)]
    append_results(tmp_path / "run" / "results.jsonl", rows)
    eval_dir = tmp_path / "eval"
    code = cli.main(["eval", "--inputs", str(tmp_path / "run"), "--output_dir", str(eval_dir),
                     "--num_subsamples", "8", "--predicted_k", "2", "--policy_params", "1000"])
    assert code == 0, capsys.readouterr().err
    assert f"eval: {len(rows)} rows, 2 (policy, PRM) pairs" in capsys.readouterr().out
    assert sorted(p.name for p in (eval_dir / "routers").iterdir()) == [
        f"policy-1b__{prm}__{kind}.json" for prm in ("prm-a", "prm-b") for kind in ("oracle", "predicted")
    ]
    metric = ProcessBenchMetrics(0.4, 0.5, 0.6, 0.545, 10, 10)
    ProcessBenchReport("prm-a", metric, metric, 0.7, 10, 20).save(tmp_path / "pb.json")
    code = cli.main(["report", "--eval_dir", str(eval_dir), "--references", json.dumps({"8B greedy": 0.6}),
                     "--processbench", str(tmp_path / "pb.json"), "--main_prm", "prm-b"])
    assert code == 0, capsys.readouterr().err
    page = (eval_dir / "report.html").read_text()
    assert "8B greedy (60.0%)" in page and "ProcessBench-style PRM evaluation" in page
    assert "Router (oracle bins)" in page and "Router (predicted bins)" in page
    assert "&quot;main_prm&quot;: &quot;prm-b&quot;" in page
    # vs N, vs tokens (no PRM size given), levels, PRM comparison, ProcessBench, two compute-optimal plots.
    assert page.count("<img ") == 7


def _write_greedy(eval_dir, policy: str, correct: tuple[int, ...], problems=("q0", "q1", "q2", "q3")) -> None:
    outcomes = tuple(ProblemOutcome(pid, 1, "majority", 1, None, float(c), None, 10.0, 0.0)
                     for pid, c in zip(problems, correct, strict=True))
    write_evaluations([ModelEvaluation(policy, "", outcomes, tuple(aggregate(outcomes)))], eval_dir)


def test_a_reference_eval_dir_pairs_the_report_headline_with_its_greedy_run(tmp_path):
    small = tuple(ProblemOutcome(pid, 1, strategy, 4, None, float(c), None, 10.0 * 4, 0.0)
                  for strategy, correct in (("majority", (1, 0, 1, 0)), ("weighted_best_of_n", (1, 1, 1, 0)))
                  for pid, c in zip(("q0", "q1", "q2", "q3"), correct))
    write_evaluations([ModelEvaluation("small", "prm-a", small, tuple(aggregate(small)))], tmp_path / "eval")
    _write_greedy(tmp_path / "large", "large", (1, 1, 0, 0))
    config = ReportConfig(eval_dir=str(tmp_path / "eval"), references={"large greedy": 0.5},
                          reference_eval_dirs={"large greedy": str(tmp_path / "large")})
    page = Path(run_report(config)).read_text()
    # Weighted best-of-N - large greedy: 0, 0, 1, 0 -> mean 0.25, sample std 0.5, standard error 0.25, half width 0.49.
    assert ("large greedy (50.0%) is matched by weighted_best_of_n at N=4 (75.0%; within noise of it: +25.0 points, "
            "95% CI -24.0 to +74.0, n=4).") in page


def test_a_reference_eval_dir_must_hold_that_references_greedy_run(tmp_path):
    _write_greedy(tmp_path / "large", "large", (1, 1, 0, 0))
    with pytest.raises(ValueError, match=rf"^{tmp_path}/large: large's greedy accuracy is 0.5, but references.large "
                                         r"greedy is 0.6; give the reference its own run's eval directory"):
        read_reference_outcomes(tmp_path / "large", "large greedy", 0.6)
    assert read_reference_outcomes(tmp_path / "large", "large greedy", 0.5) == {"q0": 1, "q1": 1, "q2": 0, "q3": 0}
    with pytest.raises(ConfigError, match=r"reference_eval_dirs names \['tiny greedy'\], which are not in references "
                                          r"\['large greedy'\]"):
        ReportConfig(eval_dir="e", references={"large greedy": 0.5}, reference_eval_dirs={"tiny greedy": "t"})
