"""Benchmark loaders (MATH-500, GSM8K, generic JSONL/Parquet with a field mapping) that return `Problem` records."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.io import read_jsonl
from data_prep.records import Problem

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
"""Where the default benchmark files live: `<repo root>/../shared/data`."""

DEFAULT_MATH500_PATH = DEFAULT_DATA_DIR / "math500_test.jsonl"
"""MATH-500 test set (fields problem, solution, answer, subject, level, unique_id)."""

DEFAULT_GSM8K_PATH = DEFAULT_DATA_DIR / "gsm8k_test.jsonl"
"""GSM8K test set (fields question, answer with the final number after `####`)."""

SYNTHETIC_NUM_PER_LEVEL = 20
"""Problems per level of a synthetic benchmark (5 levels: 100 problems) unless `num_per_level` is given; the one
default of `ttc-data convert`, `ttc-infer run` and `ttc-infer label`."""

BENCHMARK_NAMES = ("math500", "gsm8k", "synthetic-test")
"""Names `load_benchmark` accepts besides a file path."""

_SUFFIXES = (".jsonl", ".parquet")
_LEVEL_TEXT = re.compile(r"(?:level\s*)?(-?\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class FieldMapping:
    """Which columns of a benchmark file hold the problem, the gold answer, the id and the level."""

    problem: str = "problem"
    """Column with the problem statement."""
    answer: str = "answer"
    """Column with the gold answer (or a solution text to cut it from; see `answer_after`, `answer_regex`)."""
    id: str | None = None
    """Column with a unique id; None numbers problems `<source>/<index>` by 0-based row index."""
    level: str | None = None
    """Column with the difficulty level (an integer 1-5 or text like `Level 3`); None leaves levels unknown."""
    answer_after: str | None = None
    """When set, the gold answer is the text after the last occurrence of this marker (GSM8K: `####`)."""
    answer_regex: str | None = None
    """When set, the gold answer is the first capture group of this regex's first match in the answer column."""

    def __post_init__(self) -> None:
        for name in ("problem", "answer"):
            if not getattr(self, name):
                raise ValueError(f"FieldMapping.{name} must name a column, got {getattr(self, name)!r}")
        if self.answer_after is not None and self.answer_regex is not None:
            raise ValueError("set at most one of FieldMapping.answer_after and FieldMapping.answer_regex")
        if self.answer_after is not None and not self.answer_after:
            raise ValueError("FieldMapping.answer_after must be a non-empty marker such as '####'")
        if self.answer_regex is not None:
            try:
                pattern = re.compile(self.answer_regex)
            except re.error as error:
                raise ValueError(f"FieldMapping.answer_regex {self.answer_regex!r} is not a valid regex: {error}") from None
            if pattern.groups < 1:
                raise ValueError(
                    f"FieldMapping.answer_regex {self.answer_regex!r} has no capture group; "
                    "wrap the answer part in parentheses"
                )

    def columns(self) -> dict[str, str]:
        """Role -> column name for every mapped column."""
        return {role: getattr(self, role) for role in ("problem", "answer", "id", "level") if getattr(self, role)}


MATH500_FIELDS = FieldMapping(problem="problem", answer="answer", id="unique_id", level="level")
GSM8K_FIELDS = FieldMapping(problem="question", answer="answer", answer_after="####")


# --------------------------------------------------------------------------- rows


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    for line_no, row in read_jsonl(path):
        yield f"line {line_no}", row


def _parquet_rows(path: Path, mapping: FieldMapping) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as error:  # pyarrow raises several types for a non-Parquet file
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    for role, column in mapping.columns().items():
        if column not in schema.names:
            raise ValueError(
                f"{path}: the field mapping's {role}={column!r} is not a column of this file "
                f"(columns: {', '.join(schema.names)}); map {role} to one of them"
            )
    table = pq.read_table(path, columns=sorted(set(mapping.columns().values())))
    for index, row in enumerate(table.to_pylist(), start=1):
        yield f"row {index}", row


def _rows(path: Path, mapping: FieldMapping) -> Iterator[tuple[str, dict]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path)
    if suffix == ".parquet":
        return _parquet_rows(path, mapping)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(_SUFFIXES)}")


# --------------------------------------------------------------------------- fields


def _text_field(row: dict, column: str, role: str, where: str) -> str:
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{where}: field {column!r} ({role}) must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"{where}: field {column!r} ({role}) is empty")
    return text


def _level_field(row: dict, column: str, where: str) -> int | None:
    value = row[column]
    if value is None:
        return None
    level: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        level = value
    elif isinstance(value, str) and (match := _LEVEL_TEXT.fullmatch(value.strip())):
        level = int(match.group(1))
    if level is None or not 1 <= level <= 5:
        raise ValueError(f"{where}: field {column!r} (level) must be an integer 1-5 or 'Level N', got {value!r}")
    return level


def _extract_answer(raw: str, mapping: FieldMapping, where: str) -> str:
    if mapping.answer_after is not None:
        if mapping.answer_after not in raw:
            raise ValueError(
                f"{where}: field {mapping.answer!r} (answer) has no {mapping.answer_after!r} marker "
                "before the final answer"
            )
        answer = raw.rsplit(mapping.answer_after, 1)[1].strip()
    elif mapping.answer_regex is not None:
        match = re.search(mapping.answer_regex, raw)
        if match is None or match.group(1) is None:
            raise ValueError(f"{where}: field {mapping.answer!r} (answer) does not match answer_regex {mapping.answer_regex!r}")
        answer = match.group(1).strip()
    else:
        answer = raw
    if not answer:
        raise ValueError(f"{where}: field {mapping.answer!r} (answer) gives an empty gold answer")
    return answer


def _problem_from_row(
    row: dict, index: int, mapping: FieldMapping, source: str, where: str, clean_answer: Callable[[str], str] | None
) -> Problem:
    for role, column in mapping.columns().items():
        if column not in row:
            raise ValueError(f"{where}: missing field {column!r} ({role}); fields present: {', '.join(row) or 'none'}")
    problem = _text_field(row, mapping.problem, "problem", where)
    answer = _extract_answer(_text_field(row, mapping.answer, "answer", where), mapping, where)
    if clean_answer is not None:
        answer = clean_answer(answer)
    problem_id = _text_field(row, mapping.id, "id", where) if mapping.id else f"{source}/{index}"
    level = _level_field(row, mapping.level, where) if mapping.level else None
    return Problem(id=problem_id, problem=problem, answer=answer, level=level, source=source)


def _load(
    path: str | Path, mapping: FieldMapping, source: str, clean_answer: Callable[[str], str] | None = None
) -> list[Problem]:
    path = Path(path)
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    for index, (position, row) in enumerate(_rows(path, mapping)):
        where = f"{path}: {position}"
        if index == 0:
            absent = {role: column for role, column in mapping.columns().items() if column not in row}
            if absent:
                role, column = next(iter(absent.items()))
                raise ValueError(
                    f"{where}: the field mapping's {role}={column!r} is not a field of this file "
                    f"(fields: {', '.join(row)}); map {role} to one of them"
                )
        problem = _problem_from_row(row, index, mapping, source, where, clean_answer)
        if problem.id in first_seen:
            raise ValueError(f"{where}: duplicate id {problem.id!r} (first on {first_seen[problem.id]}); ids must be unique")
        first_seen[problem.id] = position
        problems.append(problem)
    if not problems:
        raise ValueError(f"{path}: no problems in file")
    return problems


# --------------------------------------------------------------------------- public loaders


def load_problems(path: str | Path, *, fields: FieldMapping | None = None, source: str | None = None) -> list[Problem]:
    """Problems from a JSONL or Parquet file whose columns `fields` names; `source` defaults to the file stem.

    Raises ValueError naming the file, the line (JSONL) or row (Parquet) and the field for malformed input.
    """
    path = Path(path)
    return _load(path, fields or FieldMapping(), source or path.stem)


def load_math500(path: str | Path = DEFAULT_MATH500_PATH) -> list[Problem]:
    """MATH-500: id = `unique_id`, gold = `answer`, level 1-5, source `math500`."""
    return _load(path, MATH500_FIELDS, "math500")


def _gsm8k_number(answer: str) -> str:
    return answer.replace(",", "")


def load_gsm8k(path: str | Path = DEFAULT_GSM8K_PATH) -> list[Problem]:
    """GSM8K: id `gsm8k/<0-based line index>`, gold = text after `####` without commas, level None, source `gsm8k`."""
    return _load(path, GSM8K_FIELDS, "gsm8k", clean_answer=_gsm8k_number)


def _load_synthetic_test(num_per_level: int = SYNTHETIC_NUM_PER_LEVEL, **kwargs: Any) -> list[Problem]:
    from data_prep.synthetic import generate_problems

    return generate_problems("test", num_per_level, **kwargs)


def load_benchmark(name_or_path: str | Path, *, limit: int | None = None, **kwargs: Any) -> list[Problem]:
    """Problems of a named benchmark (`math500`, `gsm8k`, `synthetic-test`) or of a `.jsonl`/`.parquet` file.

    `kwargs` go to the loader: `path=` for math500/gsm8k, `num_per_level=`/`seed=`/`levels=` for
    synthetic-test, `fields=`/`source=` for a file. `limit` keeps the first `limit` problems.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    name = str(name_or_path)
    loaders: dict[str, Callable[..., list[Problem]]] = {
        "math500": load_math500,
        "gsm8k": load_gsm8k,
        "synthetic-test": _load_synthetic_test,
    }
    if name in loaders:
        problems = loaders[name](**kwargs)
    elif Path(name).suffix.lower() in _SUFFIXES or Path(name).exists():
        allowed = {"fields", "source"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for a benchmark file; use {sorted(allowed)}")
        problems = load_problems(name, **kwargs)
    else:
        raise ValueError(
            f"unknown benchmark {name!r}; use one of {', '.join(BENCHMARK_NAMES)} or a path to a "
            f"{' or '.join(_SUFFIXES)} file"
        )
    if limit is not None:
        if limit > len(problems):
            logger.warning("limit=%d exceeds the %d problems of %s; using all of them", limit, len(problems), name)
        problems = problems[:limit]
    return problems

