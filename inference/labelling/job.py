"""The resumable `ttc-infer label` job: chunks appended to the output with a progress log, summary and resume check."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from time import perf_counter

from tqdm.auto import tqdm

from data_prep.io import append_jsonl, atomic_write_text, read_jsonl, repair_torn_tail
from data_prep.records import Problem
from inference.config import ConfigError, dump_config
from inference.labelling.chunk import ChunkResult, label_chunk, row_from_json, row_to_json
from inference.labelling.config import RESUME_SAFE_KEYS, LabelConfig, flatten
from inference.labelling.sampling import load_label_problems
from inference.labelling.tally import LabelSummary, Tally
from inference.types import Generator

logger = logging.getLogger(__name__)


def _read_tally(config: LabelConfig) -> Tally:
    """The totals of the rows and progress records earlier runs left (a torn last line is repaired first)."""
    paths = config.output_paths()
    tally = Tally()
    for key in ("rows", "progress"):
        repair_torn_tail(paths[key])
    if paths["rows"].exists():
        for line_no, raw in read_jsonl(paths["rows"]):
            try:
                row = row_from_json(config, raw)
            except ValueError as error:
                raise ValueError(f"{paths['rows']}: line {line_no}: {error}; fix or delete the file") from None
            if "problem_id" not in row.meta:
                raise ValueError(f"{paths['rows']}: line {line_no} has no meta.problem_id, so it was not written by "
                                 "`ttc-infer label`; write to a new output file")
            tally.add_row(row)
    if paths["progress"].exists():
        for _, record in read_jsonl(paths["progress"]):
            tally.add_progress(record)
    return tally


def _check_resume(config: LabelConfig) -> None:
    """A resumed job must label with the settings of the first run (engine settings and `limit` may change)."""
    paths = config.output_paths()
    path = paths["config"]
    if not path.exists() or not (paths["rows"].exists() or paths["progress"].exists()):
        return
    import yaml

    before = flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    now = flatten(config)
    # A key the earlier run's config lacks did not exist in the version that wrote it (e.g. policy.prompt_date):
    # not a change of settings, so it does not block resuming that job.
    changed = sorted(key for key in before.keys() | now.keys()
                     if key not in RESUME_SAFE_KEYS and key in before and before.get(key) != now.get(key))
    if changed:
        details = ", ".join(f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in changed[:4])
        raise ConfigError(f"{config.output} was labelled with other settings ({details}); "
                          "use a new output file, or delete the old one and its sidecar files")


def _write_summary(config: LabelConfig, summary: LabelSummary) -> None:
    atomic_write_text(config.output_paths()["summary"], json.dumps(summary.to_dict(), indent=2) + "\n")


def label_problems(
    problems: Sequence[Problem],
    generator: Generator,
    config: LabelConfig,
    *,
    on_chunk: Callable[[int, ChunkResult], None] | None = None,
) -> LabelSummary:
    """Label `problems` chunk by chunk, appending each chunk's rows to `config.output`; rerun to resume.

    A problem is done when its rows are in the output or its chunk is in the progress log (a problem whose
    solutions were all dropped has no rows). Chunks are numbered over the full problem list, so a chunk's seeds do
    not depend on what an earlier run finished. `on_chunk(chunk_index, result)` is called after each write.
    """
    paths = config.output_paths()
    _check_resume(config)
    tally = _read_tally(config)
    atomic_write_text(paths["config"], dump_config(config))
    ids = {problem.id for problem in problems}
    chunks = [list(problems[start : start + config.chunk_size]) for start in range(0, len(problems), config.chunk_size)]
    written = 0
    with tqdm(total=len(problems), initial=len(ids & tally.done), unit="problem", desc="label", dynamic_ncols=True) as bar:
        for chunk_index, chunk in enumerate(chunks):
            todo = [problem for problem in chunk if problem.id not in tally.done]
            if not todo:
                continue
            start = perf_counter()
            result = label_chunk(todo, generator, config, chunk_index)
            append_jsonl(paths["rows"], [row_to_json(config, row) for row in result.rows])
            counts = result.counts
            progress = {
                "chunk": chunk_index,
                "problem_ids": [problem.id for problem in todo],
                "rows": len(result.rows),
                "dropped_truncated": counts.dropped_truncated,
                "dropped_empty": counts.dropped_empty,
                "dropped_duplicates": counts.dropped_duplicates,
                "policy_tokens": counts.policy_tokens,
                "generate_calls": counts.generate_calls,
                "seconds": perf_counter() - start,
            }
            append_jsonl(paths["progress"], [progress])
            for row in result.rows:
                tally.add_row(row)
            tally.add_progress(progress)
            written += len(result.rows)
            _write_summary(config, tally.summary(config, ids, written))
            bar.update(len(todo))
            if on_chunk is not None:
                on_chunk(chunk_index, result)
    summary = tally.summary(config, ids, written)
    _write_summary(config, summary)
    return summary


def label(config: LabelConfig, generator: Generator | None = None) -> LabelSummary:
    """The whole `ttc-infer label` job: load problems, build the policy (unless given), label, summarise."""
    from inference.generation import build_policy_generator

    problems = load_label_problems(config.benchmark)
    logger.info("labelling %d problems with labeller %s into %s", len(problems), config.labeller, config.output)
    return label_problems(problems, generator or build_policy_generator(config.policy, config.seed), config)


__all__ = ["label", "label_problems"]
