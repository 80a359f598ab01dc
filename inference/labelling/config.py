"""Config of `ttc-infer label`: Monte-Carlo (Math-Shepherd) or oracle step labels from a policy, as a dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inference.config import FIELD_MAPPING, BenchmarkConfig, ConfigError, PolicyConfig

SYNTHETIC_BENCHMARKS = ("synthetic-train", "synthetic-test")
"""Benchmark names drawn from the synthetic world (the only ones the oracle labeller can check)."""

RESUME_SAFE_KEYS = frozenset(
    {
        "chunk_size",
        "benchmark.limit",
        "policy.batch_size",
        "policy.device",
        "policy.gpu_memory_utilization",
        "policy.max_model_len",
        "policy.tensor_parallel_size",
    }
)
"""Keys that may change between a run and its resumption (engine settings, and `limit` to label more problems)."""


@dataclass(frozen=True)
class LabelBenchmarkConfig:
    """Which problems to label: a named benchmark, a problem file, or the synthetic world's train split."""

    name_or_path: str = "synthetic-train"
    """`synthetic-train` (the synthetic world's train split, drawn here with `generate_problems("train", ...)`),
    `synthetic-test`, `math500`, `gsm8k`, or a `.jsonl`/`.parquet` file of problems."""
    limit: int | None = None
    """Keep only the first `limit` problems; null keeps all (raise it and rerun to label more)."""
    num_per_level: int | None = None
    """Synthetic benchmarks only: problems per difficulty level (5 levels); null uses 20."""
    seed: int | None = None
    """Synthetic benchmarks only: seed of the synthetic world's problem stream; null uses 0."""
    path: str | None = None
    """math500 / gsm8k only: the benchmark file; null uses `../shared/data/<name>_test.jsonl`."""
    fields: dict[str, str] | None = field(default=None, metadata={"keyed_values": FIELD_MAPPING})
    """Problem files only: column mapping (problem, answer, id, level, answer_after, answer_regex)."""
    source: str | None = None
    """Problem files only: the `source` recorded in each problem; null uses the file name without suffix."""

    def __post_init__(self) -> None:
        if self.name_or_path in SYNTHETIC_BENCHMARKS:
            for key in ("path", "fields", "source"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"benchmark.{key} does not apply to {self.name_or_path}; remove it")
            if self.num_per_level is not None and self.num_per_level < 1:
                raise ConfigError(f"benchmark.num_per_level must be >= 1, got {self.num_per_level}")
            if self.limit is not None and self.limit < 1:
                raise ConfigError(f"benchmark.limit must be >= 1 or null, got {self.limit}")
            return
        for key in ("num_per_level", "seed"):
            if getattr(self, key) is not None:
                raise ConfigError(
                    f"benchmark.{key} applies to {' and '.join(SYNTHETIC_BENCHMARKS)} only, not "
                    f"{self.name_or_path!r}; remove it"
                )
        self.as_benchmark_config()  # the run config's rules for named benchmarks and files

    @property
    def is_synthetic(self) -> bool:
        return self.name_or_path in SYNTHETIC_BENCHMARKS

    def as_benchmark_config(self) -> BenchmarkConfig:
        """The same selection as a `ttc-infer run` benchmark section (not for synthetic-train)."""
        return BenchmarkConfig(
            name_or_path=self.name_or_path, limit=self.limit, path=self.path, fields=self.fields, source=self.source
        )


Labeller = Literal["mc", "oracle", "outcome"]
LabelKind = Literal["hard", "soft"]


@dataclass(frozen=True)
class LabelConfig:
    """`ttc-infer label`: sample solutions with the policy, label every step, append stepwise rows to `output`.

    Labellers: `mc` (Math-Shepherd): from each step prefix roll out `rollouts_per_step` completions; the soft label
    is the fraction whose final answer matches the gold one, the hard label is "at least one does". The last step
    of a solution that states a boxed answer is labelled by that answer alone. `oracle` (synthetic world only):
    the exact checker's verdict, True before the first wrong step and False from it on. `outcome` (any benchmark
    with gold answers): whether the solution's boxed answer is right, one label per solution, written as outcome
    rows (`{"prompt", "completion", "label", "meta"}`, TRL's unpaired-preference layout) for the implicit PRM
    (`train_prm.py --data_format outcome`); no rollouts.
    """

    benchmark: LabelBenchmarkConfig = field(default_factory=LabelBenchmarkConfig)
    """Which problems to label."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The policy that writes the solutions and the rollouts, and its generation backend."""
    labeller: Labeller = "mc"
    """`mc` (Monte-Carlo rollouts, any benchmark), `oracle` (exact checker, synthetic world only) or `outcome` (the
    final answer graded, one label per solution)."""
    label_kind: LabelKind = "hard"
    """mc only: write hard labels (bool: some rollout reaches the gold answer) or soft ones (float: the fraction)."""
    num_solutions: int = 4
    """Solutions sampled per problem; each kept solution becomes one row."""
    rollouts_per_step: int = 8
    """mc only: completions rolled out from each step prefix (k)."""
    temperature: float = 0.8
    """Sampling temperature of the solutions and the rollouts."""
    top_p: float = 1.0
    """Nucleus sampling mass of the solutions and the rollouts."""
    max_tokens: int = 512
    """Most new tokens per solution and per rollout; solutions cut off at this length are dropped (counted)."""
    dedupe_solutions: bool = True
    """Keep one copy of solutions of a problem with the same steps (the first sampled)."""
    compare_oracle: bool = False
    """mc on the synthetic world only: also compute oracle labels of the same solutions (kept in each row's `meta`)
    and report the agreement of the Monte-Carlo hard labels with them in the summary."""
    seed: int = 0
    """Seed of the labelling: each chunk's generate calls get seeds derived from it and the chunk's index."""
    output: str = "runs/labels/labels.jsonl"
    """The stepwise-supervision JSONL file rows are appended to; `<stem>.summary.json`, `<stem>.progress.jsonl`
    and `<stem>.config.yaml` are written next to it. Rerun the same command to resume."""
    chunk_size: int = 8
    """Problems per chunk: one generate call samples their solutions, one more rolls out all their step prefixes;
    the chunk's rows are appended at once, so a chunk is also the resume unit."""

    def __post_init__(self) -> None:
        for key in ("num_solutions", "rollouts_per_step", "max_tokens", "chunk_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}; use 0 for greedy")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}; use 1.0 to turn it off")
        if Path(self.output).suffix.lower() != ".jsonl":
            raise ConfigError(f"output={self.output!r} must be a .jsonl file (rows are appended per chunk)")
        defaults = {f.name: f.default for f in dataclasses.fields(LabelConfig)}
        if self.labeller != "mc":
            for key in ("label_kind", "rollouts_per_step", "compare_oracle"):
                if getattr(self, key) != defaults[key]:
                    raise ConfigError(f"{key}={getattr(self, key)!r} applies to labeller mc only; remove it or set labeller: mc")
        if self.labeller == "oracle":
            if not self.benchmark.is_synthetic:
                raise ConfigError(
                    f"labeller oracle needs a synthetic benchmark ({', '.join(SYNTHETIC_BENCHMARKS)}), got "
                    f"{self.benchmark.name_or_path!r}; use labeller: mc for other problems"
                )
        if self.compare_oracle and not self.benchmark.is_synthetic:
            raise ConfigError(
                f"compare_oracle needs a synthetic benchmark ({', '.join(SYNTHETIC_BENCHMARKS)}), got "
                f"{self.benchmark.name_or_path!r}; set compare_oracle: false"
            )

    def output_paths(self) -> dict[str, Path]:
        """The files of one labelling job: rows, summary, progress log and the resolved config."""
        rows = Path(self.output)
        stem = rows.with_suffix("")
        return {
            "rows": rows,
            "summary": stem.with_name(stem.name + ".summary.json"),
            "progress": stem.with_name(stem.name + ".progress.jsonl"),
            "config": stem.with_name(stem.name + ".config.yaml"),
        }


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """A config as dotted keys -> values (for comparing a resumed job's settings with the first run's)."""
    from inference.config import to_plain

    plain = to_plain(config) if dataclasses.is_dataclass(config) else config
    flat: dict[str, Any] = {}
    for key, value in plain.items():
        if isinstance(value, dict) and key in ("benchmark", "policy"):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


__all__ = ["LabelBenchmarkConfig", "LabelConfig", "RESUME_SAFE_KEYS", "SYNTHETIC_BENCHMARKS", "flatten"]
