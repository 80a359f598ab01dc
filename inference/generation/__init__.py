"""Policy backends behind the `Generator` protocol: transformers (always there) and vLLM (optional extra)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep.checkpoints import require_policy_checkpoint, require_safetensors
from inference.types import GenerationRequest, Generator

if TYPE_CHECKING:
    from inference.config import PolicyConfig

BACKENDS: tuple[str, ...] = ("transformers", "vllm")
"""Backend names `load_generator` accepts."""


def _backend_class(backend: str) -> type:
    # Imported on demand: the vLLM module imports vllm only inside its constructor, but keep both lazy anyway.
    if backend == "transformers":
        from inference.generation.transformers_backend import TransformersGenerator

        return TransformersGenerator
    if backend == "vllm":
        from inference.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator
    raise ValueError(f"unknown generation backend {backend!r}; use one of {', '.join(BACKENDS)}")


def backend_options(backend: str) -> tuple[str, ...]:
    """Keyword options the backend's constructor accepts (besides the model)."""
    parameters = inspect.signature(_backend_class(backend).__init__).parameters
    return tuple(name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def load_generator(backend: str, model: str, **options: Any) -> Generator:
    """Build a policy backend; an option the chosen backend does not take is an error, never ignored.

    transformers options: dtype, device, batch_size, seed, system_prompt, trust_remote_code, chat_template,
    prompt_date.
    vllm options: dtype, device, gpu_memory_utilization, max_model_len, seed, system_prompt, trust_remote_code,
    tensor_parallel_size, enable_prefix_caching, chat_template, prompt_date.
    """
    cls = _backend_class(backend)
    accepted = backend_options(backend)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"option(s) {unknown} are not accepted by the {backend} backend; accepted: {', '.join(accepted)}"
        )
    return cls(model, **options)


def build_policy_generator(policy: PolicyConfig, seed: int) -> Generator:
    """The policy backend a config's `policy` section names, seeded with `seed` (`ttc-infer run` and `label`);
    a PRM checkpoint is refused before its weights load."""
    require_policy_checkpoint(policy.model_name_or_path)
    require_safetensors(policy.model_name_or_path, "policy.model_name_or_path")
    try:
        generator = load_generator(policy.backend, policy.model_name_or_path, **policy.generator_options(seed))
    except OSError as error:
        if Path(policy.model_name_or_path).exists():
            raise
        raise FileNotFoundError(
            f"policy.model_name_or_path={policy.model_name_or_path!r} is neither a local directory nor a model in "
            f"the local Hugging Face cache ({str(error).splitlines()[0]}); point it at a checkpoint directory"
        ) from error
    prompt_token_ids = getattr(generator, "prompt_token_ids", None)
    if prompt_token_ids is not None:
        # A template that is missing or breaks is refused now, before any output is written.
        prompt_token_ids([GenerationRequest(problem="What is 1 + 1?")])
    return generator


__all__ = ["BACKENDS", "backend_options", "build_policy_generator", "load_generator"]
