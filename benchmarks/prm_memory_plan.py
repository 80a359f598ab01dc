"""GPU memory plan for the Llama-3.1-8B PRM configs: DeepSpeed's ZeRO estimators plus an activation estimate.

    python benchmarks/prm_memory_plan.py            # prints the Markdown tables of benchmarks/RESULTS.md

Parameter counts come from the real model class built on the meta device (no weights, no download); model-state
memory from DeepSpeed's own estimators; activations from the per-layer tensors a Llama layer keeps for backward.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

GIB = 1024**3


@dataclass(frozen=True)
class Plan:
    name: str
    prm_config: str
    accelerate_config: str | None
    num_gpus: int
    gpu_memory_gib: float


PLANS = (
    Plan("full fine-tune, ZeRO-3", "configs/prm/llama31_8b_full.yaml", "configs/accelerate/deepspeed_zero3.yaml", 8, 80),
    Plan("LoRA r=16, one GPU", "configs/prm/llama31_8b_lora.yaml", None, 1, 80),
)


@dataclass(frozen=True)
class ModelCounts:
    total_params: int
    largest_layer_params: int
    lora_params: int
    hidden_size: int
    intermediate_size: int
    kv_size: int
    num_layers: int


def parse_config(plan: Plan):
    """The PRM config as train_prm.py parses it (`--use_cpu true` only so bf16 validates on a CPU machine)."""
    from training.prm import parse_args

    return parse_args(["--config", str(REPO / plan.prm_config), "--use_cpu", "true"])


def count_params(lora_r: int, lora_targets: list[str]) -> ModelCounts:
    """Exact counts of the Llama-3.1-8B token-classification PRM, from the model class on the meta device."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForTokenClassification

    from training.config import MODEL_SHAPES

    config = AutoConfig.for_model("llama", **MODEL_SHAPES["llama31_8b"], num_labels=2)
    with init_empty_weights():
        model = AutoModelForTokenClassification.from_config(config, dtype=torch.bfloat16)
    total = sum(param.numel() for param in model.parameters())
    largest = max(sum(p.numel() for p in module.parameters(recurse=False)) for module in model.modules())
    lora = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in lora_targets and isinstance(module, torch.nn.Linear):
            lora += lora_r * (module.in_features + module.out_features)
    lora += sum(param.numel() for param in model.score.parameters())  # the head is trained in full with LoRA
    kv_size = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    return ModelCounts(total, largest, lora, config.hidden_size, config.intermediate_size, kv_size,
                       config.num_hidden_layers)


def activation_bytes(counts: ModelCounts, tokens: int, checkpointing: bool) -> int:
    """bf16 activations kept for backward, per GPU.

    Per layer a Llama block keeps ~2 bytes x tokens x (6 h + 2 kv + 4 I): norm inputs/outputs, q, k, v, attention
    output, and the MLP's gate, up, SiLU and product (SDPA/flash attention keeps no seq x seq matrix). With
    checkpointing only each layer's input (2 x tokens x h) is kept, plus one layer's full set during recompute.
    The PRM head emits 2 logits per token, so there is no vocabulary-sized logits tensor.
    """
    per_layer = 2 * tokens * (6 * counts.hidden_size + 2 * counts.kv_size + 4 * counts.intermediate_size)
    if checkpointing:
        return counts.num_layers * 2 * tokens * counts.hidden_size + per_layer
    return counts.num_layers * per_layer


def zero_estimates(counts: ModelCounts, num_gpus: int) -> tuple[dict[str, tuple[int, int]], str]:
    """DeepSpeed's own ZeRO-3 and ZeRO-2 model-state estimates (per CPU, per GPU) and their printed tables."""
    from deepspeed.runtime.zero.stage3 import (
        estimate_zero3_model_states_mem_needs,
        estimate_zero3_model_states_mem_needs_all_cold,
    )
    from deepspeed.runtime.zero.stage_1_and_2 import (
        estimate_zero2_model_states_mem_needs,
        estimate_zero2_model_states_mem_needs_all_cold,
    )

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        estimate_zero3_model_states_mem_needs_all_cold(counts.total_params, counts.largest_layer_params, num_gpus, 1)
        estimate_zero2_model_states_mem_needs_all_cold(counts.total_params, num_gpus, 1)
    cpu3, gpu3, _ = estimate_zero3_model_states_mem_needs(
        counts.total_params, counts.largest_layer_params, num_gpus, 1, cpu_offload=False, cpu_offload_params=False
    )
    cpu3o, gpu3o, _ = estimate_zero3_model_states_mem_needs(
        counts.total_params, counts.largest_layer_params, num_gpus, 1, cpu_offload=True, cpu_offload_params=False
    )
    cpu2, gpu2 = estimate_zero2_model_states_mem_needs(counts.total_params, num_gpus, 1, cpu_offload=False)
    estimates = {
        "ZeRO-3": (cpu3, gpu3),
        "ZeRO-3 + optimizer offload": (cpu3o, gpu3o),
        "ZeRO-2": (cpu2, gpu2),
    }
    return estimates, printed.getvalue()


def main() -> int:
    from training.config import effective_batch_size, read_accelerate_config

    lines = []
    for plan in PLANS:
        model_args, _, args, _ = parse_config(plan)
        counts = count_params(model_args.lora_r, list(model_args.lora_target_modules))
        tokens = args.per_device_train_batch_size * args.max_length
        acts = activation_bytes(counts, tokens, args.gradient_checkpointing)
        batch = effective_batch_size(args, plan.num_gpus)
        lines.append(f"### {plan.name}: `{plan.prm_config}` on {plan.num_gpus} x {plan.gpu_memory_gib:.0f} GB\n")
        lines.append(f"- PRM parameters: {counts.total_params:,} (largest layer {counts.largest_layer_params:,}, "
                     f"the embedding); LoRA-trainable: {counts.lora_params:,}")
        lines.append(f"- per-device batch {args.per_device_train_batch_size} x max_length {args.max_length} = "
                     f"{tokens:,} tokens; effective batch {args.per_device_train_batch_size} x "
                     f"{args.gradient_accumulation_steps} x {plan.num_gpus} = {batch}")
        lines.append(f"- activations (bf16, checkpointing={args.gradient_checkpointing}): {acts / GIB:.1f} GiB per GPU")
        if plan.accelerate_config:
            launch = read_accelerate_config(REPO / plan.accelerate_config)
            estimates, printed = zero_estimates(counts, plan.num_gpus)
            lines.append(f"- accelerate config: ZeRO stage {launch.zero_stage}, "
                         f"zero3_save_16bit_model={launch.zero3_save_16bit_model}\n")
            lines.append("| setup | model states per GPU (GiB) | + activations (GiB) | host RAM per node (GiB) | fits |")
            lines.append("| --- | --- | --- | --- | --- |")
            for name, (cpu, gpu) in estimates.items():
                total = (gpu + acts) / GIB
                fits = "yes" if total < plan.gpu_memory_gib * 0.9 else "no"
                lines.append(f"| {name} | {gpu / GIB:.1f} | {total:.1f} | {cpu / GIB:.1f} | {fits} |")
            lines.append("\nDeepSpeed's printed estimate (model states only, 1.5x buffer on host RAM):\n")
            lines.append("```\n" + printed.strip() + "\n```")
        else:
            base = counts.total_params * 2
            states = counts.lora_params * 16  # fp32 weight + grad + two Adam moments
            total = (base + states + acts) / GIB
            lines.append(f"- frozen bf16 base {base / GIB:.1f} GiB + LoRA/head fp32 weights, grads and Adam "
                         f"{states / GIB:.2f} GiB + activations {acts / GIB:.1f} GiB = {total:.1f} GiB "
                         f"({'fits' if total < plan.gpu_memory_gib * 0.9 else 'does not fit'} in "
                         f"{plan.gpu_memory_gib:.0f} GB)")
        lines.append("")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
