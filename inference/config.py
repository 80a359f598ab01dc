"""Config dataclasses of the `ttc-infer` subcommands, filled from a YAML file and overridden by CLI flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data_prep.benchmarks import SYNTHETIC_NUM_PER_LEVEL, FieldMapping
from data_prep.steps import SYSTEM_PROMPT
from inference.config_engine import (  # noqa: F401 - the engine's names, importable from here as before
    CliValue,
    ConfigError,
    KeyedSettings,
    KeyedValues,
    default_value,
    dump_config,
    field_docs,
    load_yaml,
    parse_config,
    to_plain,
    unknown_message,
)
from inference.prompts import PROMPT_DATE
from inference.scoring.styles import STYLE_NAMES

SHIPPED_POLICY = "checkpoints/policy-small"
"""The tiny policy checkpoint shipped with the repository."""

RESERVED_STRATEGY_KEYS: dict[str, str] = {
    "n": "N comes from the sweep; set sweep.n_values or sweep.max_n",
    "seed": "the seed is the run's; set the top-level seed",
}
"""Strategy Settings fields that the runner fills in, so a strategy section may not set them."""

BENCHMARK_NAMES_WITH_PATH = ("math500", "gsm8k")


def _strategy_names() -> list[str]:
    # Imported on use: loading a config module loads no strategy module.
    from inference.strategies import STRATEGIES

    return list(STRATEGIES)


def _strategy_settings(name: str) -> type:
    from inference.strategies import STRATEGIES

    return STRATEGIES[name].settings


def _field_mapping_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(FieldMapping)]


STRATEGY_SETTINGS = KeyedSettings(
    known_keys=_strategy_names,
    settings_of=_strategy_settings,
    reserved=RESERVED_STRATEGY_KEYS,
    noun="strategy",
    note="n and seed come from sweep and run",
    example="beam_search.beam_width 4",
)
"""Hook of `strategies`: `strategies.<strategy>.<setting>`, typed by that strategy's Settings fields."""

MIN_N_BY_STRATEGY = KeyedValues(known_keys=_strategy_names, doc="smallest N of this strategy")
"""Hook of `sweep.min_n_by_strategy`: one `--sweep.min_n_by_strategy.<strategy>` flag per strategy."""

FIELD_MAPPING = KeyedValues(known_keys=_field_mapping_keys, doc="column mapping entry")
"""Hook of a benchmark's `fields`: one `--benchmark.fields.<key>` flag per FieldMapping field."""


# --------------------------------------------------------------------------- sections of `ttc-infer run`


@dataclass(frozen=True)
class BenchmarkConfig:
    """Which problems to run on."""

    name_or_path: str = "synthetic-test"
    """Benchmark name (`math500`, `gsm8k`, `synthetic-test`) or a `.jsonl`/`.parquet` file of problems."""
    limit: int | None = None
    """Keep only the first `limit` problems (before sharding); null keeps all."""
    path: str | None = None
    """math500 / gsm8k only: the benchmark file; null uses `../shared/data/<name>_test.jsonl`."""
    num_per_level: int | None = None
    """synthetic-test only: problems per difficulty level (5 levels); null uses 20 (100 problems)."""
    fields: dict[str, str] | None = field(default=None, metadata={"keyed_values": FIELD_MAPPING})
    """Problem files only: column mapping (problem, answer, id, level, answer_after, answer_regex); null uses
    the columns `problem` and `answer`."""
    source: str | None = None
    """Problem files only: the `source` recorded in each row; null uses the file name without suffix."""

    def __post_init__(self) -> None:
        name = self.name_or_path
        if not name:
            raise ConfigError("benchmark.name_or_path is empty; use math500, gsm8k, synthetic-test or a file path")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"benchmark.limit must be >= 1 or null, got {self.limit}")
        is_file = name not in ("math500", "gsm8k", "synthetic-test")
        if self.path is not None and name not in BENCHMARK_NAMES_WITH_PATH:
            raise ConfigError(f"benchmark.path applies to math500 and gsm8k only, not {name!r}; remove it")
        if self.num_per_level is not None and name != "synthetic-test":
            raise ConfigError(f"benchmark.num_per_level applies to synthetic-test only, not {name!r}; remove it")
        if name == "synthetic-test" and self.num_per_level is not None and self.num_per_level < 1:
            raise ConfigError(f"benchmark.num_per_level must be >= 1, got {self.num_per_level}")
        for key in ("fields", "source"):
            if getattr(self, key) is not None and not is_file:
                raise ConfigError(f"benchmark.{key} applies to problem files only, not {name!r}; remove it")
        if self.fields is not None:
            known = _field_mapping_keys()
            for key in self.fields:
                if key not in known:
                    raise ConfigError(unknown_message(f"benchmark.fields: key '{key}'", key, known))
            try:
                FieldMapping(**self.fields)
            except ValueError as error:
                raise ConfigError(f"benchmark.fields: {error}") from None

    def loader_options(self) -> dict[str, Any]:
        """Keyword options for `data_prep.benchmarks.load_benchmark`."""
        options: dict[str, Any] = {}
        if self.path is not None:
            options["path"] = self.path
        if self.name_or_path == "synthetic-test":
            options["num_per_level"] = self.num_per_level or SYNTHETIC_NUM_PER_LEVEL
        if self.fields is not None:
            options["fields"] = FieldMapping(**self.fields)
        if self.source is not None:
            options["source"] = self.source
        return options


Backend = Literal["transformers", "vllm"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class PolicyConfig:
    """The policy model and its generation backend."""

    model_name_or_path: str = SHIPPED_POLICY
    """Checkpoint directory (or a hub id already in the local cache) of the policy."""
    backend: Backend = "transformers"
    """Generation backend: `transformers` (CPU or GPU) or `vllm` (GPU with the vllm extra, or CPU with vLLM's CPU
    build from scripts/vllm_cpu_env.sh)."""
    dtype: DType = "auto"
    """Weights dtype; `auto` is bfloat16 on CUDA and float32 on CPU."""
    device: Device = "cpu"
    """`cpu`, `cuda`, or `auto` (transformers: CUDA when available; vllm: the platform of the installed vLLM, whose
    CPU build takes cpu and CUDA build cuda)."""
    batch_size: int = 64
    """transformers only: most sequences (requests x n) per `model.generate` call."""
    kv_reuse_gib: float = 0.5
    """transformers only: most GiB of keys and values of sequences already run that later calls reuse (a tree
    search's next step starts from its beam's); 0 turns the reuse off."""
    gpu_memory_utilization: float = 0.4
    """vllm only: fraction of GPU memory the engine may take (leave room for the PRM on the same GPU)."""
    max_model_len: int | None = None
    """vllm only: context length of the KV cache; null takes the model's own."""
    tensor_parallel_size: int = 1
    """vllm only: GPUs the policy is split over."""
    system_prompt: str | None = SYSTEM_PROMPT
    """System prompt of every policy prompt; null sends none."""
    chat_template: str | None = None
    """Jinja chat template used instead of the tokenizer's own; null keeps the tokenizer's."""
    prompt_date: str = PROMPT_DATE
    """The date a chat template that takes one writes into every prompt (Llama-3.1/3.2's `date_string`); pinned
    so that a run resumed on another day sees the same prompts."""
    trust_remote_code: bool = False
    """Allow model code from the checkpoint directory."""

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ConfigError("policy.model_name_or_path is empty; set it to a checkpoint directory")
        if self.batch_size < 1:
            raise ConfigError(f"policy.batch_size must be >= 1, got {self.batch_size}")
        if not self.kv_reuse_gib >= 0:
            raise ConfigError(f"policy.kv_reuse_gib must be >= 0 (0 turns the reuse off), got {self.kv_reuse_gib}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"policy.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"policy.max_model_len must be >= 1 or null, got {self.max_model_len}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"policy.tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        defaults = PolicyConfig.__dataclass_fields__
        if self.backend == "vllm":
            if self.device != "auto":
                from inference.generation.vllm_backend import vllm_cpu_build, vllm_device_refusal

                refusal = vllm_device_refusal(self.device, vllm_cpu_build())
                if refusal:
                    raise ConfigError(f"policy.device={self.device!r} with backend vllm: {refusal}")
            if self.batch_size != defaults["batch_size"].default:
                raise ConfigError("policy.batch_size applies to the transformers backend only; vLLM batches itself")
            if self.kv_reuse_gib != defaults["kv_reuse_gib"].default:
                raise ConfigError("policy.kv_reuse_gib applies to the transformers backend only; vLLM's prefix "
                                  "caching reuses keys and values itself")
        else:
            for key in ("gpu_memory_utilization", "max_model_len", "tensor_parallel_size"):
                if getattr(self, key) != defaults[key].default:
                    raise ConfigError(f"policy.{key} applies to the vllm backend only; remove it or set backend: vllm")

    def generator_options(self, seed: int) -> dict[str, Any]:
        """Keyword options for `inference.generation.load_generator` (the chosen backend's own only)."""
        options: dict[str, Any] = {
            "dtype": self.dtype,
            "seed": seed,
            "system_prompt": self.system_prompt,
            "trust_remote_code": self.trust_remote_code,
            "chat_template": self.chat_template,
            "prompt_date": self.prompt_date,
        }
        if self.backend == "transformers":
            options.update(device=self.device, batch_size=self.batch_size,
                           kv_reuse_bytes=int(self.kv_reuse_gib * 2**30))
        else:
            options.update(
                device=self.device,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
                tensor_parallel_size=self.tensor_parallel_size,
            )
        return options


PRMStyleName = Literal[STYLE_NAMES]  # type: ignore[valid-type]
"""The `prm_style` names: the PRM style registry's (`inference.scoring.styles.STYLES`)."""


@dataclass(frozen=True)
class PRMConfig:
    """The process reward model."""

    path: str = "runs/default/prm-oracle"
    """PRM checkpoint directory (a `ttc_prm.json` in it gives its style) or a cached hub id; `synthetic-checker` is
    the synthetic world's exact step checker instead of a model (a perfect verifier: the ceiling of search)."""
    prm_style: PRMStyleName | None = None
    """How the PRM reads steps; null reads it from the checkpoint's `ttc_prm.json` (public PRMs need it set).
    `lm_likelihood` reads a plain causal LM (e.g. a larger policy) as verifier: a step scores the smallest
    probability it gives any of the step's tokens (aggregate with min). `qwen_prm` (Qwen2.5-Math-PRM) and
    `skywork_prm` (Skywork-o1-Open-PRM) read those public PRMs natively, with no checkpoint code."""
    dtype: DType = "auto"
    """Weights dtype; `auto` is bfloat16 on CUDA and float32 on CPU."""
    device: Device = "cpu"
    """`cpu`, `cuda`, or `auto` (CUDA when available)."""
    max_tokens_per_batch: int = 8192
    """Token budget of one PRM forward pass (solutions are packed up to it)."""
    step_tag: str | None = None
    """step_tag PRMs only: the tag placed after each step; null reads it from ttc_prm.json (Math-Shepherd: `ки`)."""
    good_token: str | None = None
    """Causal PRMs only: the token meaning "good step"; null reads it from ttc_prm.json, else `+`."""
    bad_token: str | None = None
    """Causal PRMs only: the token meaning "bad step"; null reads it from ttc_prm.json, else `-`."""
    name: str | None = None
    """Name recorded in result rows; null uses the scorer's own (the checkpoint directory's name)."""
    trust_remote_code: bool = False
    """Allow model code from the checkpoint directory."""
    backend: Backend = "transformers"
    """Scoring backend: `transformers` (every style) or `vllm` (token_classification and qwen_prm as a pooling model,
    chat_plus_minus, step_tag and lm_likelihood from prompt log-probabilities, implicit from those of two engines,
    the PRM's and its reference model's, with half of gpu_memory_utilization each; the same scores, vLLM's batching
    and prefix cache; GPU with the vllm extra, or CPU with vLLM's CPU build). max_tokens_per_batch and
    prefix_cache_gib are the transformers scorer's."""
    gpu_memory_utilization: float = 0.4
    """vllm only: fraction of GPU memory the PRM's engine may take (with the policy's, at most 1)."""
    prefix_cache_gib: float | None = None
    """token_classification PRMs: memory (on the PRM's device) for the keys and values of scored solutions, so a
    tree-search candidate is scored by a forward over its new step only; 0 turns it off, null keeps the scorer's
    default (1 GiB). An 8B PRM keeps 128 KiB per token: raise it on a GPU with room to spare."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("prm.path is empty; set it to a PRM checkpoint directory")
        if self.max_tokens_per_batch < 1:
            raise ConfigError(f"prm.max_tokens_per_batch must be >= 1, got {self.max_tokens_per_batch}")
        if self.prefix_cache_gib is not None and not self.prefix_cache_gib >= 0:
            raise ConfigError(f"prm.prefix_cache_gib must be >= 0 (0 turns the cache off), got {self.prefix_cache_gib}")
        if self.backend == "vllm" and self.prefix_cache_gib is not None:
            raise ConfigError("prm.prefix_cache_gib is the transformers scorer's cache; vLLM keeps its own "
                              "prefix cache, remove it with prm.backend vllm")
        default_share = PRMConfig.__dataclass_fields__["gpu_memory_utilization"].default
        check_scoring_backend(self.backend, self.device, self.gpu_memory_utilization,
                              is_set=self.gpu_memory_utilization != default_share, prefix="prm.")

    def backend_options(self) -> dict[str, Any]:
        """`load_scorer`'s backend options: none for transformers (its default), the engine's for vllm."""
        return scoring_backend_options(self.backend, self.gpu_memory_utilization)


def check_scoring_backend(backend: str, device: str, gpu_memory_utilization: float, *, is_set: bool,
                          prefix: str) -> None:
    """The checks of a PRM's scoring backend wherever one is configured (a run's `prm.`, `ttc-infer processbench`):
    the engine's memory share in (0, 1] and set (`is_set`) only for vllm, and a device vLLM can run on."""
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(f"{prefix}gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if backend == "vllm":
        if device != "auto":
            from inference.generation.vllm_backend import vllm_cpu_build, vllm_device_refusal

            refusal = vllm_device_refusal(device, vllm_cpu_build())
            if refusal:
                raise ConfigError(f"{prefix}device={device!r} with backend vllm: {refusal}")
    elif is_set:
        raise ConfigError(f"{prefix}gpu_memory_utilization applies to the vllm backend only; remove it or set "
                          f"{prefix}backend: vllm")


def scoring_backend_options(backend: str, gpu_memory_utilization: float) -> dict[str, Any]:
    """`load_scorer`'s backend options: none for transformers (its default), the engine's for vllm."""
    if backend == "transformers":
        return {}
    return {"backend": backend, "gpu_memory_utilization": gpu_memory_utilization}


def powers_of_two(max_n: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to and including the largest power of two <= max_n."""
    values, n = [], 1
    while n <= max_n:
        values.append(n)
        n *= 2
    return tuple(values)


@dataclass(frozen=True)
class SweepConfig:
    """Which strategies run at which budgets N."""

    strategies: tuple[str, ...] = (
        "majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "particle_filtering", "mcts",
        "adaptive_majority",
    )
    """Strategies to run, by registry name."""
    n_values: tuple[int, ...] | None = None
    """Budgets N to run; set this or max_n (a file or the command line that sets one clears the other)."""
    max_n: int | None = 16
    """Run N = 1, 2, 4, ... up to max_n (powers of two); set this or n_values."""
    min_n_by_strategy: dict[str, int] = field(
        default_factory=lambda: {"beam_search": 4, "dvts": 4, "particle_filtering": 4, "mcts": 4, "adaptive_majority": 4},
        metadata={"keyed_values": MIN_N_BY_STRATEGY},
    )
    """Per strategy, the smallest N it runs at (tree search needs N >= beam_width); e.g. {beam_search: 4}."""

    _exclusive = (("n_values", "max_n"),)

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ConfigError("sweep.strategies is empty; name at least one strategy")
        duplicates = sorted({s for s in self.strategies if self.strategies.count(s) > 1})
        if duplicates:
            raise ConfigError(f"sweep.strategies lists {duplicates} more than once; list each strategy once")
        if (self.n_values is None) == (self.max_n is None):
            raise ConfigError(
                f"sweep sets n_values={self.n_values} and max_n={self.max_n}; set exactly one of them"
            )
        if self.n_values is not None:
            if not self.n_values or any(n < 1 for n in self.n_values):
                raise ConfigError(f"sweep.n_values must be integers >= 1, got {list(self.n_values)}")
            if len(set(self.n_values)) != len(self.n_values):
                raise ConfigError(f"sweep.n_values lists a value twice: {list(self.n_values)}")
        if self.max_n is not None and self.max_n < 1:
            raise ConfigError(f"sweep.max_n must be >= 1, got {self.max_n}")
        for name, min_n in self.min_n_by_strategy.items():
            if min_n < 1:
                raise ConfigError(f"sweep.min_n_by_strategy.{name} must be >= 1, got {min_n}")

    def budgets(self) -> tuple[int, ...]:
        """All N values of the sweep, ascending."""
        return tuple(sorted(self.n_values)) if self.n_values is not None else powers_of_two(self.max_n or 1)

    def budgets_for(self, strategy: str) -> tuple[int, ...]:
        """The N values `strategy` runs at: the sweep's, from its min_n_by_strategy entry up."""
        min_n = self.min_n_by_strategy.get(strategy, 1)
        return tuple(n for n in self.budgets() if n >= min_n)


# --------------------------------------------------------------------------- the subcommand configs


@dataclass(frozen=True)
class RunConfig:
    """`ttc-infer run`: run a sweep of strategies x budgets on a benchmark and append result rows."""

    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    """Which problems to run on."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The policy model and its generation backend."""
    prm: PRMConfig = field(default_factory=PRMConfig)
    """The process reward model."""
    sweep: SweepConfig = field(default_factory=SweepConfig)
    """Which strategies run at which budgets N."""
    strategies: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"beam_search": {"beam_width": 4}, "dvts": {"beam_width": 4}},
        metadata={"keyed_settings": STRATEGY_SETTINGS},
    )
    """Per-strategy settings, `strategies.<name>.<setting>`, checked against that strategy's Settings fields
    (n and seed come from the sweep and the run)."""
    output_dir: str = "runs/default/infer"
    """Directory for results.jsonl (or results.shard-i-of-k.jsonl) and the resolved config."""
    run_name: str | None = None
    """Name of the run in logs and reports; null uses the output directory's name."""
    seed: int = 0
    """Seed of the run: the policy backend's seed stream and every strategy's seed."""
    shard: str | None = None
    """Run only shard `i/k` of the problems (0-based i < k; problem j goes to shard j mod k); null runs all."""
    chunk_size: int = 16
    """Problems per strategy call; each chunk's rows are appended at once, so it is also the resume unit."""
    share_samples: bool = True
    """Let majority, best_of_n and weighted_best_of_n with equal sampling settings share one set of samples
    per problem (generated once at the largest N; smaller N use the first N); token counters stay exact,
    `seconds` of the sharing rows counts only their own (replay) time. The shared samples are also written to
    samples.jsonl beside the results."""
    samples_from: str | None = None
    """An earlier run's output directory (its samples*.jsonl) or samples file, of the same policy: the sampling
    strategies score its samples wherever problem, sampling settings, seed and N match, instead of drawing them
    again (several PRMs compared on the very same solutions, each run's token counters as if it had drawn them),
    and draw the rest. Needs share_samples."""

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ConfigError("output_dir is empty; set a directory for the results")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.shard is not None:
            parse_shard(self.shard)
        if self.samples_from is not None and not self.share_samples:
            raise ConfigError("samples_from needs share_samples: true (the replayed samples feed the shared sample "
                              "pool); turn share_samples on or drop samples_from")
        from inference.strategies import STRATEGIES

        for name in self.sweep.strategies:
            if name not in STRATEGIES:
                raise ConfigError(unknown_message(f"sweep.strategies: strategy {name!r}", name, STRATEGIES))
        if self.samples_from is not None:
            from inference.strategies import is_subsampled

            if not any(is_subsampled(name) for name in self.sweep.strategies):
                sharing = ", ".join(name for name in STRATEGIES if is_subsampled(name))
                raise ConfigError(f"samples_from feeds the sampling strategies that share samples ({sharing}); the "
                                  "sweep runs none of them: drop samples_from or add one")
        for key, names in (("strategies", self.strategies), ("sweep.min_n_by_strategy", self.sweep.min_n_by_strategy)):
            for name in names:
                if name not in STRATEGIES:
                    raise ConfigError(unknown_message(f"{key}.{name}: unknown strategy {name!r}", name, STRATEGIES))
        for name in self.sweep.strategies:
            budgets = self.sweep.budgets_for(name)
            if not budgets:
                raise ConfigError(
                    f"strategy {name!r} has no budget: sweep N values {list(self.sweep.budgets())} are all below "
                    f"sweep.min_n_by_strategy.{name}={self.sweep.min_n_by_strategy.get(name)}; lower it or raise N"
                )
            for n in budgets:
                try:
                    self.settings_for(name, n)
                except ValueError as error:
                    raise ConfigError(f"strategies.{name} at N={n}: {error}") from None

    @property
    def name(self) -> str:
        """run_name, or the output directory's name."""
        return self.run_name or Path(self.output_dir).name

    def settings_for(self, strategy: str, n: int) -> Any:
        """The strategy's Settings at budget `n`: its section's values, plus n and the run's seed."""
        from inference.strategies import make_settings

        return make_settings(strategy, {**self.strategies.get(strategy, {}), "n": n, "seed": self.seed})

    def unused_strategy_sections(self) -> list[str]:
        """Strategy sections (and min_n entries) for strategies the sweep does not run."""
        swept = set(self.sweep.strategies)
        unused = [f"strategies.{name}" for name in self.strategies if name not in swept]
        unused += [f"sweep.min_n_by_strategy.{name}" for name in self.sweep.min_n_by_strategy if name not in swept]
        return unused


@dataclass(frozen=True)
class MergeConfig:
    """`ttc-infer merge`: merge result files (e.g. shards) into one, dropping exact duplicates."""

    inputs: tuple[str, ...] = ()
    """Result files, glob patterns, or directories (each contributes its results*.jsonl)."""
    out: str = ""
    """The merged results file to write (replaced atomically)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("merge needs --inputs: result files, globs or directories")
        if not self.out:
            raise ConfigError("merge needs --out: the merged results file to write")


def parse_shard(shard: str) -> tuple[int, int]:
    """`"i/k"` -> (i, k) with 0 <= i < k; anything else raises naming the rule and an example."""
    parts = str(shard).split("/")
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        index, count = None, None
    if index is None or count is None:
        raise ConfigError(f"shard={shard!r} is not 'i/k'; write e.g. --shard 0/4 (shards are numbered from 0)")
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard={shard!r}: need 0 <= i < k (shards are numbered from 0); e.g. --shard 0/4 ... 3/4")
    return index, count
