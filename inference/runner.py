"""Orchestration of `ttc-infer run`: problems and shards, resume, chunked strategy calls, result and config files."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from data_prep.io import atomic_write_text
from data_prep.records import Problem, require_unique_ids
from inference.config import RunConfig, dump_config, parse_shard
from inference.results import ResultKey, append_results, iter_result_dicts, row_key
from inference.samples import SampleKey, append_samples, load_samples, samples_beside
from inference.strategies import get_strategy, is_subsampled
from inference.types import Completion, GenerationRequest, Generator, PRMScore, PRMScorer, SamplingParams

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- problems, shards and paths


def select_shard(problems: Sequence[Problem], shard: str | None) -> list[Problem]:
    """Shard `i/k` (0-based) of `problems`: problem j goes to shard j mod k, so shards mix all difficulties."""
    if shard is None:
        return list(problems)
    index, count = parse_shard(shard)
    return list(problems[index::count])


def shard_suffix(shard: str | None) -> str:
    """`""` or `.shard-i-of-k`, the infix of a shard's file names."""
    if shard is None:
        return ""
    index, count = parse_shard(shard)
    return f".shard-{index}-of-{count}"


def results_path(config: RunConfig) -> Path:
    """`<output_dir>/results.jsonl`, or `results.shard-i-of-k.jsonl` for a shard."""
    return Path(config.output_dir) / f"results{shard_suffix(config.shard)}.jsonl"


def config_copy_path(config: RunConfig) -> Path:
    """`<output_dir>/config.yaml`, or `config.shard-i-of-k.yaml` for a shard."""
    return Path(config.output_dir) / f"config{shard_suffix(config.shard)}.yaml"


def write_run_config(config: RunConfig) -> Path:
    """Write the resolved config next to the results (it reads back with `--config`)."""
    return atomic_write_text(config_copy_path(config), dump_config(config))


def load_problems(config: RunConfig) -> list[Problem]:
    """The benchmark's problems (after `limit`), then this run's shard of them."""
    from data_prep.benchmarks import load_benchmark

    bench = config.benchmark
    problems = load_benchmark(bench.name_or_path, limit=bench.limit, **bench.loader_options())
    require_unique_ids(problems, f"benchmark {bench.name_or_path}")
    return select_shard(problems, config.shard)


def needs_prm(config: RunConfig) -> bool:
    """Whether any swept strategy calls the PRM at any of its budgets (the registry's `uses_prm`)."""
    return any(
        get_strategy(name).uses_prm(config.settings_for(name, n))
        for name in config.sweep.strategies
        for n in config.sweep.budgets_for(name)
    )


def check_prm_path(config: RunConfig) -> None:
    """Fail before the (slow) policy load when the PRM directory is missing or holds the wrong kind of checkpoint."""
    from inference.scoring.checker import SYNTHETIC_CHECKER
    from inference.scoring.loader import is_loadable_prm_path, resolve_style

    if not needs_prm(config):
        return
    if not is_loadable_prm_path(config.prm.path):
        raise FileNotFoundError(
            f"prm.path={config.prm.path!r} is not a directory; train a PRM there or point prm.path at a local PRM "
            "checkpoint (public PRMs: download them to a folder first)"
        )
    if config.prm.path != SYNTHETIC_CHECKER:
        resolve_style(Path(config.prm.path), config.prm.prm_style)


def build_generator(config: RunConfig) -> Generator:
    """The policy backend the config names, seeded with the run's seed."""
    from inference.generation import build_policy_generator

    return build_policy_generator(config.policy, config.seed)


def build_scorer(config: RunConfig) -> PRMScorer | None:
    """The PRM the config names (None when no swept strategy uses one); `prm.name` renames it in rows."""
    if not needs_prm(config):
        return None
    from inference.scoring.loader import load_scorer

    prm = config.prm
    options: dict[str, Any] = {
        "prm_style": prm.prm_style,
        "dtype": prm.dtype,
        "device": prm.device,
        "max_tokens_per_batch": prm.max_tokens_per_batch,
        "trust_remote_code": prm.trust_remote_code,
    }
    for key in ("step_tag", "good_token", "bad_token"):
        if getattr(prm, key) is not None:
            options[key] = getattr(prm, key)
    if prm.prefix_cache_gib is not None:  # token-classification PRMs only: the loader refuses it for the others
        options["prefix_cache_bytes"] = int(prm.prefix_cache_gib * 2**30)
    options.update(prm.backend_options())  # prm.backend: vllm serves the PRM on a vLLM engine
    scorer = load_scorer(prm.path, **options)
    if prm.name is not None:
        scorer.name = prm.name
    return scorer


# --------------------------------------------------------------------------- the sample pool


class _PoolGenerator:
    """A Generator that answers repeated (request, params, stop) asks from its cache, cutting to the first n.

    `stored` (samples read from an earlier run, `inference/samples.py`) answers an ask the cache lacks when it
    holds at least n completions for it; the policy draws the rest. The cache holds every ask's samples once, in
    order: the run's own samples file is written from it (`SamplePool.used_samples`).
    """

    def __init__(self, generator: Generator, stored: Mapping[SampleKey, list[Completion]] | None = None) -> None:
        self.generator = generator
        self.name = generator.name
        self.num_parameters = generator.num_parameters
        self.cache: dict[SampleKey, list[Completion]] = {}
        self.stored = stored or {}
        self.calls = 0
        self.replayed = 0
        """Asks answered from `stored`."""
        self.drawn = 0
        """Asks the policy answered."""

    def generate(
        self, requests: list[GenerationRequest], *, n: int, params: SamplingParams, stop: list[str] | None = None
    ) -> list[list[Completion]]:
        seen: Counter = Counter()
        keys = []
        for request in requests:
            # The occurrence number keeps two identical requests in one call from sharing samples.
            keys.append((request, params, tuple(stop) if stop else None, seen[request]))
            seen[request] += 1
        missing = [i for i, key in enumerate(keys) if len(self.cache.get(key, ())) < n]
        for i in [i for i in missing if len(self.stored.get(keys[i], ())) >= n]:
            self.cache[keys[i]] = list(self.stored[keys[i]])
            self.replayed += 1
        missing = [i for i in missing if len(self.cache.get(keys[i], ())) < n]
        if missing:
            self.calls += 1
            self.drawn += len(missing)
            outputs = self.generator.generate([requests[i] for i in missing], n=n, params=params, stop=stop)
            for i, output in zip(missing, outputs, strict=True):
                self.cache[keys[i]] = list(output)
        return [self.cache[key][:n] for key in keys]


class _PoolScorer:
    """A PRMScorer that scores each distinct (problem, steps) once and answers repeats from its cache."""

    def __init__(self, scorer: PRMScorer) -> None:
        self.scorer = scorer
        self.name = scorer.name
        self.num_parameters = scorer.num_parameters
        self.cache: dict[tuple[str, tuple[str, ...]], PRMScore] = {}

    def score(self, problems: list[str], step_lists: list[list[str]]) -> list[PRMScore]:
        keys = [(problem, tuple(steps)) for problem, steps in zip(problems, step_lists, strict=True)]
        missing = list(dict.fromkeys(key for key in keys if key not in self.cache))
        if missing:
            scores = self.scorer.score([k[0] for k in missing], [list(k[1]) for k in missing])
            self.cache.update(zip(missing, scores, strict=True))
        return [self.cache[key] for key in keys]


@dataclass
class SamplePool:
    """Wrappers of one generator and scorer that share samples and scores across sampling strategies and N.

    With `share_samples` on, majority, best_of_n and weighted_best_of_n run per chunk of problems from the
    largest N down through one pool: the policy is asked once for the largest N and smaller N get the first N
    of those samples; the PRM scores each distinct solution once. This is the reference method's sharing (one
    sample set, every selection rule, every N a prefix) and it is exact: each row holds the completions and
    token counters a lone run on those samples would; only `compute.seconds` of replayed calls is smaller.
    Requests with different sampling settings (temperature, max_tokens, seed) have different keys and never
    share.
    """

    generator: _PoolGenerator
    scorer: _PoolScorer | None

    @classmethod
    def wrap(cls, generator: Generator, scorer: PRMScorer | None,
             stored: Mapping[SampleKey, list[Completion]] | None = None) -> "SamplePool":
        return cls(_PoolGenerator(generator, stored), _PoolScorer(scorer) if scorer is not None else None)

    def used_samples(self) -> list[tuple[SampleKey, list[Completion]]]:
        """Every ask's samples, drawn or replayed: what the pool's rows are made of."""
        return list(self.generator.cache.items())


# --------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class Job:
    """One strategy at one budget N."""

    strategy: str
    n: int
    settings: Any

    def key(self, problem: Problem) -> ResultKey:
        return (problem.id, self.strategy, self.n, getattr(self.settings, "beam_width", None), self.settings.seed)

    @property
    def settings_json(self) -> str:
        return json.dumps(dataclasses.asdict(self.settings), sort_keys=True)

    @property
    def label(self) -> str:
        return f"{self.strategy} N={self.n}"


@dataclass(frozen=True)
class SweepSummary:
    """What `run_sweep` did."""

    results_path: Path
    rows_written: int
    rows_skipped: int
    """Rows already in the results file (resumed)."""
    correct: int
    """Correct rows among those written."""


def plan_jobs(config: RunConfig) -> list[Job]:
    """Every (strategy, N) of the sweep, strategies in sweep order and N ascending."""
    return [
        Job(name, n, config.settings_for(name, n))
        for name in config.sweep.strategies
        for n in config.sweep.budgets_for(name)
    ]


def _existing_keys(path: Path, jobs: Sequence[Job], generator: Generator) -> set[ResultKey]:
    """The keys of the rows already on disk, read one row at a time and only the keys kept (the run's memory does
    not grow with the file); each row must come from the same settings and policy as this run would use."""
    if not path.is_file():
        return set()
    by_spec = {(j.strategy, j.n, getattr(j.settings, "beam_width", None), j.settings.seed): j for j in jobs}
    keys: set[ResultKey] = set()
    for _, data in iter_result_dicts(path):
        key = row_key(data)
        keys.add(key)
        job = by_spec.get(key[1:])
        if job is None:
            continue
        if data["settings_json"] != job.settings_json:
            stored, now = json.loads(data["settings_json"]), json.loads(job.settings_json)
            changed = [k for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]
            diff = ", ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise ValueError(
                f"{path} holds {job.label} rows made with other settings ({diff}); use a new output_dir for them"
            )
        if data["policy"] != generator.name:
            raise ValueError(
                f"{path} holds {job.label} rows of policy {data['policy']!r} but this run's policy is "
                f"{generator.name!r}; use a new output_dir for another policy"
            )
    return keys


def _chunks(items: Sequence[Problem], size: int) -> list[list[Problem]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def forget_cached(*models: Any) -> None:
    """Drop what the models keep from earlier calls (the policy's reused keys and values, the PRM's cached
    prefixes), at the start of each resume unit: a chunk then runs, and counts its forward tokens, the same whether
    the run started there or ran the chunks before it."""
    for model in models:
        forget = getattr(model, "forget_cached", None)
        if forget is not None:
            forget()


def _run_job(job: Job, problems: list[Problem], generator: Generator, scorer: PRMScorer | None) -> list:
    rows = get_strategy(job.strategy).run(problems, generator, scorer, job.settings)
    got = [row_key(row) for row in rows]
    want = [job.key(problem) for problem in problems]
    if got != want:
        raise RuntimeError(f"{job.label} returned rows with keys {got[:2]}... for problems keyed {want[:2]}...; "
                           "a strategy must return one row per problem, in order, with its settings' n/beam_width/seed")
    return rows


@dataclass
class _Writer:
    """Appends rows to the results file and keeps the done keys and counts up to date."""

    path: Path
    done: set[ResultKey]
    written: int = 0
    correct: int = 0

    def write(self, rows: list) -> None:
        append_results(self.path, rows)
        self.done.update(row_key(row) for row in rows)
        self.written += len(rows)
        self.correct += sum(row.correct for row in rows)


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="problem", disable=not progress or not total)


def _run_shared(jobs: list[Job], problems: Sequence[Problem], generator: Generator, scorer: PRMScorer | None,
                writer: _Writer, chunk_size: int, progress: bool, samples_out: Path,
                stored: Mapping[SampleKey, list[Completion]] | None) -> tuple[int, int]:
    """Sampling jobs chunk by chunk through one SamplePool per chunk, largest N first; one append per chunk.

    Each chunk's samples go to `samples_out` before its rows go to the results file, so a row on disk always has
    its samples on disk. Returns the number of asks answered from `stored` and of those the policy answered.
    """
    todo = [p for p in problems if any(j.key(p) not in writer.done for j in jobs)]
    names = ", ".join(dict.fromkeys(j.strategy for j in jobs))
    replayed = drawn = 0
    with _bar(len(todo), f"{names} N<={max(j.n for j in jobs)}", progress) as bar:
        for chunk in _chunks(todo, chunk_size):
            forget_cached(generator, scorer)
            pool = SamplePool.wrap(generator, scorer, stored)
            rows = []
            for job in sorted(jobs, key=lambda j: -j.n):  # smaller N reuse the samples of the largest
                chunk_todo = [p for p in chunk if job.key(p) not in writer.done]
                if chunk_todo:
                    rows += _run_job(job, chunk_todo, pool.generator, pool.scorer)
            append_samples(samples_out, generator.name, pool.used_samples())
            writer.write(rows)
            replayed += pool.generator.replayed
            drawn += pool.generator.drawn
            bar.update(len(chunk))
    return replayed, drawn


def _run_alone(job: Job, problems: Sequence[Problem], generator: Generator, scorer: PRMScorer | None,
               writer: _Writer, chunk_size: int, progress: bool) -> None:
    """One job chunk by chunk; one append per chunk."""
    todo = [p for p in problems if job.key(p) not in writer.done]
    with _bar(len(todo), job.label, progress) as bar:
        for chunk in _chunks(todo, chunk_size):
            forget_cached(generator, scorer)
            writer.write(_run_job(job, chunk, generator, scorer))
            bar.update(len(chunk))


def _log_replay(source: str, replayed: int, drawn: int, stored: Mapping) -> None:
    """Say how many sample asks came from `samples_from`; warn when it served none of those made (its samples
    differ)."""
    if replayed or not drawn:
        logger.info("samples_from %s: %d requests took their samples from it, the policy drew %d", source, replayed,
                    drawn)
    else:
        logger.warning("samples_from %s: none of this run's requests were there (%d stored for its problems): their "
                       "sampling settings (temperature, top_p, max_tokens, seed) or N differ; the policy drew them",
                       source, len(stored))


def run_sweep(
    config: RunConfig,
    problems: Sequence[Problem],
    generator: Generator,
    scorer: PRMScorer | None,
    results_path: str | Path,
    *,
    progress: bool = True,
    write_config_copy: bool = False,
) -> SweepSummary:
    """Run every (strategy, N) of the sweep on `problems`, appending each chunk's rows to `results_path`.

    Rows already in the file are skipped (resume); they must have been made with the same settings and
    policy. `write_config_copy` writes the config beside the results once that is checked. Sampling strategies
    share samples through a `SamplePool` when `config.share_samples` is on.
    """
    path = Path(results_path)
    for unused in config.unused_strategy_sections():
        logger.warning("%s is set but the strategy is not in sweep.strategies; it is not used", unused)
    jobs = plan_jobs(config)
    writer = _Writer(path, _existing_keys(path, jobs, generator))
    shared = [j for j in jobs if config.share_samples and is_subsampled(j.strategy)]
    stored = None  # read before anything is written, so a bad samples file leaves the output directory as it was
    if shared and config.samples_from:
        stored = load_samples(config.samples_from, generator.name, [p.problem for p in problems])
    if write_config_copy:  # only once the rows already there are known to fit this config
        logger.info("config in %s", write_run_config(config))
    skipped = sum(1 for job in jobs for p in problems if job.key(p) in writer.done)
    if skipped:
        logger.info("%s: resuming; %d of %d rows are already there", path, skipped, len(jobs) * len(problems))
    if shared:
        replayed, drawn = _run_shared(shared, problems, generator, scorer, writer, config.chunk_size, progress,
                                      samples_beside(path), stored)
        if config.samples_from:
            _log_replay(config.samples_from, replayed, drawn, stored)
    for job in jobs:
        if job not in shared:
            _run_alone(job, problems, generator, scorer, writer, config.chunk_size, progress)
    logger.info("%s: wrote %d rows (%d correct), %d were already there", path, writer.written, writer.correct, skipped)
    return SweepSummary(results_path=path, rows_written=writer.written, rows_skipped=skipped, correct=writer.correct)
