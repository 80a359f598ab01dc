"""Running totals over a labelling job's rows and progress records, its summary, and mc/oracle label agreement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_prep.records import StepLabels
from inference.labelling.config import LabelConfig

Row = StepLabels | Mapping[str, Any]
"""A stepwise example as a record or as a row read from JSONL."""

CONFUSION_KEYS = ("both_true", "mc_only_true", "oracle_only_true", "both_false")
"""Step counts by (mc hard label, oracle label) in the summary's `oracle_confusion`."""


def _hard(label: Any) -> bool:
    return bool(label) if isinstance(label, bool) else float(label) > 0


def _labels_and_steps(row: Row) -> tuple[list[Any], list[str]]:
    if isinstance(row, StepLabels):
        return list(row.labels), list(row.completions)
    return list(row["labels"]), list(row["completions"])


def label_agreement(mc_rows: Sequence[Row], oracle_rows: Sequence[Row]) -> float:
    """Fraction of steps whose Monte-Carlo hard label (a soft label counts as True when > 0) equals the oracle's.

    The two lists must hold the same solutions in the same order (row i of each has the same steps).
    """
    if len(mc_rows) != len(oracle_rows):
        raise ValueError(f"{len(mc_rows)} mc rows but {len(oracle_rows)} oracle rows; pass the same solutions to both")
    equal = total = 0
    for index, (mc_row, oracle_row) in enumerate(zip(mc_rows, oracle_rows)):
        mc_labels, mc_steps = _labels_and_steps(mc_row)
        oracle_values, oracle_steps = _labels_and_steps(oracle_row)
        if mc_steps != oracle_steps:
            raise ValueError(f"row {index}: the mc and oracle rows label different steps; pair rows of the same solution")
        equal += sum(_hard(a) == _hard(b) for a, b in zip(mc_labels, oracle_values))
        total += len(mc_labels)
    if total == 0:
        raise ValueError("no steps to compare; label at least one solution")
    return equal / total


@dataclass(frozen=True)
class LabelSummary:
    """The state of a labelling job's output file (all runs so far), also written as `<stem>.summary.json`."""

    output: str
    labeller: str
    label_kind: str
    num_solutions: int
    rollouts_per_step: int | None
    """k of the mc labeller; None for the oracle."""
    problems: int
    """Problems selected by the benchmark section."""
    problems_done: int
    """Of those, problems labelled (by this or an earlier run); a problem whose solutions were all dropped counts."""
    examples: int
    """Rows in the output: one per kept solution."""
    steps: int
    positive_steps: int
    """Steps whose label is True (hard) or > 0 (soft)."""
    positive_step_fraction: float | None
    mean_label: float | None
    """Mean label over steps (soft labels as they are, hard ones as 0/1)."""
    dropped_truncated: int
    dropped_empty: int
    dropped_duplicates: int
    policy_tokens: int
    generate_calls: int
    seconds: float
    """Labelling time of all runs so far (sampling, rollouts, grading; not model loading)."""
    oracle_agreement: float | None
    """Fraction of steps whose mc hard label equals the oracle label (compare_oracle); None otherwise."""
    oracle_agreement_steps: int
    oracle_confusion: dict[str, int] | None
    """Steps by (mc hard label, oracle label): both_true, mc_only_true, oracle_only_true, both_false."""
    rows_written_now: int = 0
    """Rows this call appended (0 when everything was already done)."""

    def __str__(self) -> str:
        text = (
            f"{self.examples} rows ({self.steps} steps, {self.positive_step_fraction or 0:.1%} positive) for "
            f"{self.problems_done}/{self.problems} problems in {self.output}; {self.rows_written_now} written now"
        )
        if self.oracle_agreement is not None:
            text += f"; agreement with the oracle {self.oracle_agreement:.1%} of {self.oracle_agreement_steps} steps"
        return text

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Tally:
    """Running totals over the rows and progress records of the output files."""

    done: set[str] = field(default_factory=set)
    examples: int = 0
    steps: int = 0
    positive: int = 0
    label_sum: float = 0.0
    agree: int = 0
    agree_steps: int = 0
    confusion: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CONFUSION_KEYS, 0))
    counters: dict[str, float] = field(default_factory=dict)

    def add_row(self, row: StepLabels) -> None:
        self.done.add(str(row.meta.get("problem_id")))
        self.examples += 1
        self.steps += len(row.labels)
        self.positive += sum(_hard(label) for label in row.labels)
        self.label_sum += sum(float(label) for label in row.labels)
        if "oracle_labels" in row.meta:
            for label, oracle in zip(row.labels, row.meta["oracle_labels"]):
                mc = _hard(label)
                self.agree += mc == bool(oracle)
                self.confusion[CONFUSION_KEYS[2 * (not mc) + (not oracle)]] += 1
            self.agree_steps += len(row.labels)

    def add_progress(self, record: Mapping[str, Any]) -> None:
        self.done.update(record["problem_ids"])
        for key, value in record.items():
            if key not in ("chunk", "problem_ids"):
                self.counters[key] = self.counters.get(key, 0) + value

    def summary(self, config: LabelConfig, ids: set[str], written: int) -> LabelSummary:
        """The job's summary over the problems `ids`, with `written` rows appended by this call."""
        counters = {key: self.counters.get(key, 0) for key in
                    ("dropped_truncated", "dropped_empty", "dropped_duplicates", "policy_tokens", "generate_calls",
                     "seconds")}
        return LabelSummary(
            output=config.output,
            labeller=config.labeller,
            label_kind=config.label_kind if config.labeller == "mc" else "hard",
            num_solutions=config.num_solutions,
            rollouts_per_step=config.rollouts_per_step if config.labeller == "mc" else None,
            problems=len(ids),
            problems_done=len(ids & self.done),
            examples=self.examples,
            steps=self.steps,
            positive_steps=self.positive,
            positive_step_fraction=self.positive / self.steps if self.steps else None,
            mean_label=self.label_sum / self.steps if self.steps else None,
            dropped_truncated=int(counters["dropped_truncated"]),
            dropped_empty=int(counters["dropped_empty"]),
            dropped_duplicates=int(counters["dropped_duplicates"]),
            policy_tokens=int(counters["policy_tokens"]),
            generate_calls=int(counters["generate_calls"]),
            seconds=round(float(counters["seconds"]), 3),
            oracle_agreement=self.agree / self.agree_steps if self.agree_steps else None,
            oracle_agreement_steps=self.agree_steps,
            oracle_confusion=dict(self.confusion) if self.agree_steps else None,
            rows_written_now=written,
        )


__all__ = ["CONFUSION_KEYS", "LabelSummary", "Row", "Tally", "label_agreement"]
