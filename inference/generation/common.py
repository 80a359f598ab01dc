"""Helpers both generation backends and the PRM scorers share: device/dtype choice, call checks, seeds, stop cuts."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from inference.types import GenerationRequest, SamplingParams

logger = logging.getLogger(__name__)

DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float16", "float32")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raise ValueError naming the allowed values when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {', '.join(choices)}")


def model_load_options(trust_remote_code: bool, what: str) -> dict[str, Any]:
    """`from_pretrained` options every model load uses: safetensors only, and the checkpoint's own code only when a
    config turns `trust_remote_code` on (then with a warning naming `what`)."""
    if trust_remote_code:
        logger.warning("%s: trust_remote_code is on, so Python code shipped with the checkpoint will run", what)
    return {"use_safetensors": True, "trust_remote_code": trust_remote_code}


def resolve_device(device: str) -> Any:
    """`auto` is CUDA when available, else CPU; asking for `cuda` without a GPU is an error."""
    import torch

    check_choice("device", device, DEVICES)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; use device='cpu' or 'auto'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: Any) -> Any:
    """`auto` is bfloat16 on CUDA and float32 on CPU (bfloat16 matmuls are slow on most CPUs)."""
    import torch

    check_choice("dtype", dtype, DTYPES)
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def check_generate_call(requests: Sequence[GenerationRequest], n: int, params: SamplingParams, stop: Sequence[str]) -> None:
    """Validate the arguments of `Generator.generate` the same way in every backend."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not isinstance(params, SamplingParams):
        raise TypeError(f"params must be inference.types.SamplingParams, got {type(params).__name__}")
    for index, request in enumerate(requests):
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"requests[{index}] must be a GenerationRequest, got {type(request).__name__}")
    for item in stop:
        if not isinstance(item, str) or not item:
            raise ValueError(f"stop strings must be non-empty strings, got {item!r}")


class SeedStream:
    """Per-call seeds: the call's own `params.seed`, else the next draw from a stream seeded once per backend."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def next(self, explicit: int | None) -> int:
        if explicit is not None:
            return explicit
        return self._rng.randrange(2**31 - 1)


def cut_after_first_stop(text: str, stop: Sequence[str]) -> str | None:
    """`text` cut right after the earliest point where any stop string is complete; None when none occurs."""
    ends = [text.find(item) + len(item) for item in stop if item in text]
    if not ends:
        return None
    return text[: min(ends)]


def count_parameters(model: str, *, trust_remote_code: bool = False) -> int:
    """Parameters of a causal LM from its config alone, built on the meta device (no weights are read).

    For engines such as vLLM that keep the module in another process.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        module = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return int(module.num_parameters())
