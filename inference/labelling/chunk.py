"""One chunk of problems labelled: sample its solutions, label their steps (mc, oracle) or outcomes, make the rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_prep.labels import OUTCOME_META_KEY, outcome_row, parse_outcome_row, parse_stepwise_row
from data_prep.records import Problem, StepLabels
from data_prep.steps import extract_boxed_answer, join_steps
from inference.labelling.config import LabelConfig
from inference.labelling.monte_carlo import mc_step_values
from inference.labelling.oracle import oracle_step_labels
from inference.labelling.sampling import ChunkCounts, grade, sample_label_solutions
from inference.strategies.common import call_seed
from inference.types import Generator


@dataclass
class ChunkResult:
    """The rows of one chunk and its counters."""

    rows: list[StepLabels]
    counts: ChunkCounts


def label_chunk(problems: Sequence[Problem], generator: Generator, config: LabelConfig, chunk_index: int) -> ChunkResult:
    """Sample and label the solutions of one chunk of problems: one generate call to sample, one for all rollouts."""
    counts = ChunkCounts()
    solutions = sample_label_solutions(problems, generator, config, call_seed(config.seed, 2 * chunk_index), counts)
    values = None
    if config.labeller == "mc":
        values = mc_step_values(problems, solutions, generator, config, call_seed(config.seed, 2 * chunk_index + 1), counts)
    rows = []
    for p_index, (problem, kept) in enumerate(zip(problems, solutions, strict=True)):
        for s_index, solution in enumerate(kept):
            meta: dict[str, Any] = {
                "problem_id": problem.id,
                "solution_index": solution.index,
                "labeller": config.labeller,
                "policy": generator.name,
            }
            if values is not None:
                soft = values[p_index][s_index]
                labels: list[bool | float] = soft if config.label_kind == "soft" else [value > 0 for value in soft]
                meta.update(rollouts_per_step=config.rollouts_per_step, mc_values=soft)
                if config.compare_oracle:
                    meta["oracle_labels"] = oracle_step_labels(problem, solution.steps)
            elif config.labeller == "outcome":
                right = grade(problem.answer, extract_boxed_answer(join_steps(list(solution.steps))))
                labels = [right] * len(solution.steps)
                meta[OUTCOME_META_KEY] = right
            else:
                labels = list(oracle_step_labels(problem, solution.steps))
            rows.append(StepLabels(prompt=problem.problem, completions=list(solution.steps), labels=labels, meta=meta))
    return ChunkResult(rows, counts)


def row_to_json(config: LabelConfig, row: StepLabels) -> dict[str, Any]:
    """A labelled solution as the output file holds it: an outcome row for the outcome labeller (one label per
    solution, so no step trainer takes it for step labels), else a stepwise row."""
    if config.labeller == "outcome":
        return outcome_row(row.prompt, row.completions, row.meta[OUTCOME_META_KEY], row.meta)
    return {**row.to_dict(), "meta": row.meta}


def row_from_json(config: LabelConfig, raw: Any) -> StepLabels:
    """The inverse of `row_to_json` (raises ValueError on a row of another layout)."""
    return parse_outcome_row(raw) if config.labeller == "outcome" else parse_stepwise_row(raw)


__all__ = ["ChunkResult", "label_chunk", "row_from_json", "row_to_json"]
