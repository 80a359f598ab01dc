"""One chunk of problems labelled: sample its solutions, label their steps (mc or oracle), make the stepwise rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_prep.records import Problem, StepLabels
from inference.labelling.config import LabelConfig
from inference.labelling.monte_carlo import mc_step_values
from inference.labelling.oracle import oracle_step_labels
from inference.labelling.sampling import ChunkCounts, sample_label_solutions
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
            else:
                labels = list(oracle_step_labels(problem, solution.steps))
            rows.append(StepLabels(prompt=problem.problem, completions=list(solution.steps), labels=labels, meta=meta))
    return ChunkResult(rows, counts)


__all__ = ["ChunkResult", "label_chunk"]
