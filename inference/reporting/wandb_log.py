"""Optional Weights & Biases logging of an evaluation: one run per (policy, PRM), grouped by PRM name.

Offline unless a WANDB_API_KEY is set (or `mode` says otherwise); wandb is imported only when used, and any
failure is logged as a warning and returns None: the HTML report never depends on W&B.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from inference.evaluation.metrics import MetricPoint, ProblemOutcome, select
from inference.types import ResultRow

logger = logging.getLogger(__name__)

ROW_COLUMNS = ["problem_id", "level", "strategy", "n", "beam_width", "seed", "gold", "pred", "correct",
               "policy_tokens", "prm_tokens", "seconds"]
"""Columns of the per-problem table of result rows."""
OUTCOME_COLUMNS = ["problem_id", "level", "strategy", "n", "beam_width", "accuracy", "variance",
                   "policy_tokens", "prm_tokens"]
"""Columns of the per-problem table of evaluated outcomes (accuracy = expected correctness at N)."""


def summary_metrics(points: Sequence[MetricPoint]) -> dict[str, float]:
    """Flat summary keys: `acc/<label>@<N>` overall, `acc/<label>@<N>/<bin kind> <bin>` per bin, plus FLOPs."""
    summary: dict[str, float] = {}
    for p in points:
        key = f"{p.label}@{p.n}"
        scope = "" if p.level is None else f"/{p.bin_kind} {p.level}"
        summary[f"acc/{key}{scope}"] = p.accuracy
        if p.level is None:
            summary[f"policy_tokens/{key}"] = p.policy_tokens
            summary[f"prm_tokens/{key}"] = p.prm_tokens
            if p.flops is not None:
                summary[f"flops/{key}"] = p.flops
    return summary


def _row_table_data(rows: Sequence[ResultRow]) -> list[list]:
    return [
        [r.problem_id, r.level, r.strategy, r.n, r.beam_width, r.seed, r.gold, r.pred, r.correct,
         r.compute.policy_tokens, r.compute.prm_tokens, r.compute.seconds]
        for r in rows
    ]


def log_evaluation(
    points: Sequence[MetricPoint],
    *,
    policy: str,
    prm: str,
    rows: Sequence[ResultRow] = (),
    outcomes: Sequence[ProblemOutcome] = (),
    project: str = "ttc",
    config: Mapping[str, object] | None = None,
    images: Mapping[str, str | Path] | None = None,
    mode: str | None = None,
    wandb_dir: str | Path | None = None,
) -> Path | None:
    """Log one (policy, PRM) evaluation as a W&B run (group = PRM name); return the local run directory.

    Logged: config, summary metrics (`summary_metrics`), accuracy vs N as steps of `N` (one `accuracy/<label>`
    series per strategy) and as a line-series chart, per-problem tables of `rows` (`per_problem`) and of
    `outcomes` (`per_problem_outcomes`), and `images` (PNG paths).
    `mode` defaults to WANDB_MODE, else "online" with a WANDB_API_KEY and "offline" without; `wandb_dir`
    defaults to WANDB_DIR. Returns None (with a warning) when anything fails.
    """
    try:
        import wandb

        mode = mode or os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        wandb_dir = wandb_dir or os.environ.get("WANDB_DIR")
        if wandb_dir is not None:
            Path(wandb_dir).mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=project, name=f"{policy} + {prm}" if prm else policy, group=prm or "no-prm", job_type="eval",
            config={"policy": policy, "prm": prm} | dict(config or {}), mode=mode,
            dir=None if wandb_dir is None else str(wandb_dir), reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
        )
        try:
            run.define_metric("N")
            run.define_metric("accuracy/*", step_metric="N")
            series: dict[str, dict[int, float]] = defaultdict(dict)
            for p in select(points):
                series[p.label][p.n] = p.accuracy
            for n in sorted({n for s in series.values() for n in s}):
                run.log({"N": n} | {f"accuracy/{label}": s[n] for label, s in series.items() if n in s})
            if series:
                labels = list(series)
                run.log({"accuracy_vs_N": wandb.plot.line_series(
                    xs=[sorted(series[label]) for label in labels],
                    ys=[[series[label][n] for n in sorted(series[label])] for label in labels],
                    keys=labels, title="Accuracy vs N", xname="N")})
            if rows:
                run.log({"per_problem": wandb.Table(columns=ROW_COLUMNS, data=_row_table_data(rows))})
            if outcomes:
                data = [[getattr(o, c) for c in OUTCOME_COLUMNS] for o in outcomes]
                run.log({"per_problem_outcomes": wandb.Table(columns=OUTCOME_COLUMNS, data=data)})
            for name, path in (images or {}).items():
                run.log({f"figures/{name}": wandb.Image(str(path))})
            run.summary.update(summary_metrics(points))
            run_dir = Path(run.dir).parent
        finally:
            run.finish()
        logger.info("W&B run (%s) written to %s", mode, run_dir)
        return run_dir
    except Exception as error:  # W&B is optional: never let it stop a report
        logger.warning("W&B logging failed (%s: %s); the report does not need it", type(error).__name__, error)
        return None
