"""Config parsing of `ttc-infer run`: YAML defaults, CLI overrides, strict keys and types, file/line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.config import (
    CliValue,
    ConfigError,
    MergeConfig,
    RunConfig,
    dump_config,
    field_docs,
    parse_config,
    parse_shard,
    powers_of_two,
)

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "infer"


def cli(**pairs: str | list[str]) -> dict:
    """CLI overrides as the parser hands them over: dotted keys -> CliValue (or lists of them)."""
    return {
        key.replace("__", "."): [CliValue(v) for v in value] if isinstance(value, list) else CliValue(value)
        for key, value in pairs.items()
    }


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tiny_yaml_is_the_embedded_default():
    assert parse_config(RunConfig, CONFIGS / "tiny.yaml", {}) == RunConfig()


@pytest.mark.parametrize("name", ["tiny.yaml", "math500_llama1b_vllm.yaml", "math500_llama3b_vllm.yaml",
                                  "gsm8k_llama1b.yaml", "math500_tiny_random.yaml"])
def test_shipped_configs_parse_and_dump_round_trips(name, tmp_path):
    config = parse_config(RunConfig, CONFIGS / name, {})
    dumped = write(tmp_path, dump_config(config))
    assert parse_config(RunConfig, dumped, {}) == config


def test_reference_config_values():
    config = parse_config(RunConfig, CONFIGS / "math500_llama1b_vllm.yaml", {})
    assert config.policy.backend == "vllm"
    assert config.policy.model_name_or_path == "meta-llama/Llama-3.2-1B-Instruct"
    assert config.policy.gpu_memory_utilization == 0.4
    assert config.prm.prm_style == "chat_plus_minus"
    assert config.sweep.budgets() == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert config.sweep.budgets_for("beam_search") == (4, 8, 16, 32, 64, 128, 256)
    best = config.settings_for("best_of_n", 256)
    assert (best.temperature, best.max_tokens, best.n, best.seed) == (0.8, 2048, 256, 0)
    assert config.settings_for("dvts", 8).beam_width == 4


def test_cli_overrides_yaml_and_defaults(tmp_path):
    path = write(tmp_path, "policy:\n  batch_size: 8\n  dtype: float32\nseed: 3\n")
    config = parse_config(RunConfig, path, cli(policy__batch_size="4", strategies__beam_search__beam_width="2"))
    assert config.policy.batch_size == 4  # CLI beats YAML
    assert config.policy.dtype == "float32"  # YAML beats default
    assert config.policy.device == "cpu"  # default
    assert config.seed == 3
    assert config.strategies["beam_search"] == {"beam_width": 2}
    assert config.settings_for("beam_search", 4).beam_width == 2
    assert config.settings_for("beam_search", 4).seed == 3


def test_cli_dotted_key_merges_into_a_yaml_strategy_section(tmp_path):
    path = write(tmp_path, "strategies:\n  best_of_n:\n    temperature: 0.5\n    max_tokens: 64\n")
    config = parse_config(RunConfig, path, cli(strategies__best_of_n__max_tokens="32"))
    assert config.strategies == {"best_of_n": {"temperature": 0.5, "max_tokens": 32}}


def test_list_flags_accept_separate_values_commas_and_brackets():
    for value in (["1", "4", "8"], "1,4,8", "[1, 4, 8]"):
        config = parse_config(RunConfig, None, cli(sweep__n_values=value))
        assert config.sweep.n_values == (1, 4, 8)
        assert config.sweep.budgets_for("beam_search") == (4, 8)


def test_n_values_and_max_n_later_source_wins(tmp_path):
    path = write(tmp_path, "sweep:\n  n_values: [4, 8]\n")
    from_file = parse_config(RunConfig, path, {})
    assert (from_file.sweep.n_values, from_file.sweep.max_n) == ((4, 8), None)
    from_cli = parse_config(RunConfig, path, cli(sweep__max_n="32"))
    assert from_cli.sweep.budgets() == (1, 2, 4, 8, 16, 32)
    both = write(tmp_path, "sweep:\n  n_values: [4, 8]\n  max_n: 8\n", "both.yaml")
    with pytest.raises(ConfigError, match="set exactly one"):
        parse_config(RunConfig, both, {})


def test_unknown_yaml_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "policy:\n  model_name_or_path: x\n  batch_sise: 4\n")
    with pytest.raises(ConfigError) as error:
        parse_config(RunConfig, path, {})
    message = str(error.value)
    assert str(path) in message and "policy.batch_sise" in message and "did you mean 'batch_size'" in message


def test_unknown_top_level_yaml_key(tmp_path):
    path = write(tmp_path, "output_dri: x\n")
    with pytest.raises(ConfigError, match=r"run.yaml: key 'output_dri' is not known; did you mean 'output_dir'"):
        parse_config(RunConfig, path, {})


def test_unknown_cli_key_names_the_flag():
    with pytest.raises(ConfigError, match=r"command line: flag --policy\.batch_sise is not known"):
        parse_config(RunConfig, None, cli(policy__batch_sise="4"))
    with pytest.raises(ConfigError, match=r"flag --nonsense is not known"):
        parse_config(RunConfig, None, cli(nonsense="1"))


@pytest.mark.parametrize("strategy", ["best_of_n", "majority", "weighted_best_of_n"])
def test_beam_only_key_under_a_sampling_strategy_fails(tmp_path, strategy):
    path = write(tmp_path, f"strategies:\n  {strategy}:\n    beam_width: 4\n")
    with pytest.raises(ConfigError) as error:
        parse_config(RunConfig, path, {})
    assert f"strategies.{strategy}.beam_width: 'beam_width' for strategy '{strategy}' is not known" in str(error.value)
    assert str(path) in str(error.value)


def test_beam_only_key_on_the_command_line_fails():
    with pytest.raises(ConfigError, match=r"--strategies\.best_of_n\.lookahead\).*'lookahead' for strategy 'best_of_n'"):
        parse_config(RunConfig, None, cli(strategies__best_of_n__lookahead="1"))


@pytest.mark.parametrize("section", ["beam_serch:\n    beam_width: 4\n", "beam_serch: {}\n"])
def test_unknown_strategy_section_fails(tmp_path, section):
    path = write(tmp_path, "strategies:\n  " + section)
    with pytest.raises(ConfigError, match=r"run.yaml: strategies.beam_serch: strategy 'beam_serch' is not known; "
                                          r"did you mean 'beam_search'"):
        parse_config(RunConfig, path, {})
    with pytest.raises(ConfigError, match=r"command line: strategies.dvt: strategy 'dvt' is not known"):
        parse_config(RunConfig, None, cli(strategies__dvt__beam_width="2"))


@pytest.mark.parametrize("key", ["n", "seed"])
def test_reserved_strategy_keys_fail(tmp_path, key):
    path = write(tmp_path, f"strategies:\n  best_of_n:\n    {key}: 4\n")
    with pytest.raises(ConfigError, match=f"'{key}' cannot be set per strategy"):
        parse_config(RunConfig, path, {})


def test_n_that_a_strategy_rejects_names_strategy_and_n():
    with pytest.raises(ConfigError, match=r"strategies.beam_search at N=6: n=6 is not a multiple of beam_width=4"):
        parse_config(RunConfig, None, cli(sweep__n_values=["4", "6"]))


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "policy:\n  batch_size: 4\n  dtype: [float32\nseed: 1\n")
    with pytest.raises(ConfigError) as error:
        parse_config(RunConfig, path, {})
    assert f"{path}:4: malformed YAML" in str(error.value)


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = write(tmp_path, "seed: 1\nchunk_size: 4\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"run.yaml:3: malformed YAML \(duplicate key 'seed' \(first at line 1\)\)"):
        parse_config(RunConfig, path, {})


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file /nonexistent.yaml not found"):
        parse_config(RunConfig, "/nonexistent.yaml", {})


@pytest.mark.parametrize(
    "text, message",
    [
        ("benchmark:\n  limit: ten\n", "benchmark.limit: expected an integer, got 'ten'"),
        ("policy:\n  batch_size: true\n", "policy.batch_size: expected an integer, got True"),
        ("policy:\n  backend: tensorrt\n", "policy.backend: 'tensorrt' is not one of 'transformers', 'vllm'"),
        ("share_samples: 1\n", "share_samples: expected true or false, got 1"),
        ("policy: cpu\n", "'policy' must be a mapping"),
        ("strategies:\n  dvts:\n    temperature: 1e-3\n", "YAML reads 1e-3 as text"),
    ],
)
def test_type_errors_name_key_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_config(RunConfig, write(tmp_path, text), {})


def test_cli_values_are_converted_by_field_type():
    config = parse_config(
        RunConfig,
        None,
        cli(
            benchmark__limit="10",
            policy__system_prompt="null",
            share_samples="false",
            strategies__dvts__temperature="1e-3",
            prm__name="123",
        ),
    )
    assert config.benchmark.limit == 10
    assert config.policy.system_prompt is None
    assert config.share_samples is False
    assert config.strategies["dvts"]["temperature"] == 0.001
    assert config.prm.name == "123"  # a text field keeps digits as text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"policy.backend": "vllm"}, "policy.device='cpu' with backend vllm"),
        ({"policy.max_model_len": "4096"}, "policy.max_model_len applies to the vllm backend only"),
        ({"benchmark.name_or_path": "math500", "benchmark.num_per_level": "3"}, "num_per_level applies to synthetic-test only"),
        ({"benchmark.path": "x.jsonl"}, "benchmark.path applies to math500 and gsm8k only"),
        ({"chunk_size": "0"}, "chunk_size must be >= 1, got 0"),
        ({"prm.prefix_cache_gib": "-1"}, "prm.prefix_cache_gib must be >= 0"),
        ({"shard": "4/4"}, "need 0 <= i < k"),
        ({"sweep.strategies": "majority,majority"}, "lists ['majority'] more than once"),
        ({"sweep.strategies": "beam"}, "strategy 'beam' is not known"),
        ({"sweep.max_n": "2"}, "strategy 'beam_search' has no budget"),
    ],
)
def test_cross_field_rules(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        parse_config(RunConfig, None, {k: CliValue(v) for k, v in overrides.items()})


def test_sections_for_strategies_outside_the_sweep_are_reported():
    config = parse_config(RunConfig, None, cli(sweep__strategies="majority"))
    assert config.unused_strategy_sections() == [
        "strategies.beam_search", "strategies.dvts",
        *(f"sweep.min_n_by_strategy.{name}" for name in
          ("beam_search", "dvts", "particle_filtering", "mcts", "adaptive_majority")),
    ]


def test_benchmark_loader_options():
    assert RunConfig().benchmark.loader_options() == {"num_per_level": 20}
    config = parse_config(RunConfig, None, cli(benchmark__name_or_path="p.jsonl", benchmark__fields__problem="question",
                                               benchmark__source="mine", benchmark__num_per_level="null"))
    options = config.benchmark.loader_options()
    assert options["fields"].problem == "question" and options["fields"].answer == "answer"
    assert options["source"] == "mine"


def test_policy_generator_options_hold_only_the_backends_own():
    config = parse_config(RunConfig, CONFIGS / "math500_llama1b_vllm.yaml", {})
    options = config.policy.generator_options(seed=7)
    assert options == {
        "dtype": "bfloat16", "seed": 7, "system_prompt": config.policy.system_prompt, "trust_remote_code": False,
        "chat_template": None, "prompt_date": "26 Jul 2024", "device": "cuda", "gpu_memory_utilization": 0.4,
        "max_model_len": 4096, "tensor_parallel_size": 1,
    }
    assert set(RunConfig().policy.generator_options(0)) == {
        "dtype", "seed", "system_prompt", "trust_remote_code", "chat_template", "prompt_date", "device", "batch_size",
        "kv_reuse_bytes",
    }
    assert RunConfig().policy.generator_options(0)["kv_reuse_bytes"] == 2**29
    with pytest.raises(ConfigError, match="policy.kv_reuse_gib must be >= 0"):
        parse_config(RunConfig, None, {"policy.kv_reuse_gib": CliValue("-1")})
    with pytest.raises(ConfigError, match="policy.kv_reuse_gib applies to the transformers backend only"):
        parse_config(RunConfig, None, {"policy.backend": CliValue("vllm"), "policy.device": CliValue("auto"),
                                       "policy.kv_reuse_gib": CliValue("0")})


@pytest.mark.parametrize("shard, expected", [("0/1", (0, 1)), ("3/4", (3, 4)), (" 2/8", (2, 8))])
def test_parse_shard(shard, expected):
    assert parse_shard(shard) == expected


@pytest.mark.parametrize("shard", ["4/4", "-1/4", "1/0", "a/b", "1", "1/2/3"])
def test_parse_shard_rejects(shard):
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(shard)


def test_powers_of_two():
    assert powers_of_two(1) == (1,)
    assert powers_of_two(100) == (1, 2, 4, 8, 16, 32, 64)


def test_every_config_field_has_a_docstring():
    from inference.config import BenchmarkConfig, PolicyConfig, PRMConfig, SweepConfig

    for cls in (RunConfig, BenchmarkConfig, PolicyConfig, PRMConfig, SweepConfig, MergeConfig):
        docs = field_docs(cls)
        missing = [f for f in cls.__dataclass_fields__ if f not in docs]
        assert missing == [], f"{cls.__name__} fields without a docstring: {missing}"


def test_merge_config_needs_inputs_and_out():
    with pytest.raises(ConfigError, match="merge needs --inputs"):
        parse_config(MergeConfig, None, {"out": CliValue("x.jsonl")})
    config = parse_config(MergeConfig, None, {"inputs": [CliValue("a.jsonl"), CliValue("b/")], "out": CliValue("m.jsonl")})
    assert config.inputs == ("a.jsonl", "b/")


def test_unknown_benchmark_field_mapping_key():
    with pytest.raises(ConfigError, match="benchmark.fields: key 'problm' is not known; did you mean 'problem'"):
        parse_config(RunConfig, None, cli(benchmark__name_or_path="p.jsonl", benchmark__fields__problm="q"))


def test_keyed_settings_hook_checks_any_field_that_carries_it(tmp_path):
    from tests.unit.cli.test_cli import HookedConfig, Knob

    path = write(tmp_path, "knobs:\n  left:\n    level: 3\n")
    config = parse_config(HookedConfig, path, cli(knobs__right__level="5", limits__high="9"))
    assert config.knobs == {"left": {"level": 3}, "right": {"level": 5}}
    assert config.limits == {"low": 2, "high": 9} and Knob(**config.knobs["left"]).level == 3
    with pytest.raises(ConfigError, match=r"knobs.left.seed: 'seed' cannot be set per name \(the caller's\)"):
        parse_config(HookedConfig, write(tmp_path, "knobs:\n  left:\n    seed: 1\n"), {})
    with pytest.raises(ConfigError, match=r"command line: knobs.lft: name 'lft' is not known; did you mean 'left'"):
        parse_config(HookedConfig, None, cli(knobs__lft__level="1"))
    with pytest.raises(ConfigError, match=r"\(--knobs.left.levl\): 'levl' for name 'left' is not known; did you mean"):
        parse_config(HookedConfig, None, cli(knobs__left__levl="1"))
    with pytest.raises(ConfigError, match=r"--knobs.left.level\): expected an integer"):
        parse_config(HookedConfig, None, cli(knobs__left__level="x"))


def test_reference_configs_prompt_as_search_and_learn_does():
    from data_prep.steps import SYSTEM_PROMPT, extract_boxed_answer, split_steps

    prompts = {parse_config(RunConfig, CONFIGS / name, {}).policy.system_prompt
               for name in ("math500_llama1b_vllm.yaml", "math500_llama3b_vllm.yaml")}
    (prompt,) = prompts  # the 1B and 3B runs share one prompt
    assert prompt != SYSTEM_PROMPT and prompt.startswith("Solve the following math problem efficiently and clearly:")
    assert "Therefore, the final answer is: $\\boxed{answer}$. I hope it is correct." in prompt
    # A solution in the format it asks for splits into its steps and yields its boxed answer.
    solution = ("## Step 1: Add\n2 + 3 = 5\n\n## Step 2: Check\n5 is odd\n\n"
                "Therefore, the final answer is: $\\boxed{5}$. I hope it is correct.")
    assert len(split_steps(solution)) == 3 and extract_boxed_answer(solution) == "5"
