"""search-and-learn's result files (huggingface/search-and-learn) as ttc result rows, so `ttc-infer eval` puts them
beside ttc's runs in one report.

search-and-learn writes one row per problem: the benchmark's own columns (`problem`, `answer`, and for MATH-500
`unique_id`, `level`, ...), then `completions` (the N solution texts), `scores` (per completion, its PRM step
scores), `pred` (the completion its search chose), `completion_tokens` (per completion) and, after its scoring
pass, `agg_scores` and `pred_weighted@N` / `pred_maj@N` / `pred_naive@N` (boxed answers) for N = 1, 2, 4, ...
It saves them as `data/<org>/<policy>/{approach}_completions.jsonl` or pushes them to the Hub as Parquet (datasets
named `<policy>-<approach>[-prm]-completions`, e.g. HuggingFaceH4/Llama-3.2-1B-Instruct-best-of-N-completions); the
columns do not say which search made them, so the approach is read from
the file's name, else from a directory above it.

How a row becomes ttc rows:
- best_of_n: the N completions are independent samples, so they become the sampling rows `majority`,
  `best_of_n` and `weighted_best_of_n` (the same samples; ttc subsamples them to smaller N like its own runs),
  each with search-and-learn's own prediction at N (`pred_maj@N`, `pred_naive@N`, `pred_weighted@N`) as `pred`
  where the file has it.
- beam_search / dvts: one run at N = the number of completions, its answer `pred_weighted@N` (the weighted
  selection search-and-learn scores it by) where the file has it, else the boxed answer of `pred`; a dvts file
  also gives a run at each smaller N it has `pred_weighted@N` for, from its first N completions (DVTS's subtrees
  are independent, so search-and-learn runs DVTS once at the largest N).
- Each completion's score is `agg_scores` when present, else the last step score (search-and-learn's own
  aggregation when it scores); its steps are the text split on blank lines, as both projects split them.
- The policy is named as ttc names one, from the directory search-and-learn wrote into (named after the policy),
  so a ttc run of the same policy shares it and one report shows both, the search-and-learn rows as the verifier
  `search-and-learn` (both names can be given). PRM tokens are not recorded by search-and-learn and count 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from data_prep.grading import answers_match
from data_prep.steps import extract_boxed_answer, split_steps
from inference.types import Compute, ResultRow, ScoredCompletion

SOURCE = "search_and_learn"
RESULT_COLUMNS = ("problem", "answer", "completions", "scores")
"""The columns every search-and-learn result row has; they tell its files from ttc's."""
APPROACHES = ("best_of_n", "beam_search", "dvts")
SAMPLING_PREDICTIONS = {"majority": "pred_maj", "best_of_n": "pred_naive", "weighted_best_of_n": "pred_weighted"}
"""ttc's sampling strategy -> search-and-learn's prediction column prefix (`<prefix>@N`)."""


def is_search_and_learn_row(row: Any) -> bool:
    """Whether a row has search-and-learn's result columns (and so is read by this module, not as a ttc row)."""
    return isinstance(row, Mapping) and all(column in row for column in RESULT_COLUMNS) and "problem_id" not in row


_APPROACH = re.compile(r"best[-_]of[-_]n|beam[-_]search|dvts", re.IGNORECASE)
"""An approach as file and dataset names spell it (`best_of_n_completions.jsonl`, `...-best-of-N-completions`,
`...-beam_search-completions`, `...-DVTS-completions`)."""
_DATASET = re.compile(rf"(?P<policy>.+)-(?:{_APPROACH.pattern})(?:-prm)?-completions", re.IGNORECASE)
"""A Hub dataset of search-and-learn results: `<policy>-<approach>[-prm]-completions`."""


def _approach_in(name: str) -> str | None:
    found = {match.lower().replace("-", "_") for match in _APPROACH.findall(name)}
    return found.pop() if len(found) == 1 else None


def approach_of(path: Path) -> str:
    """The search that wrote the file: the approach its name gives (`best_of_n_completions.jsonl`), else the one
    a directory above it names (the Hub's `<policy>-best-of-N-completions`); none is one clear error."""
    for name in [path.name] + [directory.name for directory in path.resolve().parents]:
        approach = _approach_in(name)
        if approach is not None:
            return approach
    raise ValueError(
        f"{path}: a search-and-learn result file, but neither its name nor its directory says which search wrote "
        f"it; name it <approach>_completions.jsonl (or .parquet) with approach one of {', '.join(APPROACHES)}, as "
        "search-and-learn does"
    )


def policy_name(path: Path) -> str:
    """The policy of a file's rows, named as ttc names a policy (its checkpoint's last path part): the Hub
    dataset's `<policy>-<approach>-completions` without its suffix, else the directory search-and-learn wrote
    into (`data/<org>/<policy>/`)."""
    for directory in path.resolve().parents:
        match = _DATASET.fullmatch(directory.name)
        if match:
            return match.group("policy")
    return path.resolve().parent.name


def _list(row: Mapping, column: str, where: str, length: int | None = None) -> list:
    value = row.get(column)
    if hasattr(value, "tolist"):  # a numpy array from a Parquet reader
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: column {column!r} must be a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ValueError(f"{where}: column {column!r} has {len(value)} entries for {length} completions")
    return list(value)


def _score(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: a score must be a finite number, got {value!r}")
    return float(value)


def _completions(row: Mapping, where: str) -> list[ScoredCompletion]:
    texts = _list(row, "completions", where)
    if not texts:
        raise ValueError(f"{where}: column 'completions' is empty; a result row holds at least one solution")
    step_scores = _list(row, "scores", where, len(texts))
    agg_scores = _list(row, "agg_scores", where, len(texts)) if row.get("agg_scores") is not None else None
    tokens = (_list(row, "completion_tokens", where, len(texts)) if row.get("completion_tokens") is not None
              else [None] * len(texts))
    completions = []
    for index, (text, scores, num_tokens) in enumerate(zip(texts, step_scores, tokens)):
        here = f"{where}: completion {index}"
        if not isinstance(text, str):
            raise ValueError(f"{here}: the completion must be a string, got {type(text).__name__}")
        if hasattr(scores, "tolist"):
            scores = scores.tolist()
        if not isinstance(scores, (list, tuple)):
            raise ValueError(f"{here}: its 'scores' entry must be a list of step scores, got {scores!r}")
        scores = [_score(s, here) for s in scores]
        if agg_scores is not None:
            agg = _score(agg_scores[index], here)
        else:
            agg = scores[-1] if scores else None
        if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int)):
            raise ValueError(f"{here}: 'completion_tokens' must be whole numbers, got {num_tokens!r}")
        answer = extract_boxed_answer(text)
        completions.append(ScoredCompletion(
            text=text, steps=tuple(split_steps(text)), step_scores=tuple(scores), agg_score=agg, answer=answer,
            num_tokens=int(num_tokens or 0), finished=answer is not None,
        ))
    return completions


def _boxed(value: Any) -> str | None:
    return extract_boxed_answer(value) if isinstance(value, str) else None


def _level(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"(Level )?[1-5]", value.strip()):
        value = int(value.strip()[-1])
    return value if isinstance(value, int) and 1 <= value <= 5 else None


def rows_from_record(row: Mapping, where: str, *, approach: str, policy: str, prm: str) -> list[ResultRow]:
    """The ttc rows of one search-and-learn row (see the module docstring); a bad column raises naming `where`."""
    problem, gold = row.get("problem"), row.get("answer")
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError(f"{where}: column 'problem' must be a non-empty string")
    if gold is None or not str(gold).strip():
        raise ValueError(f"{where}: column 'answer' (the gold answer) is empty")
    gold = str(gold)
    problem_id = row.get("unique_id") or row.get("id") or problem
    completions = tuple(_completions(row, where))
    n = len(completions)
    generated = sum(c.num_tokens for c in completions)
    common = {"problem_id": str(problem_id), "source": SOURCE, "level": _level(row.get("level")), "n": n, "seed": 0,
              "gold": gold, "completions": completions, "policy": policy, "prm": prm}
    if approach == "best_of_n":
        rows = []
        for strategy, column in SAMPLING_PREDICTIONS.items():
            pred = _boxed(row.get(f"{column}@{n}"))
            if pred is None and strategy == "best_of_n":
                pred = _boxed(row.get("pred"))
            settings = {"source_format": SOURCE, "approach": approach, "prediction_column": f"{column}@{n}"}
            rows.append(ResultRow(strategy=strategy, beam_width=None, pred=pred,
                                  correct=pred is not None and answers_match(gold, pred),
                                  compute=Compute(policy_tokens=generated), settings=settings, **common))
        return rows
    # A tree search's answer at N: its weighted selection there when scored, else the completion it chose. DVTS's
    # subtrees are independent, so search-and-learn reads smaller N from the first N completions of one run.
    budgets = {n} | ({int(key.split("@")[1]) for key in row if re.fullmatch(r"pred_weighted@\d+", key)
                      and int(key.split("@")[1]) < n} if approach == "dvts" else set())
    rows = []
    for budget in sorted(budgets):
        column = f"pred_weighted@{budget}"
        pred = _boxed(row.get(column)) if row.get(column) is not None else _boxed(row.get("pred"))
        kept = completions[:budget]
        rows.append(ResultRow(
            strategy=approach, beam_width=None, pred=pred, correct=pred is not None and answers_match(gold, pred),
            compute=Compute(policy_tokens=sum(c.num_tokens for c in kept)),
            settings={"source_format": SOURCE, "approach": approach,
                      "prediction_column": column if row.get(column) is not None else "pred"},
            **{**common, "n": budget, "completions": kept}))
    return rows


DEFAULT_PRM_NAME = "search-and-learn"
"""The PRM name of search-and-learn rows (its files do not name their PRM): distinct from every ttc PRM's."""


def read_search_and_learn(path: Path, records: Iterable[tuple[str, Any]], *, policy: str | None = None,
                          prm: str | None = None) -> list[ResultRow]:
    """ttc rows of every (place, row) of a search-and-learn file; the file's name gives the approach, `policy`
    (default `policy_name`) and `prm` (default `DEFAULT_PRM_NAME`) name the models."""
    approach = approach_of(path)
    policy = policy or policy_name(path)
    prm = prm or DEFAULT_PRM_NAME
    rows: list[ResultRow] = []
    for where, record in records:
        if not is_search_and_learn_row(record):
            found = sorted(record) if isinstance(record, Mapping) else type(record).__name__
            raise ValueError(f"{path} {where}: not a search-and-learn result row (columns {found}); every row needs "
                             f"{', '.join(RESULT_COLUMNS)}")
        rows.extend(rows_from_record(record, f"{path} {where}", approach=approach, policy=policy, prm=prm))
    return rows

