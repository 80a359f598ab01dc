"""Stepwise-supervision records on disk: read/write, Math-Shepherd and PRM800K converters, source mixing, oracle labels."""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from data_prep.records import Problem, StepLabels, validate_step_labels
from data_prep.steps import STEP_SEPARATOR

logger = logging.getLogger(__name__)

LabelFormat = Literal["stepwise", "math_shepherd", "prm800k"]
LABEL_FORMATS: tuple[str, ...] = ("stepwise", "math_shepherd", "prm800k")

STEPWISE_FIELDS = ("prompt", "completions", "labels")
"""Required fields of a stepwise row; `meta` (a dict of provenance) is the only optional one."""
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
# Reading rows from JSONL / JSON / Parquet / a saved `datasets` dataset.
# --------------------------------------------------------------------------------------------------------------------


def _iter_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (`"line N"` or `"row N"`, raw row) for every record in a file, 1-based."""
    if path.is_dir():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as error:
            raise LabelFileError(f"{path}: not a saved `datasets` dataset ({error})") from error
        if isinstance(loaded, datasets.DatasetDict):
            if "train" not in loaded:
                raise LabelFileError(f"{path}: a DatasetDict without a 'train' split (splits {list(loaded)}); "
                                     "save the split you want with Dataset.save_to_disk")
            loaded = loaded["train"]
        for index, row in enumerate(loaded):
            yield f"row {index + 1}", row
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"line {number}", json.loads(line)
                except json.JSONDecodeError as error:
                    raise LabelFileError(f"{path} line {number}: invalid JSON ({error.msg} at column {error.colno})") from error
    elif suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise LabelFileError(f"{path} line {error.lineno}: invalid JSON ({error.msg})") from error
        if not isinstance(rows, list):
            raise LabelFileError(f"{path}: a .json file must hold a list of rows, got {type(rows).__name__}; "
                                 "or write one row per line to a .jsonl file")
        for index, row in enumerate(rows):
            yield f"row {index + 1}", row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"row {index + 1}", row
    else:
        raise LabelFileError(f"{path}: unknown file type {suffix!r}; use .jsonl, .json, .parquet "
                             "or a directory written by Dataset.save_to_disk")


def _flatten_step(text: str) -> str:
    """A step may not contain the step separator: blank lines inside a converted step become single newlines."""
    return _BLANK_LINE.sub("\n", text.strip())


def _check_no_separator(completions: Sequence[str]) -> None:
    for index, step in enumerate(completions):
        if STEP_SEPARATOR in step.strip():
            raise ValueError(f"step {index} contains the step separator {STEP_SEPARATOR!r}, so the PRM would see two "
                             "steps where the label names one; split it into two steps or replace the blank line")


def parse_stepwise_row(row: Any) -> StepLabels:
    """One stepwise row `{"prompt", "completions", "labels", "meta"?}` -> StepLabels; raises ValueError."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    missing = [name for name in STEPWISE_FIELDS if name not in row]
    unknown = sorted(set(row) - set(STEPWISE_FIELDS) - {"meta"})
    if missing or unknown:
        raise ValueError(f"fields {sorted(row)}: missing {missing}, unknown {unknown}; "
                         f"a stepwise row has {list(STEPWISE_FIELDS)} and optional 'meta'")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"'meta' must be an object, got {type(meta).__name__}")
    validate_step_labels(row["prompt"], row["completions"], row["labels"])
    _check_no_separator(row["completions"])
    return StepLabels(prompt=row["prompt"], completions=list(row["completions"]), labels=list(row["labels"]), meta=meta)


def math_shepherd_to_step_labels(row: Any) -> StepLabels:
    """A Math-Shepherd row (`input`, `label`, `task`) -> StepLabels.

    `input` is the question followed by `Step 1: ... ки\\nStep 2: ... ки`; `label` is the same text with each `ки`
    replaced by `+` (good) or `-` (bad). The question ends where `Step 1:` begins.
    """
    if not isinstance(row, dict) or "input" not in row or "label" not in row:
        fields = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ValueError(f"fields {fields}: a Math-Shepherd row needs 'input' and 'label' (and usually 'task')")
    text, labelled = row["input"], row["label"]
    if not isinstance(text, str) or not isinstance(labelled, str):
        raise ValueError("'input' and 'label' must be strings")
    pieces = text.split(MATH_SHEPHERD_STEP_TAG)
    if len(pieces) < 2:
        raise ValueError(f"'input' has no step tag {MATH_SHEPHERD_STEP_TAG!r}")
    if pieces[-1].strip():
        raise ValueError(f"'input' has text after the last step tag: {pieces[-1].strip()[:60]!r}")
    labels: list[bool] = []
    offset = 0
    for index, piece in enumerate(pieces[:-1]):
        offset += len(piece)
        # Each earlier tag (two characters) became one character in `label`.
        position = offset - index * (len(MATH_SHEPHERD_STEP_TAG) - 1)
        mark = labelled[position] if position < len(labelled) else None
        if mark not in ("+", "-"):
            raise ValueError(f"'label' has {mark!r} where step tag {index + 1} is; expected '+' or '-'")
        labels.append(mark == "+")
        offset += len(MATH_SHEPHERD_STEP_TAG)
    match = re.search(r"step 1:", pieces[0], flags=re.IGNORECASE)
    if match is None:
        raise ValueError("'input' has no 'Step 1:' before the first step tag, so the question cannot be split off")
    prompt = pieces[0][: match.start()].strip()
    completions = [_flatten_step(pieces[0][match.start():])] + [_flatten_step(piece) for piece in pieces[1:-1]]
    meta = {"source": "math_shepherd", "task": row.get("task")}
    return StepLabels(prompt=prompt, completions=completions, labels=labels, meta=meta)


def _prm800k_rating_to_label(rating: int, neutral_as: bool) -> bool:
    if rating not in (-1, 0, 1) or isinstance(rating, bool):
        raise ValueError(f"rating must be -1, 0 or 1, got {rating!r}")
    return rating == 1 or (rating == 0 and neutral_as)


def prm800k_to_step_labels(row: Any, neutral_as: bool = True) -> StepLabels | None:
    """A PRM800K row -> StepLabels along the labelled trajectory; None for rows marked `bad_problem` or with no step.

    Ratings: +1 -> True, -1 -> False, 0 (neutral) -> `neutral_as` (default True: "neutral counts as not wrong",
    the convention of the PRM800K paper). The trajectory follows `chosen_completion` (or `human_completion`, which
    labellers write only as a correct step); where neither is set, the first completion rated -1 (if any) ends the
    trajectory as its last, wrong step. Blank lines inside a step become single newlines.
    """
    if not isinstance(row, dict) or "question" not in row or "label" not in row:
        fields = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ValueError(f"fields {fields}: a PRM800K row needs 'question' and 'label'")
    question, label = row["question"], row["label"]
    if not isinstance(question, dict) or not isinstance(question.get("problem"), str):
        raise ValueError("'question.problem' must be a string")
    if not isinstance(label, dict) or not isinstance(label.get("steps"), list):
        raise ValueError("'label.steps' must be a list")
    if label.get("finish_reason") == "bad_problem":
        return None
    completions: list[str] = []
    labels: list[bool] = []
    for index, step in enumerate(label["steps"]):
        candidates = step.get("completions") or []
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if chosen is not None:
            if not 0 <= chosen < len(candidates):
                raise ValueError(f"step {index}: chosen_completion={chosen} but {len(candidates)} completions")
            rating = candidates[chosen].get("rating")
            if rating is None:
                logger.warning("PRM800K step %d has no rating; the trajectory ends before it", index)
                break
            completions.append(_flatten_step(candidates[chosen]["text"]))
            labels.append(_prm800k_rating_to_label(rating, neutral_as))
        elif human is not None:
            text = human["text"] if isinstance(human, dict) else human
            completions.append(_flatten_step(text))
            labels.append(True)
        else:
            wrong = [candidate for candidate in candidates if candidate.get("rating") == -1]
            if wrong:
                completions.append(_flatten_step(wrong[0]["text"]))
                labels.append(False)
            break
    if not completions:
        return None
    meta = {"source": "prm800k", "finish_reason": label.get("finish_reason")}
    return StepLabels(prompt=question["problem"].strip(), completions=completions, labels=labels, meta=meta)


def read_step_labels(
    path: str | Path, format: LabelFormat = "stepwise", *, neutral_as: bool = True, skip_invalid_rows: bool = False
) -> list[StepLabels]:
    """Read one file (or saved dataset directory) of the given format; a bad row raises naming file and row.

    With `skip_invalid_rows` (for large public sets with a few broken rows) bad rows are dropped instead, and a
    warning gives their count and the first error.
    """
    if format not in LABEL_FORMATS:
        raise ValueError(f"format must be one of {LABEL_FORMATS}, got {format!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; write it first (e.g. `ttc-infer label`) or fix the path")
    records: list[StepLabels] = []
    skipped = 0
    invalid: list[str] = []
    for where, row in _iter_rows(path):
        try:
            if format == "stepwise":
                record: StepLabels | None = parse_stepwise_row(row)
            elif format == "math_shepherd":
                record = math_shepherd_to_step_labels(row)
            else:
                record = prm800k_to_step_labels(row, neutral_as=neutral_as)
        except ValueError as error:
            if not skip_invalid_rows:
                raise LabelFileError(f"{path} {where}: {error}") from error
            invalid.append(f"{path} {where}: {error}")
            continue
        if record is None:
            skipped += 1
        else:
            records.append(record)
    if skipped:
        logger.info("%s: skipped %d rows with no usable labelled step (bad_problem or empty)", path, skipped)
    if invalid:
        logger.warning("%s: dropped %d invalid rows (skip_invalid_rows); first: %s", path, len(invalid), invalid[0])
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
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
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
        pq.write_table(table, path)
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
