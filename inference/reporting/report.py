"""Evaluations -> the HTML report (main PRM in full, every PRM in the comparison) and optional W&B runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from inference.evaluation.evaluations import ModelEvaluation, read_evaluations
from inference.evaluation.processbench import ProcessBenchReport
from inference.reporting.config import ReportConfig
from inference.reporting.headline import greedy_outcomes
from inference.reporting.html import build_report
from inference.reporting.wandb_log import log_evaluation

logger = logging.getLogger(__name__)


def report_evaluations(
    evaluations: Sequence[ModelEvaluation],
    out_dir: str | Path,
    *,
    title: str = "ttc test-time compute report",
    policy: str | None = None,
    main_prm: str | None = None,
    references: Mapping[str, float] | None = None,
    reference_outcomes: Mapping[str, Mapping[str, float]] | None = None,
    level_n: int | None = None,
    processbench: Sequence[ProcessBenchReport] = (),
    config: Mapping[str, object] | None = None,
    use_wandb: bool = False,
    wandb_project: str = "ttc",
    wandb_dir: str | Path | None = None,
) -> Path:
    """Write `out_dir/report.html` for one policy; with `use_wandb`, one W&B run per PRM. Returns the page path.

    The headline's claims are paired per problem with the evaluations' outcomes, and with `reference_outcomes`
    (reference name -> problem id -> correctness) for the references that have them."""
    policies = sorted({e.policy for e in evaluations})
    if policy is None and len(policies) != 1:
        raise ValueError(f"the evaluations hold policies {policies}; choose one with `policy`")
    policy = policy if policy is not None else policies[0]
    by_prm = {e.prm: e for e in evaluations if e.policy == policy}
    if not by_prm:
        raise ValueError(f"no evaluation of policy {policy!r}; policies evaluated: {policies}")
    main_prm = next(iter(sorted(by_prm))) if main_prm is None else main_prm
    if main_prm not in by_prm:
        raise ValueError(f"main_prm {main_prm!r} was not evaluated for {policy!r}; PRMs: {sorted(by_prm)}")
    main = by_prm[main_prm]
    path = build_report(
        out_dir, points=main.points, title=title, references=references,
        prm_points={prm: e.points for prm, e in sorted(by_prm.items())} if len(by_prm) > 1 else None,
        processbench=processbench, compute_optimal=main.compute_optimal, level_n=level_n,
        config={"policy": policy, "main_prm": main_prm, "prms": sorted(by_prm)} | dict(config or {}),
        evaluations=by_prm, main_prm=main_prm, reference_outcomes=reference_outcomes,
    )
    if use_wandb:
        images = {p.stem: p for p in sorted((Path(out_dir) / "figures").glob("*.png"))}
        for prm, evaluation in sorted(by_prm.items()):
            log_evaluation(evaluation.points, policy=policy, prm=prm, outcomes=evaluation.outcomes,
                           project=wandb_project, config=dict(config or {}), wandb_dir=wandb_dir,
                           images=images if prm == main_prm else None)
    return path


def read_reference_outcomes(eval_dir: str | Path, name: str, accuracy: float) -> dict[str, float]:
    """Problem id -> correctness of the greedy run in a reference's eval directory (one policy's), which must
    have the accuracy the reference is drawn at."""
    evaluations = read_evaluations(eval_dir)
    policies = sorted({e.policy for e in evaluations})
    if len(policies) != 1:
        raise ValueError(f"{eval_dir}: holds the policies {policies}, expected the greedy run of exactly one policy "
                         f"as reference {name!r}")
    outcomes = greedy_outcomes(evaluations, policies[0], where=str(eval_dir))
    if outcomes is None:
        raise ValueError(f"{eval_dir}: no greedy run (majority at N=1) of {policies[0]}, expected one as reference "
                         f"{name!r}")
    found = sum(outcomes.values()) / len(outcomes)
    if abs(found - accuracy) > 1e-9:
        raise ValueError(f"{eval_dir}: {policies[0]}'s greedy accuracy is {found}, but references.{name} is "
                         f"{accuracy}; give the reference its own run's eval directory")
    return outcomes


def run_report(config: ReportConfig) -> str:
    """`ttc-infer report`: read the eval directory and write the report."""
    reference_outcomes = {name: read_reference_outcomes(eval_dir, name, config.references[name])
                          for name, eval_dir in config.reference_eval_dirs.items()}
    path = report_evaluations(
        read_evaluations(config.eval_dir), config.output_dir or config.eval_dir, title=config.title,
        policy=config.policy, main_prm=config.main_prm, references=config.references,
        reference_outcomes=reference_outcomes, level_n=config.level_n,
        processbench=[ProcessBenchReport.load(p) for p in config.processbench], config=asdict(config),
        use_wandb=config.wandb, wandb_project=config.wandb_project, wandb_dir=config.wandb_dir,
    )
    return str(path)
