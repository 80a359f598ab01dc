"""Monte-Carlo (Math-Shepherd) step values: the fraction of rollouts from each step prefix that reach the gold answer."""

from __future__ import annotations

from collections.abc import Sequence

from data_prep.records import Problem
from data_prep.steps import STEP_SEPARATOR, extract_boxed_answer, join_steps
from inference.labelling.config import LabelConfig
from inference.labelling.sampling import ChunkCounts, Solution, grade, sampling_params
from inference.types import GenerationRequest, Generator


def _judged_by_own_answer(solution: Solution, step_index: int) -> bool:
    """The last step of a solution with a boxed answer is labelled by that answer, not by rollouts."""
    return step_index == len(solution.steps) - 1 and extract_boxed_answer(solution.steps[-1]) is not None


def _prefix(steps: Sequence[str]) -> str:
    """The text a rollout continues: the steps so far, then the separator (a new step starts)."""
    return join_steps(list(steps)) + STEP_SEPARATOR


def mc_step_values(
    problems: Sequence[Problem],
    solutions: Sequence[Sequence[Solution]],
    generator: Generator,
    config: LabelConfig,
    seed: int,
    counts: ChunkCounts,
) -> list[list[list[float]]]:
    """Per problem, per solution, per step: the fraction of rollouts from that step's prefix reaching the gold answer.

    All prefixes of the chunk go into one generate call with n = rollouts_per_step; a prefix that several
    solutions of one problem share is rolled out once.
    """
    keys: dict[tuple[int, str], int] = {}
    for p_index, kept in enumerate(solutions):
        for solution in kept:
            for s_index in range(len(solution.steps)):
                if not _judged_by_own_answer(solution, s_index):
                    keys.setdefault((p_index, _prefix(solution.steps[: s_index + 1])), len(keys))
    fractions: list[float] = []
    if keys:
        requests = [GenerationRequest(problems[p_index].problem, prefix) for p_index, prefix in keys]
        rollouts = generator.generate(requests, n=config.rollouts_per_step, params=sampling_params(config, seed), stop=None)
        counts.generate_calls += 1
        for (p_index, prefix), completions in zip(keys, rollouts, strict=True):
            if len(completions) != config.rollouts_per_step:
                raise RuntimeError(f"{generator.name} returned {len(completions)} rollouts for n={config.rollouts_per_step}; "
                                   "a Generator must return n completions per request")
            counts.policy_tokens += sum(completion.num_tokens for completion in completions)
            gold = problems[p_index].answer
            hits = sum(grade(gold, extract_boxed_answer(prefix + completion.text)) for completion in completions)
            fractions.append(hits / len(completions))
    values: list[list[list[float]]] = []
    for p_index, kept in enumerate(solutions):
        per_problem = []
        for solution in kept:
            per_step = []
            for s_index in range(len(solution.steps)):
                if _judged_by_own_answer(solution, s_index):
                    per_step.append(float(grade(problems[p_index].answer, extract_boxed_answer(solution.steps[-1]))))
                else:
                    per_step.append(fractions[keys[(p_index, _prefix(solution.steps[: s_index + 1]))]])
            per_problem.append(per_step)
        values.append(per_problem)
    return values


__all__ = ["mc_step_values"]
