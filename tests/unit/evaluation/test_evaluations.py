"""evaluate_rows per (policy, PRM), the eval directory round trip, and EvalConfig validation."""

from __future__ import annotations

import dataclasses

import pytest

from inference.config import ConfigError
from inference.evaluation.compute_optimal import Router
from inference.evaluation.config import EvalConfig
from inference.evaluation.evaluations import evaluate_rows, read_evaluations, write_evaluations
from inference.evaluation.metrics import select
from tests.unit.evaluation.helpers import exact_grader, exact_grouper, simulated_rows

GRADING = {"grader": exact_grader, "grouper": exact_grouper}


def two_prm_rows():
    return simulated_rows(20, 4) + [dataclasses.replace(r, prm="prm-b") for r in simulated_rows(20, 4, seed=1)]


def test_evaluate_rows_per_prm_and_round_trip(tmp_path):
    evaluations = evaluate_rows(two_prm_rows(), num_subsamples=8, predicted_k=2, policy_params=10,
                                prm_params={"prm-a": 80}, **GRADING)
    assert [(e.policy, e.prm) for e in evaluations] == [("policy-1b", "prm-a"), ("policy-1b", "prm-b")]
    a, b = evaluations
    assert [r.bin_kind for r in a.compute_optimal] == ["oracle", "predicted"]
    assert a.compute_optimal[1].router.k == 2
    assert all(p.flops is not None for p in select(a.points))
    assert select(b.points, strategy="best_of_n")[0].flops is None  # prm-b's size was not given
    assert len({o.problem_id for o in a.outcomes}) == 20
    write_evaluations(evaluations, tmp_path)
    assert read_evaluations(tmp_path) == evaluations
    router = Router.load(tmp_path / "routers" / "policy-1b__prm-a__predicted.json")
    assert router == a.compute_optimal[1].router


def test_read_evaluations_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl; run `ttc-infer eval"):
        read_evaluations(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"policy": "p", "prm": "q", "strategy": "majority"}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 1: not a MetricPoint \(unknown keys \[\], missing keys"):
        read_evaluations(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "eval needs --inputs"),
        ({"inputs": ("r.jsonl",)}, "eval needs --output_dir"),
        ({"inputs": ("r.jsonl",), "output_dir": "o", "fit_fraction": 1.0}, r"fit_fraction must be in \(0, 1\)"),
        ({"inputs": ("r.jsonl",), "output_dir": "o", "prm_params": {"prm-a": -1}}, "prm-a must be a parameter count"),
        ({"inputs": ("r.jsonl",), "output_dir": "o", "policy_params": 0}, "policy_params must be a positive"),
        ({"inputs": ("r.jsonl",), "output_dir": "o", "ns": (0, 2)}, "ns must be budgets >= 1"),
    ],
)
def test_eval_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EvalConfig(**kwargs)


def test_a_prm_without_parameters_is_allowed():
    # The exact checker (prm.path synthetic-checker) is a verifier without a model: 0 parameters, no PRM FLOPs.
    assert EvalConfig(inputs=("r.jsonl",), output_dir="o", prm_params={"synthetic-checker": 0}).prm_params == {
        "synthetic-checker": 0}


def test_a_prm_with_tree_search_rows_only_gets_oracle_bins_but_no_predicted_bins():
    """The exact checker runs beam search only; the unscored greedy row (no PRM) joins it. Nothing predicts
    difficulty there, so its predicted bins are skipped while the other PRM keeps both kinds."""
    rows = simulated_rows(20, 4)
    greedy = [dataclasses.replace(r, prm="", completions=tuple(dataclasses.replace(c, agg_score=None, step_scores=())
                                                               for c in r.completions[:1]))
              for r in rows if r.strategy == "majority"]
    checker = [dataclasses.replace(r, prm="synthetic-checker") for r in rows if r.strategy == "beam_search"]
    evaluations = evaluate_rows(rows + greedy + checker, num_subsamples=4, predicted_k=2, derive_sampling=True,
                                **GRADING)
    by_prm = {e.prm: e for e in evaluations}
    assert [r.bin_kind for r in by_prm["prm-a"].compute_optimal] == ["oracle", "predicted"]
    assert [r.bin_kind for r in by_prm["synthetic-checker"].compute_optimal] == ["oracle"]
    assert {p.strategy for p in select(by_prm["synthetic-checker"].points)} == {"beam_search", "majority", "pass@n"}
