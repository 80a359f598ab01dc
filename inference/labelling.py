"""Step labels made with the policy (Math-Shepherd Monte-Carlo rollouts, or the synthetic oracle) -> stepwise rows.

For each problem the policy samples `num_solutions` solutions (one generate call per chunk of problems). The
`mc` labeller then rolls out `rollouts_per_step` completions from every step prefix of every kept solution, all
prefixes of a chunk in one generate call (identical prefixes of one problem share their rollouts), and grades
each rollout's final boxed answer against the gold answer:

- step i (not the last): soft label = fraction of rollouts from `steps[:i+1]` that reach the gold answer,
  hard label = at least one does;
- the last step of a solution that states a boxed answer: its prefix is the whole solution, so its label is
  whether that answer is correct (1.0 / 0.0). A last step without a boxed answer is rolled out like any other;
- solutions cut off at `max_tokens` are dropped (their last step is unfinished), as are empty ones and, with
  `dedupe_solutions`, repeats of an earlier solution of the same problem. The summary counts all of them.

The `oracle` labeller (synthetic world) labels the same kind of sampled solutions with the exact checker: True
before the first wrong step, False from it on. Rows are `{prompt, completions, labels, meta}` with prompt = the
raw problem text (what `data_prep.labels.tokenize_steps` and the token-classification PRM put before the steps).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from tqdm.auto import tqdm

from data_prep.benchmarks import SYNTHETIC_NUM_PER_LEVEL
from data_prep.grading import answers_match, normalize_answer
from data_prep.io import append_jsonl, read_jsonl
from data_prep.labels import oracle_labels, parse_stepwise_row
from data_prep.records import Problem, StepLabels
from data_prep.steps import STEP_SEPARATOR, extract_boxed_answer, join_steps, split_steps
from inference.config import CliValue, ConfigError, dump_config, parse_config
from inference.label_config import (
    RESUME_SAFE_KEYS,
    LabelBenchmarkConfig,
    LabelConfig,
    flatten,
)
from inference.strategies.common import call_seed
from inference.types import GenerationRequest, Generator, SamplingParams

logger = logging.getLogger(__name__)

_INTEGER = re.compile(r"-?\d+")


def grade(gold: str, pred: str | None) -> bool:
    """`answers_match`, answering at once for two plain integers (distinct integers are never equivalent)."""
    if pred is not None and _INTEGER.fullmatch(normalize_answer(gold)) and _INTEGER.fullmatch(normalize_answer(pred)):
        return int(normalize_answer(gold)) == int(normalize_answer(pred))
    return answers_match(gold, pred)


# --------------------------------------------------------------------------- problems


def load_label_problems(benchmark: LabelBenchmarkConfig) -> list[Problem]:
    """The problems to label; `synthetic-train` is drawn here with `data_prep.synthetic.generate_problems`."""
    from data_prep.benchmarks import load_benchmark
    from data_prep.synthetic import generate_problems

    if benchmark.is_synthetic:
        split = "train" if benchmark.name_or_path == "synthetic-train" else "test"
        problems = generate_problems(split, benchmark.num_per_level or SYNTHETIC_NUM_PER_LEVEL, benchmark.seed or 0)
        problems = problems[: benchmark.limit] if benchmark.limit is not None else problems
    else:
        config = benchmark.as_benchmark_config()
        problems = load_benchmark(config.name_or_path, limit=config.limit, **config.loader_options())
    ids = [problem.id for problem in problems]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise ValueError(f"benchmark {benchmark.name_or_path}: problem ids repeat ({repeated}); ids must be unique")
    return problems


# --------------------------------------------------------------------------- sampling and labelling one chunk


@dataclass(frozen=True)
class Solution:
    """A sampled solution kept for labelling."""

    index: int
    """Its sample index among the problem's `num_solutions` (with dedupe, kept indices may skip)."""
    text: str
    steps: tuple[str, ...]


@dataclass
class ChunkCounts:
    """What one chunk cost and dropped."""

    dropped_truncated: int = 0
    dropped_empty: int = 0
    dropped_duplicates: int = 0
    policy_tokens: int = 0
    generate_calls: int = 0


def sampling_params(config: LabelConfig, seed: int) -> SamplingParams:
    return SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens, seed=seed)


def sample_solutions(
    problems: Sequence[Problem], generator: Generator, config: LabelConfig, seed: int, counts: ChunkCounts
) -> list[list[Solution]]:
    """`num_solutions` solutions per problem in one generate call; truncated, empty and repeated ones dropped."""
    results = generator.generate(
        [GenerationRequest(problem.problem) for problem in problems],
        n=config.num_solutions,
        params=sampling_params(config, seed),
        stop=None,
    )
    counts.generate_calls += 1
    kept: list[list[Solution]] = []
    for problem, completions in zip(problems, results, strict=True):
        seen: set[tuple[str, ...]] = set()
        solutions = []
        for index, completion in enumerate(completions):
            counts.policy_tokens += completion.num_tokens
            steps = tuple(split_steps(completion.text))
            if completion.finish_reason == "length":
                counts.dropped_truncated += 1
            elif not steps:
                counts.dropped_empty += 1
            elif config.dedupe_solutions and steps in seen:
                counts.dropped_duplicates += 1
            else:
                seen.add(steps)
                solutions.append(Solution(index, completion.text, steps))
        kept.append(solutions)
    return kept


def _judged_by_own_answer(solution: Solution, step_index: int) -> bool:
    """The last step of a solution with a boxed answer is labelled by that answer, not by rollouts."""
    return step_index == len(solution.steps) - 1 and extract_boxed_answer(solution.steps[-1]) is not None


def mc_step_values(
    problems: Sequence[Problem],
    solutions: Sequence[Sequence[Solution]],
    generator: Generator,
    config: LabelConfig,
    seed: int,
    counts: ChunkCounts,
) -> list[list[list[float]]]:
    """Per problem, per solution, per step: the fraction of rollouts from that step's prefix reaching the gold answer.

    All prefixes of the chunk go into one generate call with n = rollouts_per_step; a prefix that several
    solutions of one problem share is rolled out once.
    """
    keys: dict[tuple[int, str], int] = {}
    for p_index, kept in enumerate(solutions):
        for solution in kept:
            for s_index in range(len(solution.steps)):
                if not _judged_by_own_answer(solution, s_index):
                    keys.setdefault((p_index, _prefix(solution.steps[: s_index + 1])), len(keys))
    fractions: list[float] = []
    if keys:
        requests = [GenerationRequest(problems[p_index].problem, prefix) for p_index, prefix in keys]
        rollouts = generator.generate(requests, n=config.rollouts_per_step, params=sampling_params(config, seed), stop=None)
        counts.generate_calls += 1
        for (p_index, prefix), completions in zip(keys, rollouts, strict=True):
            if len(completions) != config.rollouts_per_step:
                raise RuntimeError(f"{generator.name} returned {len(completions)} rollouts for n={config.rollouts_per_step}; "
                                   "a Generator must return n completions per request")
            counts.policy_tokens += sum(completion.num_tokens for completion in completions)
            gold = problems[p_index].answer
            hits = sum(grade(gold, extract_boxed_answer(prefix + completion.text)) for completion in completions)
            fractions.append(hits / len(completions))
    values: list[list[list[float]]] = []
    for p_index, kept in enumerate(solutions):
        per_problem = []
        for solution in kept:
            per_step = []
            for s_index in range(len(solution.steps)):
                if _judged_by_own_answer(solution, s_index):
                    per_step.append(float(grade(problems[p_index].answer, extract_boxed_answer(solution.steps[-1]))))
                else:
                    per_step.append(fractions[keys[(p_index, _prefix(solution.steps[: s_index + 1]))]])
            per_problem.append(per_step)
        values.append(per_problem)
    return values


def _prefix(steps: Sequence[str]) -> str:
    """The text a rollout continues: the steps so far, then the separator (a new step starts)."""
    return join_steps(list(steps)) + STEP_SEPARATOR


def _oracle(problem: Problem, steps: Sequence[str]) -> list[bool]:
    try:
        return oracle_labels(problem, steps)
    except ValueError as error:
        raise ValueError(f"problem {problem.id!r}: the oracle labels synthetic-world problems only ({error})") from None


@dataclass
class ChunkResult:
    """The rows of one chunk and its counters."""

    rows: list[StepLabels]
    counts: ChunkCounts


def label_chunk(problems: Sequence[Problem], generator: Generator, config: LabelConfig, chunk_index: int) -> ChunkResult:
    """Sample and label the solutions of one chunk of problems: one generate call to sample, one for all rollouts."""
    counts = ChunkCounts()
    solutions = sample_solutions(problems, generator, config, call_seed(config.seed, 2 * chunk_index), counts)
    values = None
    if config.labeller == "mc":
        values = mc_step_values(problems, solutions, generator, config, call_seed(config.seed, 2 * chunk_index + 1), counts)
    rows = []
    for p_index, (problem, kept) in enumerate(zip(problems, solutions, strict=True)):
        for s_index, solution in enumerate(kept):
            meta: dict[str, Any] = {
                "problem_id": problem.id,
                "solution_index": solution.index,
                "labeller": config.labeller,
                "policy": generator.name,
            }
            if values is not None:
                soft = values[p_index][s_index]
                labels: list[bool | float] = soft if config.label_kind == "soft" else [value > 0 for value in soft]
                meta.update(rollouts_per_step=config.rollouts_per_step, mc_values=soft)
                if config.compare_oracle:
                    meta["oracle_labels"] = _oracle(problem, solution.steps)
            else:
                labels = list(_oracle(problem, solution.steps))
            rows.append(StepLabels(prompt=problem.problem, completions=list(solution.steps), labels=labels, meta=meta))
    return ChunkResult(rows, counts)


# --------------------------------------------------------------------------- agreement


Row = StepLabels | Mapping[str, Any]
"""A stepwise example as a record or as a row read from JSONL."""


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


# --------------------------------------------------------------------------- the resumable job


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


CONFUSION_KEYS = ("both_true", "mc_only_true", "oracle_only_true", "both_false")
"""Step counts by (mc hard label, oracle label) in the summary's `oracle_confusion`."""


@dataclass
class _Tally:
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


def _repair_tail(path: Path) -> None:
    """Cut a last line that a killed write left without its newline (it is incomplete)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    logger.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run", path, len(data) - keep)
    with path.open("r+b") as handle:
        handle.truncate(keep)


def _read_tally(config: LabelConfig) -> _Tally:
    paths = config.output_paths()
    tally = _Tally()
    for key in ("rows", "progress"):
        _repair_tail(paths[key])
    if paths["rows"].exists():
        for line_no, raw in read_jsonl(paths["rows"]):
            try:
                row = parse_stepwise_row(raw)
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
    changed = sorted(key for key in set(before) | set(now) if key not in RESUME_SAFE_KEYS and before.get(key) != now.get(key))
    if changed:
        details = ", ".join(f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in changed[:4])
        raise ConfigError(f"{config.output} was labelled with other settings ({details}); "
                          "use a new output file, or delete the old one and its sidecar files")


def _summary(config: LabelConfig, tally: _Tally, ids: set[str], written: int) -> LabelSummary:
    counters = {key: tally.counters.get(key, 0) for key in
                ("dropped_truncated", "dropped_empty", "dropped_duplicates", "policy_tokens", "generate_calls", "seconds")}
    return LabelSummary(
        output=config.output,
        labeller=config.labeller,
        label_kind=config.label_kind if config.labeller == "mc" else "hard",
        num_solutions=config.num_solutions,
        rollouts_per_step=config.rollouts_per_step if config.labeller == "mc" else None,
        problems=len(ids),
        problems_done=len(ids & tally.done),
        examples=tally.examples,
        steps=tally.steps,
        positive_steps=tally.positive,
        positive_step_fraction=tally.positive / tally.steps if tally.steps else None,
        mean_label=tally.label_sum / tally.steps if tally.steps else None,
        dropped_truncated=int(counters["dropped_truncated"]),
        dropped_empty=int(counters["dropped_empty"]),
        dropped_duplicates=int(counters["dropped_duplicates"]),
        policy_tokens=int(counters["policy_tokens"]),
        generate_calls=int(counters["generate_calls"]),
        seconds=round(float(counters["seconds"]), 3),
        oracle_agreement=tally.agree / tally.agree_steps if tally.agree_steps else None,
        oracle_agreement_steps=tally.agree_steps,
        oracle_confusion=dict(tally.confusion) if tally.agree_steps else None,
        rows_written_now=written,
    )


def _write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
    _write_text(paths["config"], dump_config(config))
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
            append_jsonl(paths["rows"], [{**row.to_dict(), "meta": row.meta} for row in result.rows])
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
            summary = _summary(config, tally, ids, written)
            _write_text(paths["summary"], json.dumps(summary.to_dict(), indent=2) + "\n")
            bar.update(len(todo))
            if on_chunk is not None:
                on_chunk(chunk_index, result)
    summary = _summary(config, tally, ids, written)
    _write_text(paths["summary"], json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def build_generator(config: LabelConfig) -> Generator:
    """The policy backend the config names, seeded with the job's seed."""
    from inference.generation import load_generator

    policy = config.policy
    return load_generator(policy.backend, policy.model_name_or_path, **policy.generator_options(config.seed))


def label(config: LabelConfig, generator: Generator | None = None) -> LabelSummary:
    """The whole `ttc-infer label` job: load problems, build the policy (unless given), label, summarise."""
    problems = load_label_problems(config.benchmark)
    logger.info("labelling %d problems with labeller %s into %s", len(problems), config.labeller, config.output)
    return label_problems(problems, generator or build_generator(config), config)


# --------------------------------------------------------------------------- command line


def make_label_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `ttc-infer label` flags: --config, --log_level and one --section.key flag per LabelConfig field."""
    from inference.cli import add_config_arguments

    if parser is None:
        parser = argparse.ArgumentParser(prog="ttc-infer label", description=LabelConfig.__doc__, allow_abbrev=False)
        parser.add_argument("--config", help="YAML file with config keys (flags override it)")
        parser.add_argument("--log_level", default="info", choices=("debug", "info", "warning"), help="logging level")
    add_config_arguments(parser, LabelConfig)
    return parser


def label_main(argv: Sequence[str] | None = None) -> int:
    """`ttc-infer label`: 0 done, 1 runtime error, 2 usage or config error, 130 interrupted (rerun to resume)."""
    try:
        args = make_label_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cli = {
        key: [CliValue(v) for v in value] if isinstance(value, list) else CliValue(value)
        for key, value in vars(args).items()
        if key not in ("config", "log_level")
    }
    try:
        summary = label(parse_config(LabelConfig, args.config, cli))
    except ConfigError as error:
        print(f"ttc-infer label: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ttc-infer label: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI reports any failure as one line
        logger.debug("traceback", exc_info=True)
        print(f"ttc-infer label: error: {error}", file=sys.stderr)
        return 1
    print(f"label: {summary}")
    return 0


__all__ = [
    "ChunkResult",
    "LabelConfig",
    "LabelSummary",
    "Solution",
    "grade",
    "label",
    "label_agreement",
    "label_chunk",
    "label_main",
    "label_problems",
    "load_label_problems",
    "make_label_parser",
    "mc_step_values",
    "sample_solutions",
]


if __name__ == "__main__":
    raise SystemExit(label_main())
