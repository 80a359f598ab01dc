"""The policy's full-solution samples on disk: each sampling run writes them, a later run of the same policy reads them.

A run with `share_samples` draws every problem's samples once (the sample pool, `inference/runner.py`) and
appends them, chunk by chunk, to `samples.jsonl` beside its results (`samples.shard-i-of-k.jsonl` for a shard).
A run given `samples_from` (an earlier run's output directory or samples file) takes each request's samples from
there when the policy, the problem, the prefix, the sampling parameters (temperature, top_p, max_tokens, the
call's seed), the stop strings and the request's occurrence in its call all match, and draws the rest itself.
So several PRMs score the very same solutions without the policy sampling them again: the replayed completions
carry their generated and forward token counts, and every row's token counters and FLOPs are those of a run
that drew them (only `compute.seconds` is the replay's own).

One line per request:
`{"policy", "problem", "prefix", "temperature", "top_p", "max_tokens", "seed", "stop", "occurrence",
"completions": [{"text", "num_tokens", "finish_reason", "forward_tokens"}, ...]}`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

from data_prep.io import append_jsonl, read_jsonl
from inference.types import Completion, FinishReason, GenerationRequest, SamplingParams

logger = logging.getLogger(__name__)

SampleKey = tuple[GenerationRequest, SamplingParams, tuple[str, ...] | None, int]
"""(request, sampling parameters, stop strings, occurrence of the request in its call): what makes two asks for
samples the same ask."""

LINE_KEYS = ("policy", "problem", "prefix", "temperature", "top_p", "max_tokens", "seed", "stop", "occurrence",
             "completions")
COMPLETION_KEYS = ("text", "num_tokens", "finish_reason", "forward_tokens")
FINISH_REASONS = get_args(FinishReason)


def samples_beside(results: str | Path) -> Path:
    """The samples file of a results file: `results.jsonl` -> `samples.jsonl`, `results.shard-0-of-2.jsonl` ->
    `samples.shard-0-of-2.jsonl` (any other name gets `samples.` in front)."""
    path = Path(results)
    if path.name.startswith("results"):
        return path.with_name("samples" + path.name[len("results"):])
    return path.with_name(f"samples.{path.name}")


def sample_files(source: str | Path) -> list[Path]:
    """The samples files a `samples_from` names: the file itself, or a directory's `samples*.jsonl` (every shard)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("samples*.jsonl"))
        if not files:
            raise FileNotFoundError(
                f"samples_from {source}: no samples*.jsonl in this directory; a run writes it when its sampling "
                "strategies (majority, best_of_n, weighted_best_of_n) share samples (share_samples: true)")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"samples_from {source}: no such file or directory; give an earlier run's output_dir")
    return [path]


def to_line(policy: str, key: SampleKey, completions: Sequence[Completion]) -> dict[str, Any]:
    """The JSON line of one request's samples."""
    request, params, stop, occurrence = key
    return {
        "policy": policy, "problem": request.problem, "prefix": request.prefix,
        "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
        "seed": params.seed, "stop": list(stop) if stop is not None else None, "occurrence": occurrence,
        "completions": [{"text": c.text, "num_tokens": c.num_tokens, "finish_reason": c.finish_reason,
                         "forward_tokens": c.forward_tokens} for c in completions],
    }


def _is_count(value: Any, *, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def from_line(data: dict, where: str) -> tuple[str, SampleKey, list[Completion]]:
    """(policy, key, completions) of one line; ValueError naming `where` and the field for a malformed line."""
    missing = [key for key in LINE_KEYS if key not in data]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}; a samples line holds {', '.join(LINE_KEYS)}")
    for name in ("policy", "problem", "prefix"):
        if not isinstance(data[name], str):
            raise ValueError(f"{where}: {name} must be a string, got {type(data[name]).__name__}")
    stop = data["stop"]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise ValueError(f"{where}: stop must be null or a list of strings, got {stop!r}")
    if not _is_count(data["occurrence"]):
        raise ValueError(f"{where}: occurrence must be an integer >= 0, got {data['occurrence']!r}")
    try:
        params = SamplingParams(float(data["temperature"]), float(data["top_p"]), int(data["max_tokens"]),
                                None if data["seed"] is None else int(data["seed"]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: sampling parameters: {error}") from None
    if not isinstance(data["completions"], list):
        raise ValueError(f"{where}: completions must be a list, got {type(data['completions']).__name__}")
    completions = []
    for number, item in enumerate(data["completions"]):
        at = f"{where}: completions[{number}]"
        if not isinstance(item, dict) or any(key not in item for key in COMPLETION_KEYS):
            raise ValueError(f"{at}: expected an object with {', '.join(COMPLETION_KEYS)}")
        if not isinstance(item["text"], str):
            raise ValueError(f"{at}: text must be a string")
        if not _is_count(item["num_tokens"]) or not _is_count(item["forward_tokens"], optional=True):
            raise ValueError(f"{at}: num_tokens (and forward_tokens, or null) must be integers >= 0")
        if item["finish_reason"] not in FINISH_REASONS:
            raise ValueError(f"{at}: finish_reason must be one of {', '.join(FINISH_REASONS)}, "
                             f"got {item['finish_reason']!r}")
        completions.append(Completion(item["text"], item["num_tokens"], item["finish_reason"], item["forward_tokens"]))
    key = (GenerationRequest(data["problem"], data["prefix"]), params, tuple(stop) if stop is not None else None,
           data["occurrence"])
    return data["policy"], key, completions


def load_samples(source: str | Path, policy: str, problems: Iterable[str]) -> dict[SampleKey, list[Completion]]:
    """The stored samples of `policy` for `problems` (their texts), read line by line from the source's files.

    Lines of other problems are skipped unkept, so memory follows this run's problems, not the file's. A line of
    another policy is refused (its samples are not this policy's), naming the file and line; of two lines with
    the same key the one with more completions is kept. A torn last line (a killed writer) is skipped.
    """
    wanted = set(problems)
    samples: dict[SampleKey, list[Completion]] = {}
    for path in sample_files(source):
        for line_no, data in read_jsonl(path, skip_torn_tail=True, max_row_bytes=None):
            where = f"{path}: line {line_no}"
            stored_policy, key, completions = from_line(data, where)
            if stored_policy != policy:
                raise ValueError(
                    f"{where}: samples of policy {stored_policy!r}, but this run's policy is {policy!r}; "
                    "samples_from must name a run of the same policy")
            if key[0].problem in wanted and len(completions) > len(samples.get(key, ())):
                samples[key] = completions
    return samples


def append_samples(path: str | Path, policy: str, drawn: Sequence[tuple[SampleKey, Sequence[Completion]]]) -> int:
    """Append the requests' samples as whole lines in one write (a kill tears at most the last); return the count."""
    return append_jsonl(path, [to_line(policy, key, completions) for key, completions in drawn])
