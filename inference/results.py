"""Result rows on disk: JSON lines with a stable schema, crash-safe appends, resume keys and shard merging."""

from __future__ import annotations

import glob
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from data_prep.io import append_jsonl, read_jsonl, write_jsonl
from inference.types import Compute, ResultRow, ScoredCompletion

logger = logging.getLogger(__name__)

ResultKey = tuple[str, str, int, int | None, int]
"""(problem_id, strategy, n, beam_width, seed): what one result row answers; unique within a results file."""

ROW_FIELDS: tuple[str, ...] = (
    "problem_id", "source", "level", "strategy", "n", "beam_width", "seed", "gold", "completions",
    "pred", "correct", "compute", "policy", "prm", "settings_json",
)
"""Top-level keys of a row on disk, in the order they are written."""

COMPLETION_FIELDS: tuple[str, ...] = (
    "text", "steps", "step_scores", "agg_score", "answer", "num_tokens", "finished",
)
COMPUTE_FIELDS: tuple[str, ...] = ("policy_tokens", "prm_tokens", "model_calls", "seconds")
FORWARD_FIELDS: tuple[str, ...] = ("policy_forward_tokens", "prm_forward_tokens")
"""Compute fields that files written before ttc counted forward tokens lack (read as None: not counted, FLOPs then
read the scored tokens, their basis in those versions)."""


def _count_or_none(value: int | None) -> int | None:
    return None if value is None else int(value)


def _finite(value: float | None, what: str) -> float | None:
    """A float for JSON (None stays None); NaN and infinities are refused because JSON readers reject them."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}; result files hold finite scores only (use None for 'no score')")
    return value


def row_to_dict(row: ResultRow) -> dict:
    """A JSON-able dict for one row. `settings` becomes the string `settings_json` so every row has one schema."""
    where = f"row (problem {row.problem_id!r}, strategy {row.strategy!r}, n={row.n})"
    completions = [
        {
            "text": c.text,
            "steps": list(c.steps),
            "step_scores": [_finite(s, f"{where}: a step score") for s in c.step_scores],
            "agg_score": _finite(c.agg_score, f"{where}: agg_score"),
            "answer": c.answer,
            "num_tokens": int(c.num_tokens),
            "finished": bool(c.finished),
        }
        for c in row.completions
    ]
    return {
        "problem_id": row.problem_id,
        "source": row.source,
        "level": row.level,
        "strategy": row.strategy,
        "n": int(row.n),
        "beam_width": row.beam_width,
        "seed": int(row.seed),
        "gold": row.gold,
        "completions": completions,
        "pred": row.pred,
        "correct": bool(row.correct),
        "compute": {
            "policy_tokens": int(row.compute.policy_tokens),
            "prm_tokens": int(row.compute.prm_tokens),
            "policy_forward_tokens": _count_or_none(row.compute.policy_forward_tokens),
            "prm_forward_tokens": _count_or_none(row.compute.prm_forward_tokens),
            "model_calls": int(row.compute.model_calls),
            "seconds": float(row.compute.seconds),
        },
        "policy": row.policy,
        "prm": row.prm,
        "settings_json": json.dumps(row.settings, sort_keys=True, allow_nan=False),
    }


def _check_keys(data: object, expected: Sequence[str], what: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in expected if key not in data]
    unknown = sorted(set(data) - set(expected))
    if missing or unknown:
        raise ValueError(
            f"{what}: not a ttc result row (missing keys {missing}, unknown keys {unknown}); "
            "result files are written by `ttc-infer run`"
        )
    return data


def row_from_dict(data: dict, *, where: str = "row") -> ResultRow:
    """Inverse of `row_to_dict`; a missing or unknown key raises naming `where` (e.g. `results.jsonl:12`)."""
    _check_keys(data, ROW_FIELDS, where)
    raw_compute = data["compute"]
    present = tuple(key for key in FORWARD_FIELDS if isinstance(raw_compute, dict) and key in raw_compute)
    compute = _check_keys(raw_compute, COMPUTE_FIELDS + present, f"{where}: compute")
    completions = []
    for index, raw in enumerate(data["completions"]):
        c = _check_keys(raw, COMPLETION_FIELDS, f"{where}: completion {index}")
        completions.append(
            ScoredCompletion(
                text=c["text"],
                steps=tuple(c["steps"]),
                step_scores=tuple(float(s) for s in c["step_scores"]),
                agg_score=None if c["agg_score"] is None else float(c["agg_score"]),
                answer=c["answer"],
                num_tokens=int(c["num_tokens"]),
                finished=bool(c["finished"]),
            )
        )
    return ResultRow(
        problem_id=data["problem_id"],
        source=data["source"],
        level=data["level"],
        strategy=data["strategy"],
        n=int(data["n"]),
        beam_width=data["beam_width"],
        seed=int(data["seed"]),
        gold=data["gold"],
        completions=tuple(completions),
        pred=data["pred"],
        correct=bool(data["correct"]),
        compute=Compute(**compute),
        policy=data["policy"],
        prm=data["prm"],
        settings=json.loads(data["settings_json"]),
    )


def row_key(row: ResultRow | dict) -> ResultKey:
    """The identity of a row: (problem_id, strategy, n, beam_width, seed)."""
    if isinstance(row, ResultRow):
        return (row.problem_id, row.strategy, row.n, row.beam_width, row.seed)
    return (row["problem_id"], row["strategy"], row["n"], row["beam_width"], row["seed"])


def append_results(path: str | Path, rows: Iterable[ResultRow]) -> None:
    """Append rows as whole JSON lines in one write, then fsync (`data_prep.io.append_jsonl`).

    A kill can only tear the last line of the file; that torn line is cut before the next append and skipped
    by `read_results`, so the rows it held are recomputed on resume and never duplicated.
    """
    append_jsonl(path, [row_to_dict(row) for row in rows])


def iter_result_dicts(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, row dict) for each complete line, one at a time (a resumed run of many problems reads its file
    without holding it); a torn last line is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    return read_jsonl(path, skip_torn_tail=True, max_row_bytes=None)  # a row holds up to N solutions


def read_result_dicts(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, row dict) for each complete line; a torn last line is skipped with a warning."""
    return list(iter_result_dicts(path))


def read_results(path: str | Path) -> list[ResultRow]:
    """All complete rows of a results file, in file order."""
    return [row_from_dict(data, where=f"{path}:{number}") for number, data in read_result_dicts(path)]


def done_keys(path: str | Path) -> set[ResultKey]:
    """Keys of the rows already in `path` (empty when the file does not exist yet)."""
    if not Path(path).is_file():
        return set()
    return {row_key(data) for _, data in read_result_dicts(path)}


def expand_inputs(specs: Sequence[str | Path]) -> list[Path]:
    """Result files named by paths, glob patterns or directories (a directory contributes its `results*.jsonl`)."""
    files: list[Path] = []
    for spec in specs:
        spec_path = Path(spec)
        if spec_path.is_dir():
            found = sorted(spec_path.glob("results*.jsonl"))
            if not found:
                raise FileNotFoundError(f"{spec}: directory holds no results*.jsonl files")
        elif spec_path.is_file():
            found = [spec_path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(spec)))
            if not found:
                raise FileNotFoundError(f"{spec}: no such file, directory or glob match")
        files.extend(p for p in found if p not in files)
    return files


@dataclass(frozen=True)
class MergeSummary:
    """What `merge_results` did."""

    inputs: tuple[Path, ...]
    rows_written: int
    duplicates_dropped: int


def _differing_fields(a: dict, b: dict) -> list[str]:
    fields = [key for key in ROW_FIELDS if key not in ("compute",) and a.get(key) != b.get(key)]
    fields += [f"compute.{key}" for key in COMPUTE_FIELDS if a["compute"].get(key) != b["compute"].get(key)]
    return fields


def merge_results(inputs: Sequence[str | Path], out: str | Path) -> MergeSummary:
    """Merge result files (e.g. shards) into one: exact duplicate rows are dropped, conflicting ones raise.

    Two rows conflict when they share a key (problem_id, strategy, n, beam_width, seed) but differ anywhere;
    the error names both places and the differing fields. `out` is written atomically (temp file + rename).
    """
    files = expand_inputs(inputs)
    out = Path(out)
    if any(f.resolve() == out.resolve() for f in files):
        raise ValueError(f"--out {out} is also an input; write the merge to a new file")
    merged: dict[ResultKey, tuple[str, dict]] = {}
    duplicates = 0
    for file in files:
        for number, data in read_result_dicts(file):
            where = f"{file}:{number}"
            row_from_dict(data, where=where)  # validates the schema
            key = row_key(data)
            if key in merged:
                first_where, first = merged[key]
                if first != data:
                    raise ValueError(
                        f"conflicting rows for problem {key[0]!r}, strategy {key[1]!r}, n={key[2]}, "
                        f"beam_width={key[3]}, seed={key[4]}: {first_where} and {where} differ in "
                        f"{', '.join(_differing_fields(first, data))}; keep only one of the runs that produced them"
                    )
                duplicates += 1
                continue
            merged[key] = (where, data)
    write_jsonl(out, (data for _, data in merged.values()))
    return MergeSummary(inputs=tuple(files), rows_written=len(merged), duplicates_dropped=duplicates)
