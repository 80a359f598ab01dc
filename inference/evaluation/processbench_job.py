"""`ttc-infer processbench`: ProcessBench-style evaluation of one or more PRM checkpoints on one labelled file."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data_prep.io import atomic_write_text
from data_prep.labels import STEPWISE_FIELDS, iter_rows, parse_stepwise_row
from data_prep.records import StepLabels
from inference.config import (
    Backend,
    ConfigError,
    Device,
    DType,
    PRMStyleName,
    check_scoring_backend,
    dump_config,
    scoring_backend_options,
)
from inference.evaluation.processbench import (
    FIXED_THRESHOLD,
    ProcessBenchRecord,
    ProcessBenchReport,
    evaluate_scorer,
    load_processbench,
)

logger = logging.getLogger(__name__)

DataFormat = Literal["processbench", "stepwise", "auto"]
_PRM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PROCESSBENCH_KEYS = frozenset({"steps", "label"})


@dataclass(frozen=True)
class ProcessBenchConfig:
    """`ttc-infer processbench`: find each PRM's first-wrong-step accuracy (F1 of erroneous / correct solutions)."""

    prms: dict[str, str] = field(default_factory=dict)
    """Display name -> PRM checkpoint directory, e.g. `{tiny: runs/default/prm}`; each PRM writes
    `processbench-<name>.json`. On the command line: `--prms.<name> DIR`. `synthetic-checker` is the synthetic
    world's exact checker (a perfect verifier: F1 and AUROC 1 on checker-labelled data)."""
    data: str = ""
    """A ProcessBench file (`id`, `problem`, `steps`, `label` = first wrong step or -1: the official
    `gsm8k.json` / `math.json` / `olympiadbench.json` / `omnimath.json` JSON arrays as published) or a stepwise
    file with hard labels (`prompt`, `completions`, `labels`, e.g. from `ttc-infer label` with `labeller:
    oracle`). JSONL, a JSON array or Parquet, told from the content (Parquet by its `PAR1` magic). A record
    whose PRM input is longer than a PRM's context is skipped for that PRM, never truncated: a warning names it
    by id and the report counts it (`num_skipped_too_long`)."""
    data_format: DataFormat = "auto"
    """`processbench`, `stepwise`, or `auto` (stepwise when the first row has `prompt`/`completions`/`labels`,
    ProcessBench when it has `steps`/`label`)."""
    limit: int | None = None
    """Keep only the first `limit` records of the file; null keeps all."""
    prm_style: PRMStyleName | None = None
    """Style of every PRM; null reads it from each checkpoint's `ttc_prm.json` (public PRMs need it set)."""
    dtype: DType = "auto"
    """Weights dtype; `auto` is bfloat16 on CUDA and float32 on CPU."""
    device: Device = "auto"
    """`cpu`, `cuda`, or `auto` (CUDA when available)."""
    backend: Backend = "transformers"
    """Scoring backend, as a run's `prm.backend`: `transformers` (every style) or `vllm` (token_classification and
    qwen_prm as a pooling model, chat_plus_minus, step_tag and lm_likelihood from prompt log-probabilities, implicit
    from those of its two engines, which split the PRM's share; GPU with the vllm extra, or CPU with vLLM's CPU
    build). max_tokens_per_batch is the transformers scorer's."""
    gpu_memory_utilization: float | None = None
    """vllm only: fraction of GPU memory each PRM's engine may take; null shares 0.9 among the PRMs (an engine may
    keep its memory until the job ends, so their shares must add up to at most 1)."""
    max_tokens_per_batch: int = 8192
    """Token budget of one PRM forward pass (solutions are packed up to it)."""
    batch_size: int = 16
    """Records handed to the scorer per call."""
    fit_fraction: float = 0.5
    """Share of records (split by id, seeded) on which the threshold is tuned; metrics are on the rest."""
    seed: int = 0
    """Seed of the fit / evaluation split of records."""
    output_dir: str = ""
    """Directory for `processbench-<name>.json` per PRM and the resolved `processbench-config.yaml`."""

    def __post_init__(self) -> None:
        if not self.prms:
            raise ConfigError("processbench needs prms: a mapping of display name -> PRM checkpoint directory, "
                              "e.g. --prms.tiny runs/default/prm")
        for name, path in self.prms.items():
            if not _PRM_NAME.fullmatch(name):
                raise ConfigError(f"prms: name {name!r} is used in a file name; use letters, digits, '.', '_' or '-'")
            if not path:
                raise ConfigError(f"prms.{name} is empty; set it to a PRM checkpoint directory")
        if not self.data:
            raise ConfigError("processbench needs --data: a ProcessBench file or a stepwise file with hard labels")
        if not self.output_dir:
            raise ConfigError("processbench needs --output_dir: where to write processbench-<name>.json per PRM")
        if self.limit is not None and self.limit < 2:
            raise ConfigError(f"limit must be >= 2 or null, got {self.limit}; the records are split into fit and eval")
        for key in ("max_tokens_per_batch", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.fit_fraction < 1:
            raise ConfigError(f"fit_fraction must be in (0, 1), got {self.fit_fraction}; e.g. 0.5")
        share = self.engine_share()
        check_scoring_backend(self.backend, self.device, share, is_set=self.gpu_memory_utilization is not None,
                              prefix="")
        if self.backend == "vllm" and share * len(self.prms) > 1:
            raise ConfigError(
                f"{len(self.prms)} PRMs on vllm at gpu_memory_utilization {share} each need {share * len(self.prms):.2f}"
                f" of the GPU (an engine may keep its memory until the job ends); set it to at most "
                f"{math.floor(100 / len(self.prms)) / 100}, or leave it unset")

    def engine_share(self) -> float:
        """The GPU memory share of each PRM's vLLM engine: `gpu_memory_utilization`, else 0.9 shared by the PRMs."""
        if self.gpu_memory_utilization is not None:
            return self.gpu_memory_utilization
        return round(0.9 / max(1, len(self.prms)), 4)

    def report_path(self, name: str) -> Path:
        """Where the report of PRM `name` is written."""
        return Path(self.output_dir) / f"processbench-{name}.json"


# --------------------------------------------------------------------------- stepwise rows -> records


def _hard_label(value: Any, index: int) -> bool:
    """A label that is exactly good or bad: a bool, or a number equal to 0 or 1 (Parquet stores bools as floats)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(
        f"label {index} is soft ({value!r}); ProcessBench needs exact labels (true/false): use hard labels, "
        "e.g. `ttc-infer label` with labeller: oracle, or label_kind: hard"
    )


def record_from_step_labels(row: StepLabels, record_id: str) -> ProcessBenchRecord:
    """One stepwise example -> a record whose label is the index of the first False label (None when all True).

    Labels after the first False one are ignored: ProcessBench labels only the earliest error.
    """
    hard = [_hard_label(value, index) for index, value in enumerate(row.labels)]
    first_wrong = next((index for index, good in enumerate(hard) if not good), None)
    return ProcessBenchRecord(record_id, row.prompt, tuple(row.completions), first_wrong)


def _record_id(row: StepLabels, fallback: str) -> str:
    meta = row.meta or {}
    if "problem_id" in meta and "solution_index" in meta:
        return f"{meta['problem_id']}#{meta['solution_index']}"
    return fallback


def records_from_step_labels(
    rows: Iterable[StepLabels | Mapping[str, Any]], *, source: str = "rows", lines: Sequence[int | str] | None = None
) -> list[ProcessBenchRecord]:
    """Stepwise rows (records or `{prompt, completions, labels, meta?}` dicts) -> ProcessBench records.

    label = index of the first False label, or None (-1 on disk) when every label is True; a soft label raises.
    The id is `<meta.problem_id>#<meta.solution_index>` when the row carries both, else `<source>:<line>`.
    Errors name `source` and the row's place: `lines[i]` (a line number, or a place such as `row 3`), else its
    1-based position.
    """
    records: list[ProcessBenchRecord] = []
    seen: dict[str, str] = {}
    for position, row in enumerate(rows):
        if lines is None:
            where = f"row {position + 1}"
        else:
            where = lines[position] if isinstance(lines[position], str) else f"line {lines[position]}"
        try:
            labels = row if isinstance(row, StepLabels) else parse_stepwise_row(dict(row) if isinstance(row, Mapping) else row)
            record = record_from_step_labels(labels, _record_id(labels, f"{source}:{where.split()[-1]}"))
        except ValueError as error:
            raise ValueError(f"{source}: {where}: {error}") from None
        if record.id in seen:
            raise ValueError(f"{source}: {where}: duplicate id {record.id!r} (first at {seen[record.id]}); "
                             "each (meta.problem_id, meta.solution_index) may appear once")
        seen[record.id] = where
        records.append(record)
    if not records:
        raise ValueError(f"{source}: no rows; a stepwise file holds rows with prompt, completions, labels")
    return records


def detect_format(path: str | Path) -> Literal["processbench", "stepwise"]:
    """The format of a JSONL, JSON-array or Parquet file, decided from the keys of its first row."""
    for place, row in iter_rows(path):
        keys = sorted(row) if isinstance(row, dict) else []
        if set(STEPWISE_FIELDS) <= set(keys):
            return "stepwise"
        if _PROCESSBENCH_KEYS <= set(keys):
            return "processbench"
        found = f"keys {keys}" if isinstance(row, dict) else f"a {type(row).__name__}"
        raise ValueError(
            f"{path}: {place}: {found} match neither format; a stepwise row has "
            f"{list(STEPWISE_FIELDS)}, a ProcessBench row has id, problem, steps, label (or set data_format)"
        )
    raise ValueError(f"{path}: no rows; the file is empty")


def load_records(
    path: str | Path, data_format: DataFormat = "auto", limit: int | None = None
) -> list[ProcessBenchRecord]:
    """The records of a ProcessBench or stepwise file (JSONL, JSON array or Parquet; the first `limit` when given)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file {path} not found; write it with `ttc-infer label` or fix the path")
    kind = detect_format(path) if data_format == "auto" else data_format
    if kind == "processbench":
        records = load_processbench(path)
    else:
        numbered = list(iter_rows(path))
        records = records_from_step_labels(
            [row for _, row in numbered], source=str(path), lines=[place for place, _ in numbered]
        )
    logger.info("%s: %d %s records", path, len(records), kind)
    return records[:limit] if limit is not None else records


# --------------------------------------------------------------------------- the job


def _load_scorer(config: ProcessBenchConfig, name: str, path: str) -> Any:
    from inference.scoring.loader import load_scorer

    scorer = load_scorer(path, prm_style=config.prm_style, dtype=config.dtype, device=config.device,
                         max_tokens_per_batch=config.max_tokens_per_batch,
                         **scoring_backend_options(config.backend, config.engine_share()))
    scorer.name = name
    return scorer


def _number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def summary_line(name: str, report: ProcessBenchReport, path: str | Path) -> str:
    """One line per PRM: F1 at the tuned and the fixed threshold, step AUROC, split sizes, skips, report file."""
    tuned, fixed = report.tuned, report.fixed
    skipped = (f"; {report.num_skipped_too_long} skipped (longer than the PRM's context)"
               if report.num_skipped_too_long else "")
    return (f"{name}: F1 {_number(tuned.f1)} tuned (threshold {tuned.threshold:.3f}), {_number(fixed.f1)} at "
            f"{FIXED_THRESHOLD}; step AUROC {_number(report.step_auroc)}; {report.num_fit} fit / "
            f"{report.num_eval} eval records{skipped} -> {path}")


def processbench(config: ProcessBenchConfig) -> str:
    """Score the records with every PRM in turn, save one report per PRM; return one summary line per PRM."""
    from inference.scoring.loader import is_loadable_prm_path

    missing = [f"{name}={path}" for name, path in config.prms.items() if not is_loadable_prm_path(path)]
    if missing:
        raise FileNotFoundError(f"PRM directories not found: {', '.join(missing)}; fix prms in the config")
    records = load_records(config.data, config.data_format, config.limit)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "processbench-config.yaml", dump_config(config))
    lines = [f"{len(records)} records from {config.data}"]
    for name, path in config.prms.items():
        scorer = _load_scorer(config, name, path)
        report = evaluate_scorer(scorer, records, config.batch_size, fit_fraction=config.fit_fraction, seed=config.seed)
        del scorer
        report.save(config.report_path(name))
        lines.append(summary_line(name, report, config.report_path(name)))
        logger.info("%s", lines[-1])
    return "\n".join(lines)


__all__ = [
    "ProcessBenchConfig",
    "detect_format",
    "load_records",
    "processbench",
    "record_from_step_labels",
    "records_from_step_labels",
    "summary_line",
]
