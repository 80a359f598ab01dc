"""Policy backend on vLLM's offline `LLM` engine (optional extra), with the same completion contract as transformers.

`num_tokens` is `len(output.token_ids)`: every generated token, including the one that completed a stop
string and the EOS token. Stop strings stay in the text (`include_stop_str_in_output=True`) and
`max_tokens` is always set (vLLM's default is 16).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_prep.steps import SYSTEM_PROMPT
from inference.generation.common import (
    DTYPES,
    SeedStream,
    check_choice,
    check_generate_call,
    count_parameters,
    cut_after_first_stop,
)
from inference.prompts import PROMPT_DATE, PromptedBackend
from inference.types import Completion, FinishReason, GenerationRequest, SamplingParams

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "the vllm backend needs vLLM: `pip install -e .[vllm]` on a GPU machine, "
    "or build the CPU venv with scripts/vllm_cpu_env.sh; or use backend 'transformers'"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as error:
        raise ImportError(f"{_INSTALL_HINT} ({error})") from error
    return vllm


def finish_reason_of(output: Any) -> FinishReason:
    """Map a vLLM `CompletionOutput` to ours: a stop string is "stop", EOS or a stop token is "eos"."""
    if output.finish_reason == "length":
        return "length"
    if output.finish_reason == "stop":
        return "stop" if isinstance(output.stop_reason, str) else "eos"
    raise RuntimeError(f"vLLM finished a completion with finish_reason={output.finish_reason!r} (aborted or unfinished)")


class VLLMGenerator(PromptedBackend):
    """A `Generator` on `vllm.LLM`; engine settings here, sampling settings per call."""

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        seed: int = 0,
        system_prompt: str | None = SYSTEM_PROMPT,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        enable_prefix_caching: bool = True,
        chat_template: str | None = None,
        prompt_date: str = PROMPT_DATE,
    ) -> None:
        """Start the engine for `model`.

        gpu_memory_utilization: fraction of GPU memory vLLM may take (leave room for the PRM on the same GPU).
        max_model_len: context length for the KV cache; None takes the model's own.
        seed: engine seed, and the stream that gives each call a seed when `SamplingParams.seed` is None.
        chat_template: used instead of the tokenizer's own template (the tokenizer is not modified).
        prompt_date: the date a template that takes one writes into the prompt (`inference.prompts.PROMPT_DATE`).
        """
        check_choice("dtype", dtype, DTYPES)
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        self._vllm = _import_vllm()
        engine_args: dict[str, Any] = {
            "model": model,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
            "trust_remote_code": trust_remote_code,
            "tensor_parallel_size": tensor_parallel_size,
            "load_format": "safetensors",  # never pickle weights ("auto" falls back to .bin files)
        }
        if max_model_len is not None:
            engine_args["max_model_len"] = max_model_len
        self.llm = self._vllm.LLM(**engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self.system_prompt = system_prompt
        self.chat_template = chat_template
        self.prompt_date = prompt_date
        self.name = Path(str(model).rstrip("/")).name
        self.num_parameters = count_parameters(model, trust_remote_code=trust_remote_code)
        self._seeds = SeedStream(seed)
        self.generate_calls = 0
        """`LLM.generate` calls made so far, for tests and compute accounting."""

    def generate(
        self,
        requests: list[GenerationRequest],
        *,
        n: int,
        params: SamplingParams,
        stop: list[str] | None = None,
    ) -> list[list[Completion]]:
        """n completions per request, in request order, from one `LLM.generate` call."""
        stop = list(stop or [])
        check_generate_call(requests, n, params, stop)
        if not requests:
            return []
        base_seed = self._seeds.next(params.seed)
        # One seed per request: vLLM seeds child i of a request with seed + i, so requests n apart never share
        # a seed and identical prompts in one call still get different samples.
        # vLLM refuses n > 1 with greedy sampling; greedy samples are identical, so decode once and copy.
        engine_n = 1 if params.temperature == 0 else n
        sampling = [
            self._vllm.SamplingParams(
                n=engine_n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_tokens,
                seed=base_seed + index * n,
                stop=stop,
                include_stop_str_in_output=True,
            )
            for index in range(len(requests))
        ]
        prompts = [{"prompt_token_ids": ids} for ids in self.prompt_token_ids(requests)]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        self.generate_calls += 1
        if len(outputs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} prompts")
        completions = [self._completions(output, engine_n, stop) for output in outputs]
        if engine_n == n:
            return completions
        # Greedy: decoded once, copied; the copies ran no tokens.
        return [[one] + [replace(one, forward_tokens=0)] * (n - 1) for (one,) in completions]

    def _completions(self, request_output: Any, n: int, stop: list[str]) -> list[Completion]:
        samples = sorted(request_output.outputs, key=lambda output: getattr(output, "index", 0))
        if len(samples) != n:
            raise RuntimeError(f"vLLM returned {len(samples)} completions for n={n}")
        # vLLM prefills a prompt once for its n samples, less what its prefix cache already held.
        prompt = len(getattr(request_output, "prompt_token_ids", None) or [])
        prefill = max(prompt - 1 - int(getattr(request_output, "num_cached_tokens", None) or 0), 0)
        completions = []
        for index, sample in enumerate(samples):
            reason = finish_reason_of(sample)
            text = sample.text
            if reason == "stop":
                # vLLM already cuts after the stop string; cutting again guards against older versions.
                text = cut_after_first_stop(text, stop) or text
            completions.append(Completion(text=text, num_tokens=len(sample.token_ids), finish_reason=reason,
                                          forward_tokens=len(sample.token_ids) + (prefill if index == 0 else 0)))
        return completions
