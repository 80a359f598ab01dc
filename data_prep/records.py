"""Records that cross module boundaries: problems and step-labelled training examples."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One benchmark problem, normalised across sources."""

    id: str
    """Stable identifier, unique within a source (MATH-500 `unique_id`, `gsm8k/123`, `synthetic/test/7`)."""
    problem: str
    """The problem statement given to the policy."""
    answer: str
    """Gold final answer (LaTeX or plain), compared by `data_prep.grading`."""
    level: int | None = None
    """Difficulty level 1-5 when the source gives one; None when unknown."""
    source: str = "unknown"
    """Where the problem came from: `math500`, `gsm8k`, `synthetic`, or a user-given name."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("Problem.id is empty")
        if not self.problem.strip():
            raise ValueError(f"problem {self.id!r}: problem text is empty")
        if not str(self.answer).strip():
            raise ValueError(f"problem {self.id!r}: gold answer is empty")
        if self.level is not None and not 1 <= self.level <= 5:
            raise ValueError(f"problem {self.id!r}: level must be in 1..5 or None, got {self.level}")

    def to_dict(self) -> dict:
        return {"id": self.id, "problem": self.problem, "answer": self.answer, "level": self.level, "source": self.source}


def require_unique_ids(problems: Iterable[Problem], where: str) -> None:
    """Raise ValueError naming `where` and up to three repeated ids when two problems share an id.

    Rows of a run or a labelling job are keyed by problem id, so a repeated id would merge two problems' rows.
    """
    counts = Counter(problem.id for problem in problems)
    repeated = sorted(problem_id for problem_id, count in counts.items() if count > 1)
    if repeated:
        raise ValueError(f"{where}: problem ids repeat ({repeated[:3]}); ids must be unique")


@dataclass(frozen=True)
class StepLabels:
    """A stepwise-supervision example, the shape TRL's PRMTrainer trains on.

    `labels[i]` judges step `completions[i]` given the prompt and all earlier steps: a bool (hard label)
    or a float in [0, 1] (soft label, e.g. the fraction of Monte-Carlo rollouts that reach the gold answer).
    """

    prompt: str
    completions: list[str]
    labels: list[bool | float]
    meta: dict = field(default_factory=dict, compare=False)
    """Free-form provenance (problem id, labeller, k); not used for training."""

    def __post_init__(self) -> None:
        validate_step_labels(self.prompt, self.completions, self.labels)

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "completions": list(self.completions), "labels": list(self.labels)}


def validate_step_labels(prompt: object, completions: object, labels: object) -> None:
    """Raise ValueError naming the first thing wrong with a stepwise-supervision example."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("'prompt' must be a non-empty string")
    if not isinstance(completions, (list, tuple)) or not completions:
        raise ValueError("'completions' must be a non-empty list of steps")
    if not isinstance(labels, (list, tuple)):
        raise ValueError(f"'labels' must be a list, got {type(labels).__name__}")
    if len(labels) != len(completions):
        raise ValueError(f"{len(labels)} labels for {len(completions)} steps; need one label per step")
    for index, step in enumerate(completions):
        if not isinstance(step, str) or not step.strip():
            raise ValueError(f"step {index} is empty or not a string")
    for index, label in enumerate(labels):
        # bool is a subclass of int: accept bools and real numbers in [0, 1], never strings or None.
        if isinstance(label, bool):
            continue
        if not isinstance(label, (int, float)) or isinstance(label, complex):
            raise ValueError(f"label {index} must be a bool or a float in [0, 1], got {label!r}")
        if math.isnan(label) or not 0.0 <= label <= 1.0:
            raise ValueError(f"label {index} must be in [0, 1], got {label!r}")
