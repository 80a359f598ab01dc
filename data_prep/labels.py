"""Step- and outcome-supervision records on disk: read/write, Math-Shepherd, PRM800K and RLHFlow converters, mixing,
oracle labels."""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data_prep.io import FileKind, atomic_output, refuse_oversized_row, write_jsonl
from data_prep.io import file_kind as io_file_kind
from data_prep.records import Problem, StepLabels, validate_step_labels
from data_prep.steps import STEP_SEPARATOR, join_steps, split_steps

logger = logging.getLogger(__name__)

LabelFormat = Literal["stepwise", "math_shepherd", "prm800k", "rlhflow", "outcome"]
LABEL_FORMATS: tuple[str, ...] = ("stepwise", "math_shepherd", "prm800k", "rlhflow", "outcome")
STEP_LABEL_FORMATS: tuple[str, ...] = ("stepwise", "math_shepherd", "prm800k", "rlhflow")
"""The formats with a label per step; `outcome` has one label per solution."""

STEPWISE_FIELDS = ("prompt", "completions", "labels")
"""Required fields of a stepwise row; `meta` (a dict of provenance) is the only optional one."""
OUTCOME_FIELDS = ("prompt", "completion", "label")
"""An outcome row, TRL's unpaired-preference layout: the problem, the whole solution (steps joined by the blank line)
and whether it is right; `meta` is optional."""
OUTCOME_META_KEY = "outcome"
"""The meta key of a record read from an outcome row: its solution's label (every step carries it too)."""
MATH_SHEPHERD_STEP_TAG = "ки"
"""Math-Shepherd marks the end of each step in `input` with this tag; `label` has `+` or `-` in its place."""

_BLANK_LINE = re.compile(r"\n\s*\n")


class LabelFileError(ValueError):
    """A stepwise-supervision file is malformed; the message names the file and the 1-based row or line."""


# --------------------------------------------------------------------------------------------------------------------
# The PRM input layout, shared by training and by the token-classification scorer at inference.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepTokens:
    """One PRM input: `[bos] + prompt + (step_1 + sep) + (step_2 + sep) + ...`, each piece tokenized on its own.

    The prompt is the raw problem text (no system prompt, no chat template) and the label of step i sits on the last
    token of the separator that follows it, as in TRL's `PRMTrainer.tokenize_row`.
    """

    input_ids: list[int]
    labels: list[float]
    """-100 everywhere except at `step_positions`, where it holds the step's label in [0, 1] (training only)."""
    step_positions: list[int]
    """Index in `input_ids` of the token that scores each step; steps cut off by truncation have no position."""


def tokenize_steps(
    tokenizer: Any,
    prompt: str,
    steps: Sequence[str],
    labels: Sequence[bool | float] | None = None,
    *,
    separator: str = STEP_SEPARATOR,
    max_length: int | None = None,
    max_completion_length: int | None = None,
    train_on_last_step_only: bool = False,
) -> StepTokens:
    """Token ids and per-token labels for one example; labels stay floats (soft labels are kept as they are)."""
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"{len(labels)} labels for {len(steps)} steps; need one label per step")
    prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    separator_ids = list(tokenizer.encode(separator, add_special_tokens=False))
    if not separator_ids:
        raise ValueError(f"the tokenizer encodes the step separator {separator!r} to no tokens")
    if tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    completion_ids: list[int] = []
    completion_labels: list[float] = []
    ends: list[int] = []
    for index, step in enumerate(steps):
        step_ids = list(tokenizer(step, add_special_tokens=False)["input_ids"]) + separator_ids
        completion_ids.extend(step_ids)
        ends.append(len(completion_ids) - 1)
        value = -100.0
        if labels is not None and not (train_on_last_step_only and index < len(steps) - 1):
            value = float(labels[index])
        completion_labels.extend([-100.0] * (len(step_ids) - 1) + [value])
    if max_completion_length is not None:
        completion_ids = completion_ids[:max_completion_length]
        completion_labels = completion_labels[:max_completion_length]
    input_ids = prompt_ids + completion_ids
    token_labels = [-100.0] * len(prompt_ids) + completion_labels
    limit = len(input_ids) if max_length is None else min(max_length, len(input_ids))
    positions = [len(prompt_ids) + end for end in ends if len(prompt_ids) + end < limit and end < len(completion_ids)]
    return StepTokens(input_ids=input_ids[:limit], labels=token_labels[:limit], step_positions=positions)


# --------------------------------------------------------------------------------------------------------------------
# Reading rows from JSONL / a JSON array / Parquet / a saved `datasets` dataset, recognised by content.
# --------------------------------------------------------------------------------------------------------------------

def file_kind(path: str | Path) -> FileKind:
    """What a data file holds (`data_prep.io.file_kind`: told from its content, not its suffix); an empty or
    unrecognised file raises LabelFileError naming it."""
    path = Path(path)
    kind = io_file_kind(path)
    if kind == "empty":
        raise LabelFileError(f"{path}: the file is empty; it holds no rows")
    if kind == "unknown":
        with path.open("rb") as handle:
            head = handle.read(16)
        raise LabelFileError(
            f"{path}: not JSONL (one JSON object per line), a JSON array of objects, Parquet or a saved `datasets` "
            f"directory (it starts with {head!r})"
        )
    return kind


def iter_rows(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield (`"line N"` for JSONL, `"row N"` otherwise, 1-based; the raw row) for every record of a data file.

    The kind of file is told from its content (`file_kind`); a malformed file raises LabelFileError naming it and
    the line or row.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind == "dataset_dir":
        yield from _dataset_rows(path)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as error:  # noqa: BLE001 - pyarrow raises its own error types for a damaged file
            raise LabelFileError(f"{path}: unreadable Parquet ({error})") from None
        for index, row in enumerate(rows):
            yield f"row {index + 1}", row
    elif kind == "json_array":
        try:
            rows = json.loads(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as error:
            raise LabelFileError(f"{path}: not valid UTF-8 (byte {error.start}); re-encode the file as UTF-8") from None
        except json.JSONDecodeError as error:
            raise LabelFileError(f"{path} line {error.lineno}: invalid JSON ({error.msg})") from None
        if not isinstance(rows, list):  # `[1] x` and the like parse as something else only through an error above
            raise LabelFileError(f"{path}: a JSON file must hold a list of rows, got {type(rows).__name__}")
        for index, row in enumerate(rows):
            yield f"row {index + 1}", row
    else:
        yield from _jsonl_rows(path)


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                refuse_oversized_row(path, f"line {number}", len(raw))
            except ValueError as error:
                raise LabelFileError(str(error)) from None
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise LabelFileError(f"{path} line {number}: not valid UTF-8 (byte {error.start} of the line); "
                                     "re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as error:
                raise LabelFileError(f"{path} line {number}: invalid JSON ({error.msg} at column {error.colno}); "
                                     "each line must hold one JSON object") from None


def _dataset_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise LabelFileError(f"{path}: not a saved `datasets` dataset ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise LabelFileError(f"{path}: a DatasetDict without a 'train' split (splits {list(loaded)}); "
                                 "save the split you want with Dataset.save_to_disk")
        loaded = loaded["train"]
    for index, row in enumerate(loaded):
        yield f"row {index + 1}", row


# --------------------------------------------------------------------------------------------------------------------
# Converters: one published row -> stepwise records.
# --------------------------------------------------------------------------------------------------------------------

DROPPED_INVALID = "invalid rows (skip_invalid_rows)"
DROPPED_BAD_PROBLEM = "rows marked bad_problem"
DROPPED_NO_STEP = "rows with no labelled step"
DROPPED_SCREENING = "rows of initial screening questions"
DROPPED_QC_DUPLICATE = "repeated examples of quality-control questions"
DROPPED_UNRATED = "unrated completions"
DROPPED_STRAY_TAG = "labels at a stray step tag inside the question"
DROPPED_FIRST_TURN = "first-step labels (no 'Step 1:' splits the problem from the first step)"


def _flatten_step(text: str) -> str:
    """A step may not contain the step separator: blank lines inside a converted step become single newlines."""
    return _BLANK_LINE.sub("\n", text.strip())


def _check_no_separator(completions: Sequence[str]) -> None:
    for index, step in enumerate(completions):
        if STEP_SEPARATOR in step.strip():
            raise ValueError(f"step {index} contains the step separator {STEP_SEPARATOR!r}, so the PRM would see two "
                             "steps where the label names one; split it into two steps or replace the blank line")


def _require_fields(row: Any, fields: Sequence[str], layout: str) -> dict:
    if not isinstance(row, dict) or any(name not in row for name in fields):
        found = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ValueError(f"fields {found}: {layout} needs {', '.join(repr(name) for name in fields)}")
    return row


def parse_stepwise_row(row: Any) -> StepLabels:
    """One stepwise row `{"prompt", "completions", "labels", "meta"?}` -> StepLabels; raises ValueError."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    missing = [name for name in STEPWISE_FIELDS if name not in row]
    unknown = sorted(set(row) - set(STEPWISE_FIELDS) - {"meta"})
    if missing or unknown:
        hint = (" (this is an outcome row: read it with data_format outcome)"
                if set(OUTCOME_FIELDS) <= set(row) else "")
        raise ValueError(f"fields {sorted(row)}: missing {missing}, unknown {unknown}; "
                         f"a stepwise row has {list(STEPWISE_FIELDS)} and optional 'meta'{hint}")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"'meta' must be an object, got {type(meta).__name__}")
    validate_step_labels(row["prompt"], row["completions"], row["labels"])
    _check_no_separator(row["completions"])
    return StepLabels(prompt=row["prompt"], completions=list(row["completions"]), labels=list(row["labels"]), meta=meta)


def parse_outcome_row(row: Any) -> StepLabels:
    """One outcome row `{"prompt", "completion", "label", "meta"?}` -> StepLabels whose every step carries the
    solution's label (meta `outcome` holds it), for trainers that read only the outcome; raises ValueError."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    missing = [name for name in OUTCOME_FIELDS if name not in row]
    unknown = sorted(set(row) - set(OUTCOME_FIELDS) - {"meta"})
    if missing or unknown:
        raise ValueError(f"fields {sorted(row)}: missing {missing}, unknown {unknown}; an outcome row has "
                         f"{list(OUTCOME_FIELDS)} and optional 'meta'")
    if not isinstance(row["completion"], str) or not row["completion"].strip():
        raise ValueError("'completion' must be the non-empty solution text (steps joined by a blank line)")
    label = row["label"]
    if not isinstance(label, bool):
        raise ValueError(f"'label' must be true or false (is the whole solution right), got {label!r}")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"'meta' must be an object, got {type(meta).__name__}")
    steps = split_steps(row["completion"])
    validate_step_labels(row["prompt"], steps, [label] * len(steps))
    return StepLabels(prompt=row["prompt"], completions=steps, labels=[label] * len(steps),
                      meta={**meta, OUTCOME_META_KEY: label})


def outcome_row(prompt: str, steps: Sequence[str], label: bool, meta: dict | None = None) -> dict:
    """The outcome row of one solution (the layout `parse_outcome_row` reads)."""
    return {"prompt": prompt, "completion": join_steps(list(steps)), "label": bool(label), "meta": dict(meta or {})}


def math_shepherd_to_step_labels(row: Any, dropped: Counter | None = None) -> StepLabels:
    """A Math-Shepherd row (`input`, `label`, `task`) -> StepLabels.

    `input` is the question followed by `Step 1: ... ки\\nStep 2: ... ки`; `label` is the same text with each `ки`
    replaced by `+` (good) or `-` (bad). The question ends where `Step 1:` begins.

    A few published rows have a stray `ки` inside the question (an annotation slip, with its own `+`/`-` in
    `label`). As TRL's Math-Shepherd converter does for them, that label is dropped and the row is kept; the tag is
    taken out of the question text, which stays whole. Each dropped label is counted in `dropped`.
    """
    _require_fields(row, ("input", "label"), "a Math-Shepherd row")
    text, labelled = row["input"], row["label"]
    if not isinstance(text, str) or not isinstance(labelled, str):
        raise ValueError("'input' and 'label' must be strings")
    tag = MATH_SHEPHERD_STEP_TAG
    starts = [match.start() for match in re.finditer(re.escape(tag), text)]
    if not starts:
        raise ValueError(f"'input' has no step tag {tag!r}")
    tail = text[starts[-1] + len(tag):]
    if tail.strip():
        raise ValueError(f"'input' has text after the last step tag: {tail.strip()[:60]!r}")
    marks: list[bool] = []
    for index, start in enumerate(starts):
        # Each earlier tag (two characters) became one character in `label`.
        position = start - index * (len(tag) - 1)
        mark = labelled[position] if position < len(labelled) else None
        if mark not in ("+", "-"):
            raise ValueError(f"'label' has {mark!r} where step tag {index + 1} is; expected '+' or '-'")
        marks.append(mark == "+")
    step_1 = re.search(r"step 1:", text, flags=re.IGNORECASE)
    if step_1 is None or step_1.start() > starts[-1]:
        raise ValueError("'input' has no 'Step 1:' before the last step tag, so the question cannot be split off")
    stray = sum(start < step_1.start() for start in starts)
    if stray and dropped is not None:
        dropped[DROPPED_STRAY_TAG] += stray
    prompt = " ".join(part.strip() for part in text[: step_1.start()].split(tag) if part.strip())
    ends = starts[stray:]
    beginnings = [step_1.start()] + [start + len(tag) for start in ends[:-1]]
    completions = [_flatten_step(text[begin:end]) for begin, end in zip(beginnings, ends)]
    meta = {"source": "math_shepherd", "task": row.get("task")}
    return StepLabels(prompt=prompt, completions=completions, labels=marks[stray:], meta=meta)


def _prm800k_label(rating: Any, neutral_as: bool, where: str) -> bool:
    if isinstance(rating, bool) or rating not in (-1, 0, 1):
        raise ValueError(f"'{where}.rating' must be -1, 0 or 1, got {rating!r}")
    return rating == 1 or (rating == 0 and neutral_as)


def _prm800k_text(completion: Any, where: str) -> str:
    text = completion.get("text") if isinstance(completion, dict) else completion
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"'{where}.text' must be a non-empty string")
    return _flatten_step(text)


def prm800k_to_step_labels(row: Any, neutral_as: bool = True, dropped: Counter | None = None) -> list[StepLabels]:
    """A PRM800K row (`question`, `label`, ...) -> one example per rated alternative and one for the trajectory.

    As TRL's PRM800K converter: walking `label.steps`, every rated completion other than the chosen one ends an
    example of its own (the trajectory so far + that completion, labelled by its rating); the trajectory then
    continues with `chosen_completion` (labelled by its rating) or `human_completion` (written by a labeller only
    as a correct step, so labelled good), and stops at the first step with neither. The trajectory itself is the
    last example. Ratings: +1 -> True, -1 -> False, 0 (neutral) -> `neutral_as` (default True, the PRM800K
    paper's "neutral is not wrong"; TRL's converter uses False). Blank lines inside a step become single newlines.

    Rows with no example: `is_initial_screening_question` rows (labels given while labellers were screened, by
    labellers who may have failed) and `finish_reason: bad_problem` rows; both counted in `dropped`, as are
    completions without a rating (skipped as alternatives; an unrated chosen one ends the trajectory before it).
    Quality-control rows (the same solution served to every labeller) are deduplicated by the file reader.
    """
    _require_fields(row, ("question", "label"), "a PRM800K row")
    question, label = row["question"], row["label"]
    counts = dropped if dropped is not None else Counter()
    if not isinstance(question, dict) or not isinstance(question.get("problem"), str):
        raise ValueError("'question.problem' must be a string")
    if not isinstance(label, dict) or not isinstance(label.get("steps"), list):
        raise ValueError("'label.steps' must be a list")
    if row.get("is_initial_screening_question"):
        counts[DROPPED_SCREENING] += 1
        return []
    if label.get("finish_reason") == "bad_problem":
        counts[DROPPED_BAD_PROBLEM] += 1
        return []
    prompt = question["problem"].strip()
    meta = {"source": "prm800k", "finish_reason": label.get("finish_reason")}
    examples: list[StepLabels] = []
    trajectory: list[str] = []
    labels: list[bool] = []
    for index, step in enumerate(label["steps"]):
        where = f"label.steps[{index}]"
        if not isinstance(step, dict):
            raise ValueError(f"'{where}' must be an object, got {type(step).__name__}")
        candidates = step.get("completions") or []
        chosen, human = step.get("chosen_completion"), step.get("human_completion")
        if not isinstance(candidates, list):
            raise ValueError(f"'{where}.completions' must be a list, got {type(candidates).__name__}")
        if chosen is not None and (isinstance(chosen, bool) or not isinstance(chosen, int)
                                   or not 0 <= chosen < len(candidates)):
            raise ValueError(f"'{where}.chosen_completion' is {chosen!r} but there are {len(candidates)} completions")
        for alternative, candidate in enumerate(candidates):
            if alternative == chosen:
                continue
            place = f"{where}.completions[{alternative}]"
            rating = candidate.get("rating") if isinstance(candidate, dict) else None
            if rating is None:
                counts[DROPPED_UNRATED] += 1
                continue
            good = _prm800k_label(rating, neutral_as, place)
            examples.append(StepLabels(prompt, trajectory + [_prm800k_text(candidate, place)], labels + [good], meta))
        if chosen is not None:
            place = f"{where}.completions[{chosen}]"
            rating = candidates[chosen].get("rating") if isinstance(candidates[chosen], dict) else None
            if rating is None:
                counts[DROPPED_UNRATED] += 1
                break
            good = _prm800k_label(rating, neutral_as, place)
            trajectory.append(_prm800k_text(candidates[chosen], place))
            labels.append(good)
        elif human is not None:
            trajectory.append(_prm800k_text(human, f"{where}.human_completion"))
            labels.append(True)
        else:
            break
    if trajectory:
        examples.append(StepLabels(prompt, trajectory, labels, meta))
    if not examples:
        counts[DROPPED_NO_STEP] += 1
    return examples


def rlhflow_to_step_labels(row: Any, dropped: Counter | None = None) -> StepLabels | None:
    """An RLHFlow PRM row (`conversations`: user/assistant turns) -> StepLabels; None when no step is left.

    RLHFlow's Mistral-PRM-Data and Deepseek-PRM-Data hold each solution as a chat: user turns are the steps (the
    first one is the problem followed by the first step), and each assistant turn is `+` (good) or `-` (bad),
    the label of the user turn before it. The problem ends where `Step 1:` begins in the first user turn. Without
    a `Step 1:` the problem and the first step cannot be told apart: the whole first turn becomes the prompt and
    its label is dropped (counted in `dropped`); a row left with no step is counted and gives None.
    """
    _require_fields(row, ("conversations",), "an RLHFlow row")
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns or len(turns) % 2:
        count = len(turns) if isinstance(turns, list) else type(turns).__name__
        raise ValueError(f"'conversations' has {count} turns; expected pairs of a user turn (a step) and an "
                         "assistant turn ('+' or '-')")
    steps: list[str] = []
    labels: list[bool] = []
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise ValueError(f"'{where}' must be an object with 'role' and a string 'content'")
        expected = "user" if index % 2 == 0 else "assistant"
        if turn.get("role") != expected:
            raise ValueError(f"'{where}.role' is {turn.get('role')!r}; expected {expected!r} (turns alternate "
                             "user, assistant, starting with user)")
        if expected == "user":
            steps.append(turn["content"])
        elif turn["content"].strip() in ("+", "-"):
            labels.append(turn["content"].strip() == "+")
        else:
            raise ValueError(f"'{where}.content' is {turn['content'][:20]!r}; an assistant turn is '+' or '-'")
    first = steps[0]
    step_1 = re.search(r"step 1:", first, flags=re.IGNORECASE)
    if step_1 is not None and first[: step_1.start()].strip():
        prompt, steps[0] = first[: step_1.start()].strip(), first[step_1.start():]
    else:
        prompt, steps, labels = first.strip(), steps[1:], labels[1:]
        if dropped is not None:
            dropped[DROPPED_FIRST_TURN] += 1
    if not prompt:
        raise ValueError("'conversations[0].content' is empty; the first user turn holds the problem")
    if not steps:
        if dropped is not None:
            dropped[DROPPED_NO_STEP] += 1
        return None
    return StepLabels(prompt, [_flatten_step(step) for step in steps], labels, meta={"source": "rlhflow"})


def convert_row(format: LabelFormat, row: Any, *, neutral_as: bool = True, dropped: Counter | None = None) -> list[StepLabels]:
    """The stepwise records of one row of a file in `format` (none, one, or for PRM800K several); raises ValueError."""
    if format == "stepwise":
        return [parse_stepwise_row(row)]
    if format == "math_shepherd":
        return [math_shepherd_to_step_labels(row, dropped)]
    if format == "prm800k":
        return prm800k_to_step_labels(row, neutral_as=neutral_as, dropped=dropped)
    if format == "rlhflow":
        record = rlhflow_to_step_labels(row, dropped)
        return [] if record is None else [record]
    if format == "outcome":
        return [parse_outcome_row(row)]
    raise ValueError(f"format must be one of {LABEL_FORMATS}, got {format!r}")


# --------------------------------------------------------------------------------------------------------------------
# Whole files: convert, count, read.
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class LabelFileCounts:
    """What converting one step-label file gave: rows read, examples kept, their steps, what was dropped and why."""

    rows: int = 0
    examples: int = 0
    steps: int = 0
    positive_steps: int = 0
    """Steps labelled good: True, or a soft label of at least 0.5."""
    dropped: Counter = field(default_factory=Counter)
    """Reason -> count; each reason names what it counts (rows, examples, labels, completions)."""
    first_invalid: str | None = None
    """With `skip_invalid_rows`: the error of the first invalid row."""

    def add(self, record: StepLabels) -> None:
        self.examples += 1
        self.steps += len(record.labels)
        self.positive_steps += sum(float(label) >= 0.5 for label in record.labels)

    def summary_lines(self) -> list[str]:
        """One line of totals, then one line per reason something was dropped."""
        share = f" ({self.positive_steps / self.steps:.1%})" if self.steps else ""
        totals = f"{self.rows} rows -> {self.examples} examples, {self.steps} steps, {self.positive_steps} positive"
        lines = [totals + share]
        lines += [f"  dropped {count} {reason}" for reason, count in sorted(self.dropped.items())]
        if self.first_invalid:
            lines.append(f"  first invalid row: {self.first_invalid}")
        return lines


def convert_label_file(
    path: str | Path, format: LabelFormat = "stepwise", *, neutral_as: bool = True, skip_invalid_rows: bool = False
) -> tuple[list[StepLabels], LabelFileCounts]:
    """The stepwise records of one file (or saved dataset directory) of `format`, with what was kept and dropped.

    A bad row raises LabelFileError naming file, row and field; with `skip_invalid_rows` (for large public sets
    with a few broken rows) it is dropped and counted instead. PRM800K quality-control rows: an example (prompt and
    steps) that an earlier quality-control row already gave is dropped and counted, so a solution served to every
    labeller counts once, with the first labeller's labels.
    """
    if format not in LABEL_FORMATS:
        raise ValueError(f"format must be one of {LABEL_FORMATS}, got {format!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; write it first (e.g. `ttc-infer label`) or fix the path")
    counts = LabelFileCounts()
    records: list[StepLabels] = []
    quality_control_seen: set[tuple[str, tuple[str, ...]]] = set()
    for where, row in iter_rows(path):
        counts.rows += 1
        try:
            converted = convert_row(format, row, neutral_as=neutral_as, dropped=counts.dropped)
        except ValueError as error:
            if not skip_invalid_rows:
                raise LabelFileError(f"{path} {where}: {error}") from None
            counts.dropped[DROPPED_INVALID] += 1
            counts.first_invalid = counts.first_invalid or f"{path} {where}: {error}"
            continue
        quality_control = format == "prm800k" and bool(row.get("is_quality_control_question"))
        for record in converted:
            if quality_control:
                key = (record.prompt, tuple(record.completions))
                if key in quality_control_seen:
                    counts.dropped[DROPPED_QC_DUPLICATE] += 1
                    continue
                quality_control_seen.add(key)
            counts.add(record)
            records.append(record)
    return records, counts


def read_step_labels(
    path: str | Path, format: LabelFormat = "stepwise", *, neutral_as: bool = True, skip_invalid_rows: bool = False
) -> list[StepLabels]:
    """Read one file (or saved dataset directory) of the given format; a bad row raises naming file and row.

    See `convert_label_file`; what was dropped is logged, and a file that gives no example raises.
    """
    records, counts = convert_label_file(path, format, neutral_as=neutral_as, skip_invalid_rows=skip_invalid_rows)
    for reason, count in sorted(counts.dropped.items()):
        logger.info("%s: dropped %d %s", path, count, reason)
    if counts.first_invalid:
        logger.warning("%s: dropped %d invalid rows (skip_invalid_rows); first: %s", path,
                       counts.dropped[DROPPED_INVALID], counts.first_invalid)
    if not records:
        raise LabelFileError(f"{path}: no labelled examples; the file is empty or every row was skipped")
    return records


def mix_step_labels(sources: Sequence[Sequence[StepLabels]], weights: Sequence[float], seed: int = 0) -> list[StepLabels]:
    """Mix sources so each one's share of the result is its weight's share, sampling without replacement.

    The mixture is the largest one in which no source is oversampled: total N = min_i len_i / w_i (weights
    normalised), and source i contributes round(w_i * N) examples drawn at random (seeded). A weight of 0 drops a
    source. The result is shuffled with the same seed.
    """
    if len(weights) != len(sources):
        raise ValueError(f"{len(weights)} weights for {len(sources)} sources; give one weight per train file")
    if any(not math.isfinite(weight) or weight < 0 for weight in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    total_weight = float(sum(weights))
    shares = [weight / total_weight for weight in weights]
    size = min(len(source) / share for source, share in zip(sources, shares) if share > 0)
    rng = random.Random(seed)
    mixed: list[StepLabels] = []
    for source, share in zip(sources, shares):
        count = min(len(source), round(share * size))
        mixed.extend(rng.sample(list(source), count))
    rng.shuffle(mixed)
    return mixed


def load_step_labels(
    path_or_paths: str | Path | Sequence[str | Path],
    format: LabelFormat = "stepwise",
    weights: Sequence[float] | None = None,
    seed: int = 0,
    *,
    neutral_as: bool = True,
    skip_invalid_rows: bool = False,
) -> list[StepLabels]:
    """Read one or more files of one format; with `weights`, mix them (see `mix_step_labels`), else concatenate."""
    paths = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    if not paths:
        raise ValueError("no label files given; pass at least one path")
    sources = [
        read_step_labels(path, format, neutral_as=neutral_as, skip_invalid_rows=skip_invalid_rows) for path in paths
    ]
    if weights is None:
        return [record for source in sources for record in source]
    return mix_step_labels(sources, weights, seed=seed)


def write_step_labels(records: Sequence[StepLabels], path: str | Path) -> Path:
    """Write stepwise records (with `meta`) as JSONL or Parquet, chosen by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**record.to_dict(), "meta": dict(record.meta)} for record in records]
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Float labels for every row keep one column type across bool (hard) and float (soft) labels;
        # `meta` is stored as JSON text since its keys vary.
        table = pa.table({
            "prompt": [row["prompt"] for row in rows],
            "completions": [row["completions"] for row in rows],
            "labels": [[float(label) for label in row["labels"]] for row in rows],
        })
        with atomic_output(path) as temporary:  # a kill mid-write must not leave a file that reads as whole
            pq.write_table(table, temporary)
    else:
        raise ValueError(f"{path}: unknown suffix {suffix!r}; use .jsonl or .parquet")
    return path


def oracle_labels(problem: Problem | str, steps: Sequence[str]) -> list[bool]:
    """Exact labels in the synthetic world: steps before the first wrong one are True, it and all after are False."""
    from data_prep.synthetic import check_solution

    first_wrong = check_solution(problem, list(steps)).first_wrong_step
    if first_wrong is None:
        return [True] * len(steps)
    return [index < first_wrong for index in range(len(steps))]
