"""`ttc-infer eval`: result rows -> per-(policy, PRM) outcomes, metric points and compute-optimal reports on disk."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from data_prep.io import read_jsonl, write_json, write_jsonl
from inference.evaluation.bins import oracle_bins, predicted_bins
from inference.evaluation.compute_optimal import ComputeOptimalReport, evaluate_compute_optimal
from inference.evaluation.config import EvalConfig
from inference.evaluation.metrics import (
    AnswerMatcher,
    Grouper,
    MetricPoint,
    ProblemOutcome,
    aggregate,
    problem_outcomes,
    record_from_dict,
)
from inference.evaluation.rows import by_model, read_rows
from inference.strategies import is_subsampled
from inference.types import ResultRow

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
OUTCOMES_FILE = "outcomes.jsonl"
COMPUTE_OPTIMAL_FILE = "compute_optimal.json"
ROUTERS_DIR = "routers"


@dataclass(frozen=True)
class ModelEvaluation:
    """Everything evaluated for one (policy, PRM)."""

    policy: str
    prm: str
    outcomes: tuple[ProblemOutcome, ...]
    points: tuple[MetricPoint, ...]
    """Overall and per-level points."""
    compute_optimal: tuple[ComputeOptimalReport, ...] = ()
    """One per bin kind (oracle, and predicted when asked for)."""


def evaluate_rows(
    rows: Sequence[ResultRow],
    *,
    ns: Sequence[int] | None = None,
    num_subsamples: int = 32,
    seed: int = 0,
    derive_sampling: bool = False,
    policy_params: int | None = None,
    prm_params: Mapping[str, int] | None = None,
    compute_optimal: bool = True,
    folds: int | None = 5,
    fit_fraction: float = 0.5,
    min_gain: float | None = None,
    predicted_k: int | None = None,
    grader: AnswerMatcher | None = None,
    grouper: Grouper | None = None,
) -> list[ModelEvaluation]:
    """Evaluate each (policy, PRM) in `rows` (majority rows without a PRM join every PRM of their policy)."""
    evaluations = []
    for (policy, prm), group in sorted(by_model(rows).items()):
        outcomes = problem_outcomes(group, ns=ns, num_subsamples=num_subsamples, seed=seed,
                                    derive_sampling=derive_sampling, grader=grader, grouper=grouper)
        params = {"policy_params": policy_params, "prm_params": (prm_params or {}).get(prm)}
        reports = []
        if compute_optimal:
            binnings = [oracle_bins(group, grader=grader, grouper=grouper)]
            if predicted_k is not None and not any(r.has_prm_scores for r in group if is_subsampled(r.strategy)):
                # e.g. a PRM with tree-search rows only: its sampling rows are the unscored greedy run.
                logger.info("%s + %s: no PRM-scored samples to predict difficulty from; predicted bins skipped",
                            policy, prm or "(no PRM)")
            elif predicted_k is not None:
                binnings.append(predicted_bins(group, k=predicted_k))
            reports = [evaluate_compute_optimal(outcomes, b, folds=folds, fit_fraction=fit_fraction,
                                                min_gain=min_gain, seed=seed, **params)
                       for b in binnings]
        evaluations.append(ModelEvaluation(policy, prm, tuple(outcomes), tuple(aggregate(outcomes, **params)),
                                           tuple(reports)))
        logger.info("evaluated %s + %s: %d problems", policy, prm or "(no PRM)",
                    len({o.problem_id for o in outcomes}))
    return evaluations


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_") or "none"


def write_evaluations(evaluations: Sequence[ModelEvaluation], out_dir: str | Path) -> Path:
    """metrics.jsonl, outcomes.jsonl and compute_optimal.json (rows tagged with policy and PRM), plus one
    router file per (policy, PRM, bin kind) under routers/ for the inference arm. Returns `out_dir`."""
    out_dir = Path(out_dir)
    tags = [{"policy": e.policy, "prm": e.prm} for e in evaluations]
    write_jsonl(out_dir / METRICS_FILE, [t | asdict(p) for t, e in zip(tags, evaluations) for p in e.points])
    write_jsonl(out_dir / OUTCOMES_FILE, [t | asdict(o) for t, e in zip(tags, evaluations) for o in e.outcomes])
    reports = [t | {"report": r.to_dict()} for t, e in zip(tags, evaluations) for r in e.compute_optimal]
    write_json(out_dir / COMPUTE_OPTIMAL_FILE, reports, indent=1)
    for e in evaluations:
        for report in e.compute_optimal:
            path = out_dir / ROUTERS_DIR / f"{_slug(e.policy)}__{_slug(e.prm)}__{report.bin_kind}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            report.router.save(path)
    return out_dir


def read_evaluations(eval_dir: str | Path) -> list[ModelEvaluation]:
    """Inverse of `write_evaluations`."""
    eval_dir = Path(eval_dir)
    if not (eval_dir / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{eval_dir}: no {METRICS_FILE}; run `ttc-infer eval --output_dir {eval_dir}` first")
    found: dict[tuple[str, str], dict[str, list]] = {}

    def slot(data: Mapping, where: str) -> dict[str, list]:
        if "policy" not in data or "prm" not in data:
            raise ValueError(f"{where}: missing 'policy' / 'prm'; files of metrics are written by `ttc-infer eval`")
        return found.setdefault((data["policy"], data["prm"]), {"points": [], "outcomes": [], "reports": []})

    for name, key, cls in ((METRICS_FILE, "points", MetricPoint), (OUTCOMES_FILE, "outcomes", ProblemOutcome)):
        path = eval_dir / name
        if path.is_file():
            for line, data in read_jsonl(path):
                where = f"{path}: line {line}"
                slot(data, where)[key].append(record_from_dict(cls, data, where=where))
    co_path = eval_dir / COMPUTE_OPTIMAL_FILE
    if co_path.is_file():
        for index, data in enumerate(json.loads(co_path.read_text(encoding="utf-8"))):
            where = f"{co_path}: report {index}"
            slot(data, where)["reports"].append(ComputeOptimalReport.from_dict(data["report"], where=where))
    return [
        ModelEvaluation(policy, prm, tuple(v["outcomes"]), tuple(v["points"]), tuple(v["reports"]))
        for (policy, prm), v in sorted(found.items())
    ]


def evaluate(config: EvalConfig) -> str:
    """`ttc-infer eval`: read the result rows, evaluate every (policy, PRM), write the output directory."""
    rows = read_rows(config.inputs, search_and_learn_policy=config.search_and_learn_policy,
                     search_and_learn_prm=config.search_and_learn_prm)
    if not rows:  # metrics of nothing would pass for an evaluated run
        raise ValueError(f"{', '.join(map(str, config.inputs))}: no result rows; evaluate the output of a finished "
                         "(or partly finished) `ttc-infer run`")
    evaluations = evaluate_rows(
        rows, ns=config.ns, num_subsamples=config.num_subsamples, seed=config.seed,
        derive_sampling=config.derive_sampling, policy_params=config.policy_params, prm_params=config.prm_params,
        compute_optimal=config.compute_optimal, folds=config.folds, fit_fraction=config.fit_fraction,
        min_gain=config.min_gain, predicted_k=config.predicted_k,
    )
    out_dir = write_evaluations(evaluations, config.output_dir)
    write_json(out_dir / "eval_config.json", asdict(config))
    return f"{len(rows)} rows, {len(evaluations)} (policy, PRM) pairs -> {out_dir / METRICS_FILE}"
