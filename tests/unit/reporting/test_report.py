"""`ttc-infer eval` then `ttc-infer report` through the real CLI on a results file with two PRMs."""

from __future__ import annotations

import dataclasses
import json

import inference.evaluation.bins as bins
import inference.evaluation.metrics as metrics
from inference import cli
from inference.evaluation.processbench import ProcessBenchMetrics, ProcessBenchReport
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
