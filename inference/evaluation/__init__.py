"""Evaluation of result rows: accuracy at N, difficulty bins, compute-optimal routing, ProcessBench-style PRM checks."""

from __future__ import annotations

from inference.evaluation.config import EvalConfig

__all__ = ["EvalConfig", "evaluate"]


def evaluate(config: EvalConfig) -> str:
    """`ttc-infer eval` (the evaluation modules load only when it runs)."""
    from inference.evaluation.evaluations import evaluate as run

    return run(config)
