"""The problems to label, the policy's sampled solutions of them (truncated, empty and repeated ones dropped), and grading."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from data_prep.benchmarks import SYNTHETIC_NUM_PER_LEVEL
from data_prep.grading import answers_match, normalize_answer
from data_prep.records import Problem, require_unique_ids
from data_prep.steps import split_steps
from inference.labelling.config import LabelBenchmarkConfig, LabelConfig
from inference.types import GenerationRequest, Generator, SamplingParams

_INTEGER = re.compile(r"-?\d+")


def grade(gold: str, pred: str | None) -> bool:
    """`answers_match`, answering at once for two plain integers (distinct integers are never equivalent)."""
    if pred is not None and _INTEGER.fullmatch(normalize_answer(gold)) and _INTEGER.fullmatch(normalize_answer(pred)):
        return int(normalize_answer(gold)) == int(normalize_answer(pred))
    return answers_match(gold, pred)


def load_label_problems(benchmark: LabelBenchmarkConfig) -> list[Problem]:
    """The problems to label; `synthetic-train` is drawn here with `data_prep.synthetic.generate_problems`."""
    from data_prep.benchmarks import load_benchmark
    from data_prep.synthetic import generate_problems

    if benchmark.is_synthetic:
        split = "train" if benchmark.name_or_path == "synthetic-train" else "test"
        problems = generate_problems(split, benchmark.num_per_level or SYNTHETIC_NUM_PER_LEVEL, benchmark.seed or 0)
        problems = problems[: benchmark.limit] if benchmark.limit is not None else problems
    else:
        config = benchmark.as_benchmark_config()
        problems = load_benchmark(config.name_or_path, limit=config.limit, **config.loader_options())
    require_unique_ids(problems, f"benchmark {benchmark.name_or_path}")
    return problems


@dataclass(frozen=True)
class Solution:
    """A sampled solution kept for labelling."""

    index: int
    """Its sample index among the problem's `num_solutions` (with dedupe, kept indices may skip)."""
    text: str
    steps: tuple[str, ...]


@dataclass
class ChunkCounts:
    """What one chunk cost and dropped."""

    dropped_truncated: int = 0
    dropped_empty: int = 0
    dropped_duplicates: int = 0
    policy_tokens: int = 0
    generate_calls: int = 0


def sampling_params(config: LabelConfig, seed: int) -> SamplingParams:
    """The sampling settings of a labelling job's solutions and rollouts, with one generate call's seed."""
    return SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens, seed=seed)


def sample_label_solutions(
    problems: Sequence[Problem], generator: Generator, config: LabelConfig, seed: int, counts: ChunkCounts
) -> list[list[Solution]]:
    """`num_solutions` solutions per problem in one generate call; truncated, empty and repeated ones dropped."""
    results = generator.generate(
        [GenerationRequest(problem.problem) for problem in problems],
        n=config.num_solutions,
        params=sampling_params(config, seed),
        stop=None,
    )
    counts.generate_calls += 1
    kept: list[list[Solution]] = []
    for problem, completions in zip(problems, results, strict=True):
        seen: set[tuple[str, ...]] = set()
        solutions = []
        for index, completion in enumerate(completions):
            counts.policy_tokens += completion.num_tokens
            steps = tuple(split_steps(completion.text))
            if completion.finish_reason == "length":
                counts.dropped_truncated += 1
            elif not steps:
                counts.dropped_empty += 1
            elif config.dedupe_solutions and steps in seen:
                counts.dropped_duplicates += 1
            else:
                seen.add(steps)
                solutions.append(Solution(index, completion.text, steps))
        kept.append(solutions)
    return kept


__all__ = [
    "ChunkCounts",
    "Solution",
    "grade",
    "load_label_problems",
    "sample_label_solutions",
    "sampling_params",
]
