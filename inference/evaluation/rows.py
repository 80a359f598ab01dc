"""Reading result rows for evaluation (through `inference.results`) and splitting them by model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from inference.results import expand_inputs, read_results
from inference.types import ResultRow


def read_rows(specs: str | Path | Sequence[str | Path]) -> list[ResultRow]:
    """Rows of result files named by paths, globs or directories (`inference.results.expand_inputs`)."""
    if isinstance(specs, (str, Path)):
        specs = [specs]
    return [row for path in expand_inputs(specs) for row in read_results(path)]


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
