"""Reading result rows for evaluation (ttc's through `inference.results`, search-and-learn's through
`inference.evaluation.search_and_learn`, told apart by their columns) and splitting them by model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from data_prep.io import file_kind
from data_prep.labels import iter_rows
from inference.evaluation.search_and_learn import is_search_and_learn_row, read_search_and_learn
from inference.results import expand_inputs, read_result_dicts, row_from_dict
from inference.types import ResultRow

READABLE = ("ttc result rows (JSONL written by `ttc-infer run`) or search-and-learn result files (JSONL or Parquet "
            "with problem, answer, completions, scores)")


def read_result_file(path: str | Path, *, search_and_learn_policy: str | None = None,
                     search_and_learn_prm: str | None = None) -> list[ResultRow]:
    """The rows of one results file: ttc's JSONL, or a search-and-learn JSONL / JSON array / Parquet file (its rows
    named by the two names when given, see `inference.evaluation.search_and_learn`).

    Anything else is one error naming the file (and the line or row where it stops being readable).
    """
    path = Path(path)
    kind = file_kind(path)
    if kind == "jsonl":
        records = [(f"line {number}", data) for number, data in read_result_dicts(path)]
    elif kind in ("parquet", "json_array"):
        records = list(iter_rows(path))
    elif kind == "empty":
        return []
    else:
        with path.open("rb") as handle:
            head = handle.read(16)
        raise ValueError(f"{path}: not a results file (it starts with {head!r}); ttc-infer eval reads {READABLE}")
    if not records:
        return []
    if is_search_and_learn_row(records[0][1]):
        return read_search_and_learn(path, records, policy=search_and_learn_policy, prm=search_and_learn_prm)
    if kind != "jsonl":
        raise ValueError(f"{path}: a {kind.replace('_', ' ')} file without search-and-learn's columns "
                         f"(row 1 has {sorted(records[0][1]) if isinstance(records[0][1], dict) else records[0][1]!r})"
                         f"; ttc-infer eval reads {READABLE}")
    return [row_from_dict(data, where=f"{path}:{where.removeprefix('line ')}") for where, data in records]


def read_rows(specs: str | Path | Sequence[str | Path], *, search_and_learn_policy: str | None = None,
              search_and_learn_prm: str | None = None) -> list[ResultRow]:
    """Rows of result files named by paths, globs or directories (`inference.results.expand_inputs`)."""
    if isinstance(specs, (str, Path)):
        specs = [specs]
    return [row for path in expand_inputs(specs)
            for row in read_result_file(path, search_and_learn_policy=search_and_learn_policy,
                                        search_and_learn_prm=search_and_learn_prm)]


def by_model(rows: Sequence[ResultRow]) -> dict[tuple[str, str], list[ResultRow]]:
    """Rows grouped by (policy, PRM); rows without a PRM name (majority vote) join every PRM of their policy."""
    prms_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.prm:
            prms_of[row.policy].add(row.prm)
    groups: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row in rows:
        for prm in [row.prm] if row.prm else sorted(prms_of[row.policy]) or [""]:
            groups[(row.policy, prm)].append(row)
    return dict(groups)
