"""Evaluations -> the HTML report (main PRM in full, every PRM in the comparison) and optional W&B runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from inference.evaluation.evaluations import ModelEvaluation, read_evaluations
from inference.evaluation.processbench import ProcessBenchReport
from inference.reporting.config import ReportConfig
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
    level_n: int | None = None,
    processbench: Sequence[ProcessBenchReport] = (),
    config: Mapping[str, object] | None = None,
    use_wandb: bool = False,
    wandb_project: str = "ttc",
    wandb_dir: str | Path | None = None,
) -> Path:
    """Write `out_dir/report.html` for one policy; with `use_wandb`, one W&B run per PRM. Returns the page path."""
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
    )
    if use_wandb:
        images = {p.stem: p for p in sorted((Path(out_dir) / "figures").glob("*.png"))}
        for prm, evaluation in sorted(by_prm.items()):
            log_evaluation(evaluation.points, policy=policy, prm=prm, outcomes=evaluation.outcomes,
                           project=wandb_project, config=dict(config or {}), wandb_dir=wandb_dir,
                           images=images if prm == main_prm else None)
    return path


def run_report(config: ReportConfig) -> str:
    """`ttc-infer report`: read the eval directory and write the report."""
    path = report_evaluations(
        read_evaluations(config.eval_dir), config.output_dir or config.eval_dir, title=config.title,
        policy=config.policy, main_prm=config.main_prm, references=config.references, level_n=config.level_n,
        processbench=[ProcessBenchReport.load(p) for p in config.processbench], config=asdict(config),
        use_wandb=config.wandb, wandb_project=config.wandb_project, wandb_dir=config.wandb_dir,
    )
    return str(path)
