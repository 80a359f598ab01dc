"""Config dataclasses of the `ttc-infer` subcommands, filled from a YAML file and overridden by CLI flags."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from data_prep.benchmarks import SYNTHETIC_NUM_PER_LEVEL
from data_prep.steps import SYSTEM_PROMPT

SHIPPED_POLICY = "checkpoints/policy-small"
"""The tiny policy checkpoint shipped with the repository."""

RESERVED_STRATEGY_KEYS: dict[str, str] = {
    "n": "N comes from the sweep; set sweep.n_values or sweep.max_n",
    "seed": "the seed is the run's; set the top-level seed",
}
"""Strategy Settings fields that the runner fills in, so a strategy section may not set them."""

BENCHMARK_NAMES_WITH_PATH = ("math500", "gsm8k")


class ConfigError(ValueError):
    """A config file or flag breaks a rule; the message names the key, where it came from, and the fix."""


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
    fields: dict[str, str] | None = None
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
            from data_prep.benchmarks import FieldMapping

            known = [f.name for f in dataclasses.fields(FieldMapping)]
            for key in self.fields:
                if key not in known:
                    raise ConfigError(_unknown_message(f"benchmark.fields: key '{key}'", key, known))
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
            from data_prep.benchmarks import FieldMapping

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
    """Generation backend: `transformers` (CPU or GPU) or `vllm` (GPU, needs the vllm extra)."""
    dtype: DType = "auto"
    """Weights dtype; `auto` is bfloat16 on CUDA and float32 on CPU."""
    device: Device = "cpu"
    """transformers only: `cpu`, `cuda`, or `auto` (CUDA when available); the vllm backend needs cuda or auto."""
    batch_size: int = 64
    """transformers only: most sequences (requests x n) per `model.generate` call."""
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
    trust_remote_code: bool = False
    """Allow model code from the checkpoint directory."""

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise ConfigError("policy.model_name_or_path is empty; set it to a checkpoint directory")
        if self.batch_size < 1:
            raise ConfigError(f"policy.batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"policy.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"policy.max_model_len must be >= 1 or null, got {self.max_model_len}")
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"policy.tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        defaults = PolicyConfig.__dataclass_fields__
        if self.backend == "vllm":
            if self.device not in ("auto", "cuda"):
                raise ConfigError(
                    f"policy.device={self.device!r} with backend vllm; vLLM runs on CUDA, set device: cuda"
                )
            if self.batch_size != defaults["batch_size"].default:
                raise ConfigError("policy.batch_size applies to the transformers backend only; vLLM batches itself")
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
        }
        if self.backend == "transformers":
            options.update(device=self.device, batch_size=self.batch_size)
        else:
            options.update(
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
                tensor_parallel_size=self.tensor_parallel_size,
            )
        return options


PRMStyleName = Literal["token_classification", "chat_plus_minus", "step_tag", "lm_likelihood"]


@dataclass(frozen=True)
class PRMConfig:
    """The process reward model."""

    path: str = "runs/default/prm-oracle"
    """PRM checkpoint directory (a `ttc_prm.json` in it gives its style) or a cached hub id; `synthetic-checker` is
    the synthetic world's exact step checker instead of a model (a perfect verifier: the ceiling of search)."""
    prm_style: PRMStyleName | None = None
    """How the PRM reads steps; null reads it from the checkpoint's `ttc_prm.json` (public PRMs need it set).
    `lm_likelihood` reads a plain causal LM (e.g. a larger policy) as verifier: a step scores the smallest
    probability it gives any of the step's tokens (aggregate with min)."""
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

    strategies: tuple[str, ...] = ("majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts")
    """Strategies to run, by registry name."""
    n_values: tuple[int, ...] | None = None
    """Budgets N to run; set this or max_n (a file or the command line that sets one clears the other)."""
    max_n: int | None = 16
    """Run N = 1, 2, 4, ... up to max_n (powers of two); set this or n_values."""
    min_n_by_strategy: dict[str, int] = field(default_factory=lambda: {"beam_search": 4, "dvts": 4})
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
        default_factory=lambda: {"beam_search": {"beam_width": 4}, "dvts": {"beam_width": 4}}
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
    `seconds` of the sharing rows counts only their own (replay) time."""

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ConfigError("output_dir is empty; set a directory for the results")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.shard is not None:
            parse_shard(self.shard)
        from inference.strategies import STRATEGIES

        for name in self.sweep.strategies:
            if name not in STRATEGIES:
                raise ConfigError(_unknown_message(f"sweep.strategies: strategy {name!r}", name, STRATEGIES))
        for key, names in (("strategies", self.strategies), ("sweep.min_n_by_strategy", self.sweep.min_n_by_strategy)):
            for name in names:
                if name not in STRATEGIES:
                    raise ConfigError(_unknown_message(f"{key}.{name}: unknown strategy {name!r}", name, STRATEGIES))
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


# --------------------------------------------------------------------------- documentation from the source


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for statement, following in zip(body, body[1:]):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


# --------------------------------------------------------------------------- YAML loading


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; malformed YAML raises ConfigError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing YAML file to --config")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{line}: malformed YAML ({problem}); fix the syntax at that line") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- building a config from layers


NO_FILE = "<no config file>"


class CliValue(str):
    """A value typed on the command line (text to convert by the field's type, not YAML)."""


_NONE_WORDS = {"null", "none", "~"}
_TRUE_WORDS = {"true", "yes", "on", "1"}
_FALSE_WORDS = {"false", "no", "off", "0"}


def _unknown_message(what: str, key: str, known: Mapping[str, Any] | Sequence[str]) -> str:
    names = list(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{what} is not known{hint} Known: {', '.join(names)}"


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` checked (YAML) or converted (CliValue text) against the type hint `hint`; errors name `where`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _cli_scalar(value) if isinstance(value, CliValue) else value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args:
            if value is None or (isinstance(value, CliValue) and value.strip().lower() in _NONE_WORDS):
                return None
        errors = []
        for option in options:
            try:
                return coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_type_name(hint)}")
    if isinstance(value, list) and all(isinstance(v, CliValue) for v in value) and origin not in (tuple, list):
        if len(value) != 1:
            raise ConfigError(f"{where}: takes one value, got {len(value)}: {' '.join(value)}")
        value = value[0]
    if origin is Literal:
        text = value.strip() if isinstance(value, CliValue) else value
        if text in args:
            return text
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
    if origin in (tuple, list):
        item_hint = args[0] if args else Any
        if isinstance(value, CliValue):
            value = [value]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], CliValue):
            text = value[0].strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            parts = text.split(",") if "," in text or not text else [text]
            value = [CliValue(part.strip()) for part in parts if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [coerce(item, item_hint, f"{where}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, CliValue):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_hint, item_hint = args if args else (Any, Any)
        return {coerce(k, key_hint, where): coerce(v, item_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{where}: expected text, got {value!r} ({type(value).__name__}); quote it in YAML")
    if hint is bool:
        if isinstance(value, CliValue):
            word = value.strip().lower()
            if word in _TRUE_WORDS | _FALSE_WORDS:
                return word in _TRUE_WORDS
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, CliValue):
            try:
                return int(value.strip())
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, CliValue):
            try:
                return float(value.strip())
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        hint_text = " (YAML reads 1e-3 as text; write 1.0e-3)" if isinstance(value, str) else ""
        raise ConfigError(f"{where}: expected a number, got {value!r}{hint_text}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(hint)}")


def _cli_scalar(value: CliValue) -> Any:
    """A CLI value for an untyped slot: YAML scalar rules (`4` is an int, `true` a bool, `x` text)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return str(value)


@dataclass
class Layers:
    """Config values by source: the YAML file's nested mapping, and CLI flags as dotted keys."""

    file_data: dict[str, Any] = field(default_factory=dict)
    file_name: str = NO_FILE
    cli: dict[str, Any] = field(default_factory=dict)
    """Dotted key -> CliValue (or list of CliValue for list fields)."""

    def sources(self) -> str:
        """`file: `, `file + command line: `, `command line: ` or `` (defaults only), to prefix a rule's message."""
        names = [self.file_name] if self.file_name != NO_FILE else []
        names += ["command line"] if self.cli else []
        return f"{' + '.join(names)}: " if names else ""

    def origin(self, dotted: str, from_cli: bool) -> str:
        return f"command line (--{dotted})" if from_cli else self.file_name


def _cli_section(cli: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The CLI entries under `prefix.` with the prefix removed."""
    start = prefix + "."
    return {key[len(start):]: value for key, value in cli.items() if key.startswith(start)}


def _dict_value_hint(hint: Any) -> Any | None:
    """The value type of a `dict[str, X]` (or `dict[str, X] | None`) hint; None for other hints."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is dict:
            return typing.get_args(candidate)[1]
    return None


def default_value(spec: dataclasses.Field) -> Any:
    """A dataclass field's default (calling its default_factory)."""
    if spec.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return spec.default_factory()  # type: ignore[misc]
    return spec.default


def _check_known(cls: type, file_data: Mapping[str, Any], cli: Mapping[str, Any], layers: Layers, prefix: str) -> None:
    """Every YAML key and CLI flag under `prefix` must be a field of `cls`."""
    if not isinstance(file_data, Mapping):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{layers.file_name}: '{where}' must be a mapping, got {file_data!r}")
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in file_data:
        if key not in known:
            raise ConfigError(_unknown_message(f"{layers.file_name}: key '{prefix}{key}'", str(key), known))
    for dotted in cli:
        key = dotted.split(".", 1)[0]
        if key not in known:
            raise ConfigError(_unknown_message(f"command line: flag --{prefix}{key}", key, known))


def _field_value(spec: dataclasses.Field, hint: Any, file_data: Mapping[str, Any], cli: Mapping[str, Any],
                 layers: Layers, dotted: str) -> Any:
    """One scalar, list or mapping field: CLI value, else YAML value, else default; `--a.b.key` flags merge
    into a mapping field."""
    name = spec.name
    value_hint = _dict_value_hint(hint)
    nested = _cli_section(cli, name)
    if nested and value_hint is None:
        raise ConfigError(f"command line: flag --{dotted}.{next(iter(nested))} is not known; {dotted} has no keys")
    if name in cli:
        value = coerce(cli[name], hint, layers.origin(dotted, True))
    elif name in file_data:
        value = coerce(file_data[name], hint, f"{layers.file_name}: {dotted}")
    elif not nested:
        return _MISSING
    else:
        value = default_value(spec)
    if nested:
        value = dict(value or {})
        for key, raw in nested.items():
            value[key] = coerce(raw, value_hint, layers.origin(f"{dotted}.{key}", True))
    return value


def build_dataclass(cls: type, file_data: Mapping[str, Any], cli: Mapping[str, Any], layers: Layers,
                    prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a YAML mapping and CLI dotted entries (CLI over YAML over defaults)."""
    _check_known(cls, file_data, cli, layers, prefix)
    file_data, cli = _apply_exclusive(cls, dict(file_data), dict(cli))
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in (f for f in dataclasses.fields(cls) if f.init):
        name, hint, dotted = spec.name, hints[spec.name], prefix + spec.name
        if dataclasses.is_dataclass(hint):
            if name in cli:
                raise ConfigError(f"command line: --{dotted} is a section; set its keys, e.g. --{dotted}.<key> VALUE")
            section = file_data.get(name, {}) or {}
            values[name] = build_dataclass(hint, section, _cli_section(cli, name), layers, dotted + ".")
        elif cls is RunConfig and name == "strategies":
            if name in cli:  # a bare --strategies VALUE would otherwise be dropped without a word
                raise ConfigError(
                    "command line: --strategies is a section; set one setting per flag, "
                    "e.g. --strategies.beam_search.beam_width 4"
                )
            values[name] = _build_strategies(file_data.get(name, _MISSING), _cli_section(cli, name), layers)
        else:
            value = _field_value(spec, hint, file_data, cli, layers, dotted)
            if value is not _MISSING:
                values[name] = value
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{layers.sources()}{error}") from None


_MISSING = object()


def _apply_exclusive(cls: type, file_data: dict, cli: dict) -> tuple[dict, dict]:
    """For field groups where one source sets exactly one member (n_values / max_n), that source's choice wins."""
    for group in getattr(cls, "_exclusive", ()):
        if any(key in cli for key in group):
            for key in group:
                file_data.pop(key, None)
                cli.setdefault(key, None)
        elif any(key in file_data for key in group):
            for key in group:
                file_data.setdefault(key, None)
    return file_data, cli


def _build_strategies(file_value: Any, cli: Mapping[str, Any], layers: Layers) -> dict[str, dict[str, Any]]:
    """The `strategies` section: each named strategy's keys checked and converted by its Settings fields."""
    from inference.strategies import STRATEGIES

    if file_value is _MISSING:
        base: dict[str, Any] = RunConfig.__dataclass_fields__["strategies"].default_factory()  # type: ignore[misc]
        base_origin = "the default config"
    else:
        base = file_value or {}
        base_origin = layers.file_name
        if not isinstance(base, Mapping):
            raise ConfigError(f"{layers.file_name}: 'strategies' must map strategy names to settings, got {base!r}")
    result: dict[str, dict[str, Any]] = {}
    entries: list[tuple[str, str, Any, str]] = []
    for name, section in base.items():
        if not isinstance(section, Mapping):
            raise ConfigError(f"{base_origin}: strategies.{name} must be a mapping of settings, got {section!r}")
        result.setdefault(str(name), {})
        entries += [
            (str(name), str(key), value, f"{base_origin}: strategies.{name}.{key}") for key, value in section.items()
        ]
    for dotted, value in cli.items():
        if "." not in dotted:
            raise ConfigError(
                f"command line: --strategies.{dotted} is a section; set its keys, e.g. --strategies.{dotted}.<key> V"
            )
        name, key = dotted.split(".", 1)
        result.setdefault(name, {})
        entries.append((name, key, value, layers.origin(f"strategies.{dotted}", True)))
    for name in result:
        if name not in STRATEGIES:
            origin = base_origin if name in base else "command line"
            raise ConfigError(_unknown_message(f"{origin}: strategies.{name}: strategy '{name}'", name, STRATEGIES))
    for name, key, value, where in entries:
        settings_cls = STRATEGIES[name].settings
        fields = [f.name for f in dataclasses.fields(settings_cls)]
        if key in RESERVED_STRATEGY_KEYS:
            raise ConfigError(f"{where}: '{key}' cannot be set per strategy ({RESERVED_STRATEGY_KEYS[key]})")
        if key not in fields:
            allowed = [f for f in fields if f not in RESERVED_STRATEGY_KEYS]
            raise ConfigError(_unknown_message(f"{where}: '{key}' for strategy {name!r}", key, allowed))
        hint = typing.get_type_hints(settings_cls)[key]
        result[name][key] = coerce(value, hint, where)
    return result


def parse_config(cls: type, config_path: str | Path | None, cli: Mapping[str, Any]) -> Any:
    """Build config dataclass `cls` from an optional YAML file and CLI dotted overrides (CliValue values)."""
    layers = Layers(cli=dict(cli))
    if config_path is not None:
        layers.file_data = load_yaml(config_path)
        layers.file_name = str(config_path)
    try:
        return build_dataclass(cls, layers.file_data, layers.cli, layers)
    except ConfigError:
        raise
    except ValueError as error:  # a section's own validation (e.g. FieldMapping) without location
        raise ConfigError(f"{layers.sources()}{error}") from None


def to_plain(config: Any) -> Any:
    """A config as plain YAML-able data (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_plain(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init}
    if isinstance(config, Mapping):
        return {str(k): to_plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_plain(v) for v in config]
    return config


def dump_config(config: Any) -> str:
    """The resolved config as YAML that `--config` reads back to an equal config."""
    return yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True, width=100)
