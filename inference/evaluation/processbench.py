"""ProcessBench-style PRM evaluation: find the earliest wrong step by thresholding step scores.

A PRM predicts the first step whose score is below a threshold (None: the solution is judged correct). Accuracy
on erroneous solutions is the fraction whose predicted index equals the labelled one; accuracy on correct
solutions is the fraction predicted None; F1 is their harmonic mean. The threshold is tuned to maximise F1 on a
seeded fitting split of the records and reported on the other records, next to a fixed threshold (0.5).

Step-level AUROC: steps before the first wrong step are good (positive), the first wrong step is bad; steps
after the first wrong step are left out, because ProcessBench labels only the earliest error and a later step
may be locally valid. Every step of a correct solution is good.

A record whose PRM input is longer than the PRM's context is skipped (named in a warning, counted in the report).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from data_prep.io import read_json, write_json
from data_prep.labels import iter_rows
from inference.evaluation.metrics import split_ids
from inference.types import PRMScorer

logger = logging.getLogger(__name__)

FIXED_THRESHOLD = 0.5
_NAMED_SKIPS = 20
"""How many skipped records the warning names by id."""
_FIELDS = {"id", "problem", "steps", "label"}


@dataclass(frozen=True)
class ProcessBenchRecord:
    """One solution with its earliest wrong step labelled."""

    id: str
    problem: str
    steps: tuple[str, ...]
    label: int | None
    """Index of the first wrong step; None when every step is correct."""

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"record {self.id!r} has no steps")
        if self.label is not None and not 0 <= self.label < len(self.steps):
            raise ValueError(f"record {self.id!r}: label {self.label} is not a step index of its {len(self.steps)} steps")


@dataclass(frozen=True)
class ScoredRecord:
    record: ProcessBenchRecord
    step_scores: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.step_scores) != len(self.record.steps):
            raise ValueError(
                f"record {self.record.id!r}: {len(self.step_scores)} scores for {len(self.record.steps)} steps; "
                "the scorer must return one score per step"
            )


@dataclass(frozen=True)
class ProcessBenchMetrics:
    threshold: float
    error_accuracy: float
    """Fraction of erroneous solutions whose first wrong step is found exactly (NaN without any)."""
    correct_accuracy: float
    """Fraction of correct solutions judged correct (NaN without any)."""
    f1: float
    """Harmonic mean of the two accuracies (0 when either is 0)."""
    num_erroneous: int
    num_correct: int


@dataclass(frozen=True)
class ProcessBenchReport:
    scorer: str
    tuned: ProcessBenchMetrics
    """At the threshold that maximised F1 on the fitting records, measured on the evaluation records."""
    fixed: ProcessBenchMetrics
    """At `FIXED_THRESHOLD`, on the evaluation records."""
    step_auroc: float | None
    """On the evaluation records; None when they hold only good or only bad steps."""
    num_fit: int
    num_eval: int
    num_skipped_too_long: int = 0
    """Records left out because their PRM input is longer than the PRM's context (named in a warning)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "ProcessBench report") -> ProcessBenchReport:
        expected = {f.name for f in fields(cls)}
        # Reports written before `num_skipped_too_long` existed skipped nothing.
        if isinstance(data, dict) and set(data) == expected - {"num_skipped_too_long"}:
            data = {**data, "num_skipped_too_long": 0}
        if not isinstance(data, dict) or set(data) != expected:
            raise ValueError(f"{where}: not a ProcessBench report (expected keys {sorted(expected)}); "
                             "write it with ProcessBenchReport.save")
        metrics = {k: ProcessBenchMetrics(**data[k]) for k in ("tuned", "fixed")}
        return cls(**(data | metrics))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ProcessBenchReport:
        data = read_json(path, fix="write it with ProcessBenchReport.save")
        return cls.from_dict(data, where=str(path))


def load_processbench(path: str | Path) -> list[ProcessBenchRecord]:
    """Records of a ProcessBench-format file: `id`, `problem`, `steps` (list), `label` (-1 = correct).

    The file is JSONL, a JSON array (the official `gsm8k.json`, `math.json`, ... files) or Parquet (the Hub's
    copy), told from its content. Other keys (`generator`, `final_answer_correct`) are allowed and ignored.
    """
    records = []
    seen: dict[str, str] = {}
    for place, row in iter_rows(path):
        where = f"{path}: {place}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        missing = sorted(_FIELDS - set(row))
        if missing:
            raise ValueError(f"{where}: missing keys {missing}; ProcessBench rows need id, problem, steps, label")
        steps, label = row["steps"], row["label"]
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise ValueError(f"{where}: 'steps' must be a non-empty list of strings, got {type(steps).__name__}")
        empty = next((index for index, step in enumerate(steps) if not step.strip()), None)
        if empty is not None:
            raise ValueError(f"{where}: step {empty} is empty; every step must hold text")
        if not isinstance(label, int) or isinstance(label, bool) or not -1 <= label < len(steps):
            raise ValueError(f"{where}: 'label' must be -1 (correct) or a step index in 0..{len(steps) - 1}, got {label!r}")
        record_id = str(row["id"])
        if record_id in seen:
            raise ValueError(f"{where}: duplicate id {record_id!r} (first at {seen[record_id]}); ids must be unique")
        seen[record_id] = place
        records.append(ProcessBenchRecord(record_id, str(row["problem"]), tuple(steps), None if label == -1 else label))
    if not records:
        raise ValueError(f"{path}: no records; a ProcessBench file holds rows with id, problem, steps, label")
    return records


def predict_first_error(step_scores: Sequence[float], threshold: float) -> int | None:
    """Index of the first step scoring below `threshold`; None when none does."""
    return next((i for i, s in enumerate(step_scores) if s < threshold), None)


def _harmonic(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return a if math.isnan(b) else b
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def metrics_at(scored: Sequence[ScoredRecord], threshold: float) -> ProcessBenchMetrics:
    """Accuracy on erroneous and on correct solutions, and their F1, at one threshold.

    With only one kind of solution present, F1 is the accuracy on that kind.
    """
    hits_err = hits_ok = num_err = num_ok = 0
    for item in scored:
        predicted = predict_first_error(item.step_scores, threshold)
        if item.record.label is None:
            num_ok += 1
            hits_ok += predicted is None
        else:
            num_err += 1
            hits_err += predicted == item.record.label
    error_accuracy = hits_err / num_err if num_err else math.nan
    correct_accuracy = hits_ok / num_ok if num_ok else math.nan
    return ProcessBenchMetrics(threshold, error_accuracy, correct_accuracy, _harmonic(error_accuracy, correct_accuracy),
                               num_err, num_ok)


def _f1_curve(scored: Sequence[ScoredRecord], thresholds: np.ndarray) -> np.ndarray:
    """F1 at each threshold, without re-predicting every record per threshold.

    A record is judged right for thresholds in an interval: an erroneous one with label L for
    min(scores[:L]) >= t > scores[L], a correct one for t <= min(scores). Counting intervals that contain t
    is then two sorted searches.
    """
    err_lo, err_hi, ok_hi = [], [], []
    for item in scored:
        scores, label = item.step_scores, item.record.label
        if label is None:
            ok_hi.append(min(scores))
        else:
            lo, hi = scores[label], min(scores[:label], default=math.inf)
            if lo < hi:
                err_lo.append(lo)
                err_hi.append(hi)
    num_err = sum(item.record.label is not None for item in scored)
    num_ok = len(scored) - num_err
    err_hits = np.searchsorted(np.sort(err_lo), thresholds, side="left") - np.searchsorted(
        np.sort(err_hi), thresholds, side="left")
    ok_hits = len(ok_hi) - np.searchsorted(np.sort(ok_hi), thresholds, side="left")
    err_acc = err_hits / num_err if num_err else np.full(len(thresholds), np.nan)
    ok_acc = ok_hits / num_ok if num_ok else np.full(len(thresholds), np.nan)
    return np.array([_harmonic(float(a), float(b)) for a, b in zip(err_acc, ok_acc)])


def tune_threshold(scored: Sequence[ScoredRecord]) -> float:
    """The threshold maximising F1: candidates lie between consecutive distinct scores and beyond both ends.

    Ties: the candidate closest to `FIXED_THRESHOLD`, then the smaller one.
    """
    values = sorted({s for item in scored for s in item.step_scores})
    if not values:
        raise ValueError("cannot tune a threshold without scored records")
    candidates = [values[0]] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [math.nextafter(values[-1], math.inf)]
    f1 = _f1_curve(scored, np.array(candidates))
    best = max(range(len(candidates)), key=lambda i: (f1[i], -abs(candidates[i] - FIXED_THRESHOLD), -candidates[i]))
    return float(candidates[best])


def step_auroc(scored: Sequence[ScoredRecord]) -> float | None:
    """AUROC of step scores for good (before the first error) vs bad (the first error) steps; later steps left out."""
    from sklearn.metrics import roc_auc_score

    labels, scores = [], []
    for item in scored:
        last = len(item.step_scores) if item.record.label is None else item.record.label + 1
        for index, score in enumerate(item.step_scores[:last]):
            labels.append(int(item.record.label is None or index < item.record.label))
            scores.append(score)
    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def evaluate_scores(
    scored: Sequence[ScoredRecord], *, scorer: str = "", fit_fraction: float = 0.5, seed: int = 0
) -> ProcessBenchReport:
    """Tune the threshold on a seeded fitting split, report tuned and fixed-threshold metrics on the rest."""
    by_id = {item.record.id: item for item in scored}
    fit_ids, eval_ids = split_ids(by_id, fit_fraction=fit_fraction, seed=seed)
    fit = [by_id[i] for i in fit_ids]
    held = [by_id[i] for i in eval_ids]
    threshold = tune_threshold(fit)
    return ProcessBenchReport(
        scorer=scorer, tuned=metrics_at(held, threshold), fixed=metrics_at(held, FIXED_THRESHOLD),
        step_auroc=step_auroc(held), num_fit=len(fit), num_eval=len(held),
    )


def score_records(scorer: PRMScorer, records: Sequence[ProcessBenchRecord], *, batch_size: int = 16) -> list[ScoredRecord]:
    """Step scores of every record from a PRMScorer, `batch_size` records per call."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scored = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        results = scorer.score([r.problem for r in batch], [list(r.steps) for r in batch])
        if len(results) != len(batch):
            raise ValueError(f"scorer {scorer.name!r} returned {len(results)} results for {len(batch)} records")
        scored += [ScoredRecord(r, tuple(float(s) for s in res.step_scores)) for r, res in zip(batch, results)]
    return scored


def split_by_context(
    scorer: PRMScorer, records: Sequence[ProcessBenchRecord]
) -> tuple[list[ProcessBenchRecord], list[tuple[ProcessBenchRecord, int]]]:
    """(records that fit, (record, tokens) of those whose PRM input is longer than the scorer's context).

    A scorer that builds its inputs itself (`build_input`) and knows its context (`max_length`, as every
    checkpoint-backed scorer does) is asked for each record's input length; any other scorer fits everything.
    """
    max_length = getattr(scorer, "max_length", None)
    build_input = getattr(scorer, "build_input", None)
    if max_length is None or build_input is None:
        return list(records), []
    fitting, too_long = [], []
    for record in records:
        tokens = len(build_input(record.problem, list(record.steps)).input_ids)
        if tokens > max_length:
            too_long.append((record, tokens))
        else:
            fitting.append(record)
    return fitting, too_long


def evaluate_scorer(
    scorer: PRMScorer, records: Sequence[ProcessBenchRecord], batch_size: int = 16, *,
    fit_fraction: float = 0.5, seed: int = 0,
) -> ProcessBenchReport:
    """Score every record with `scorer`, then `evaluate_scores`.

    A record longer than the PRM's context is skipped, never truncated (a cut solution would lose the steps the
    label is about): the warning names it by id, and the report counts it (`num_skipped_too_long`); the fit /
    evaluation split is then drawn from the records that fit.
    """
    fitting, too_long = split_by_context(scorer, records)
    if too_long:
        named = ", ".join(f"{record.id} ({tokens} tokens)" for record, tokens in too_long[:_NAMED_SKIPS])
        more = f" and {len(too_long) - _NAMED_SKIPS} more" if len(too_long) > _NAMED_SKIPS else ""
        logger.warning("%s: skipped %d of %d records longer than the PRM's context (%s tokens): %s%s",
                       scorer.name, len(too_long), len(records), getattr(scorer, "max_length", None), named, more)
    if too_long and len(fitting) < 2:
        raise ValueError(f"{scorer.name}: only {len(fitting)} of {len(records)} records fit the PRM's context; "
                         "at least 2 are needed to split into fit and eval (use a longer-context PRM)")
    scored = score_records(scorer, fitting, batch_size=batch_size)
    report = evaluate_scores(scored, scorer=scorer.name, fit_fraction=fit_fraction, seed=seed)
    return replace(report, num_skipped_too_long=len(too_long))
