"""PRM configs: YAML + CLI parsing, unknown keys, validation, the 8B configs and accelerate/DeepSpeed launch files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.steps import STEP_SEPARATOR
from training.config import (
    MODEL_SHAPES,
    DataArguments,
    ModelArguments,
    effective_batch_size,
    read_accelerate_config,
)
from training.prm import lora_config, parse_args

REPO = Path(__file__).resolve().parents[3]
TINY = str(REPO / "configs/prm/tiny.yaml")
FULL = str(REPO / "configs/prm/llama31_8b_full.yaml")
LORA = str(REPO / "configs/prm/llama31_8b_lora.yaml")
TINY_PLUS_MINUS = str(REPO / "configs/prm/tiny_plus_minus.yaml")
PLUS_MINUS_8B = str(REPO / "configs/prm/llama31_8b_plus_minus.yaml")
# The 8B configs ask for bf16, which TrainingArguments only accepts on a CPU machine together with use_cpu.
ON_CPU = ["--use_cpu", "true"]


def test_tiny_config_is_a_cpu_config_with_ttc_separator() -> None:
    model_args, data_args, args, name = parse_args(["--config", TINY])
    assert name == "tiny"
    assert model_args.init_from_config is None
    assert model_args.model_name_or_path == "checkpoints/prm-verifier"
    assert model_args.use_peft is False
    assert data_args.train_files == ["runs/default/labels/oracle.jsonl", "runs/default/labels/train_corrupted.jsonl"]
    assert data_args.data_format == "stepwise"
    assert args.step_separator == STEP_SEPARATOR == "\n\n"
    assert args.bf16 is False
    assert args.gradient_checkpointing is False
    assert args.use_cpu is True
    assert args.soft_labels is True
    assert args.report_to == []  # "none"


def test_cli_overrides_yaml_values() -> None:
    model_args, data_args, args, _ = parse_args(
        ["--config", TINY, "--max_steps", "3", "--use_peft", "--lora_r", "4", "--train_files", "a.jsonl", "b.jsonl",
         "--train_weights", "2", "1", "--resume"]
    )
    assert args.max_steps == 3
    assert model_args.use_peft is True
    assert model_args.lora_r == 4
    assert data_args.train_files == ["a.jsonl", "b.jsonl"]
    assert data_args.train_weights == [2.0, 1.0]
    assert args.resume is True


def test_unknown_yaml_key_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(Path(TINY).read_text() + "\nbeam_width: 4\n")
    with pytest.raises(ValueError, match="beam_width"):
        parse_args(["--config", str(config)])


def test_unknown_cli_flag_is_an_error() -> None:
    with pytest.raises(ValueError, match="no_such_flag"):
        parse_args(["--config", TINY, "--no_such_flag", "1"])


def test_step_separator_from_bash_is_rejected() -> None:
    with pytest.raises(ValueError, match="differs from data_prep.steps.STEP_SEPARATOR"):
        parse_args(["--config", TINY, "--step_separator", "\\n\\n"])


def test_none_on_the_cli_unsets_a_yaml_path() -> None:
    model_args, *_ = parse_args(["--config", LORA, *ON_CPU, "--model_name_or_path", "none",
                                 "--init_from_config", "llama31_8b", "--num_hidden_layers", "2"])
    assert model_args.model_name_or_path is None
    assert model_args.init_from_config == "llama31_8b"
    assert model_args.num_hidden_layers == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_name_or_path": "m", "init_from_config": "tiny"}, "set exactly one"),
        ({}, "set exactly one"),
        ({"model_name_or_path": "m", "num_hidden_layers": 2}, "only applies with init_from_config"),
        ({"init_from_config": "tiny", "torch_dtype": "fp32"}, "torch_dtype must be one of"),
        ({"init_from_config": "tiny", "use_peft": True, "lora_target_modules": []}, "lora_target_modules is empty"),
    ],
)
def test_model_arguments_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelArguments(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_files": ["a", "b"], "train_weights": [1.0]}, "1 train_weights for 2 train_files"),
        ({"train_files": ["a"], "train_weights": [0.0]}, "not all 0"),
        ({"train_files": []}, "train_files is empty"),
        ({"max_train_samples": 0}, "max_train_samples must be >= 1"),
    ],
)
def test_data_arguments_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataArguments(**kwargs)


def test_full_8b_config_is_zero3_full_fine_tune_with_batch_128() -> None:
    model_args, data_args, args, name = parse_args(["--config", FULL, *ON_CPU])
    assert name == "llama31_8b_full"
    assert model_args.model_name_or_path == "meta-llama/Llama-3.1-8B"
    assert model_args.use_peft is False
    assert model_args.torch_dtype == "bfloat16"
    assert args.bf16 is True
    assert args.gradient_checkpointing is True
    assert args.learning_rate == pytest.approx(2e-6)
    assert args.max_length == 2048
    assert args.report_to == ["wandb"]
    launch = read_accelerate_config(REPO / "configs/accelerate/deepspeed_zero3.yaml")
    assert launch.distributed_type == "DEEPSPEED"
    assert launch.zero_stage == 3
    assert launch.zero3_save_16bit_model is True
    # Launched with --num_processes 8 on 8 GPUs.
    assert effective_batch_size(args, 8) == 4 * 4 * 8 == 128


def test_lora_8b_config_targets_every_projection_with_batch_128() -> None:
    from peft import TaskType

    model_args, _, args, _ = parse_args(["--config", LORA, *ON_CPU])
    assert model_args.use_peft is True
    assert model_args.lora_r == 16
    config = lora_config(model_args)
    assert config.task_type == TaskType.TOKEN_CLS
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert config.r == 16
    assert config.lora_alpha == 32
    assert args.bf16 is True
    assert effective_batch_size(args, 1) == 8 * 16 == 128


def test_accelerate_configs() -> None:
    cpu = read_accelerate_config(REPO / "configs/accelerate/cpu.yaml")
    assert (cpu.distributed_type, cpu.use_cpu, cpu.num_processes, cpu.zero_stage) == ("NO", True, 1, None)
    zero2 = read_accelerate_config(REPO / "configs/accelerate/deepspeed_zero2.yaml")
    assert (zero2.distributed_type, zero2.zero_stage, zero2.num_processes) == ("DEEPSPEED", 2, 1)


def test_one_gpu_zero3_config_keeps_bf16_master_weights_and_adam_states(monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # accelerate resolves deepspeed_config_file from the working directory
    one_gpu = read_accelerate_config("configs/accelerate/deepspeed_zero3_one_gpu.yaml")
    assert (one_gpu.distributed_type, one_gpu.zero_stage, one_gpu.zero3_save_16bit_model) == ("DEEPSPEED", 3, True)
    bf16 = json.loads((REPO / "configs/accelerate/deepspeed_zero3_bf16_states.json").read_text())["bf16"]
    assert bf16["bf16_master_weights_and_grads"] is True and bf16["bf16_optimizer_states"] is True


def test_llama32_1b_shape_has_the_published_parameter_count() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**MODEL_SHAPES["llama32_1b"]))
    # Llama-3.2-1B: 1.24 B parameters with the input embedding tied to the LM head.
    assert sum(parameter.numel() for parameter in model.parameters()) == 1_235_814_400


def test_llama31_8b_shape_matches_the_published_architecture() -> None:
    shape = MODEL_SHAPES["llama31_8b"]
    assert (shape["hidden_size"], shape["num_hidden_layers"], shape["num_attention_heads"]) == (4096, 32, 32)
    assert (shape["num_key_value_heads"], shape["intermediate_size"], shape["vocab_size"]) == (8, 14336, 128256)
    assert shape["rope_parameters"]["rope_theta"] == 500000.0


def test_effective_batch_size_rejects_zero_processes() -> None:
    _, _, args, _ = parse_args(["--config", TINY])
    with pytest.raises(ValueError, match="num_processes must be >= 1"):
        effective_batch_size(args, 0)


def test_token_classification_is_the_default_style() -> None:
    for config in (TINY, FULL, LORA):
        assert parse_args(["--config", config, *ON_CPU])[2].prm_style == "token_classification"


def test_tiny_plus_minus_config_trains_the_policy_like_the_tiny_config() -> None:
    model_args, data_args, args, name = parse_args(["--config", TINY_PLUS_MINUS])
    _, tiny_data, tiny_args, _ = parse_args(["--config", TINY])
    assert name == "tiny_plus_minus"
    assert model_args.model_name_or_path == "checkpoints/policy-large"
    assert (args.prm_style, args.good_token, args.bad_token) == ("chat_plus_minus", "+", "-")
    assert data_args.train_files == tiny_data.train_files
    assert args.output_dir == "runs/default/prm-plus-minus" != tiny_args.output_dir
    assert (args.use_cpu, args.bf16, args.soft_labels, args.max_length) == (True, False, True, 512)


def test_tiny_plus_minus_config_fits_the_policy_tokenizer() -> None:
    from training.generative import judgement_token_ids
    from training.prm import load_tokenizer

    model_args, _, args, _ = parse_args(["--config", TINY_PLUS_MINUS])
    model_args.model_name_or_path = str(REPO / model_args.model_name_or_path)
    tokenizer = load_tokenizer(model_args)
    good, bad = judgement_token_ids(tokenizer, args.prm_style, good_token=args.good_token, bad_token=args.bad_token,
                                    step_tag=args.step_tag, tokenizer_source="policy-large")
    assert tokenizer.convert_ids_to_tokens([good, bad]) == ["+", "-"]


def test_llama31_8b_plus_minus_config_is_rlhflows_recipe() -> None:
    model_args, _, args, name = parse_args(["--config", PLUS_MINUS_8B, *ON_CPU])
    assert name == "llama31_8b_plus_minus"
    assert model_args.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct"
    assert model_args.use_peft is False
    assert (args.prm_style, args.good_token, args.bad_token) == ("chat_plus_minus", "+", "-")
    # RLHFlow math-rm/llama-3.1-prm.yaml: lr 2e-6 cosine, warmup 0.05, 1 epoch, 8192 tokens, global batch 32.
    assert args.learning_rate == pytest.approx(2e-6)
    assert args.lr_scheduler_type == "cosine"
    assert args.warmup_steps == pytest.approx(0.05)
    assert args.num_train_epochs == 1
    assert args.max_length == 8192
    assert (args.weight_decay, args.max_grad_norm) == (0.0, 1.0)
    assert effective_batch_size(args, 8) == 1 * 4 * 8 == 32
    # Math-Shepherd hard estimation: a step is `+` when any completion from it reaches the answer.
    assert (args.soft_labels, args.hard_label_threshold) == (False, 0.0)
    assert (args.bf16, args.gradient_checkpointing) == (True, True)


def test_llama31_8b_plus_minus_lora_config_keeps_rlhflows_recipe_but_the_learning_rate() -> None:
    full_model, _, full, _ = parse_args(["--config", PLUS_MINUS_8B, *ON_CPU])
    model_args, _, args, name = parse_args(["--config", str(REPO / "configs/prm/llama31_8b_plus_minus_lora.yaml"),
                                            *ON_CPU])
    assert name == "llama31_8b_plus_minus_lora"
    assert (model_args.use_peft, model_args.lora_r, model_args.lora_alpha) == (True, 16, 32)
    assert set(model_args.lora_target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"}
    assert model_args.model_name_or_path == full_model.model_name_or_path
    same = ("prm_style", "good_token", "bad_token", "soft_labels", "hard_label_threshold", "max_length",
            "num_train_epochs", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm")
    assert {key: getattr(args, key) for key in same} == {key: getattr(full, key) for key in same}
    # RLHFlow's global batch 32 on one GPU; a LoRA learning rate (the adapters start from zero).
    assert effective_batch_size(args, 1) == 32
    assert args.learning_rate == pytest.approx(1e-4)


def test_generative_lora_is_a_causal_lm_adapter() -> None:
    from peft import TaskType

    model_args, _, args, _ = parse_args(["--config", PLUS_MINUS_8B, *ON_CPU, "--use_peft"])
    assert lora_config(model_args, args.prm_style).task_type == TaskType.CAUSAL_LM


@pytest.mark.parametrize(("config", "style", "output_dir"), [
    ("tiny_likelihood_head.yaml", "likelihood_head", "runs/default/prm-likelihood-head"),
    ("tiny_implicit.yaml", "implicit", "runs/default/prm-implicit"),
])
def test_tiny_likelihood_reading_configs_train_policy_large_on_the_tiny_labels(config: str, style: str,
                                                                              output_dir: str) -> None:
    model_args, data_args, args, name = parse_args(["--config", str(REPO / "configs/prm" / config)])
    _, tiny_data, _, _ = parse_args(["--config", TINY])
    assert name == config.removesuffix(".yaml")
    assert model_args.model_name_or_path == "checkpoints/policy-large" and model_args.use_peft is False
    assert args.prm_style == style and args.output_dir == output_dir
    assert data_args.train_files == tiny_data.train_files
    assert (args.use_cpu, args.bf16, args.max_length) == (True, False, 512)
    if style == "likelihood_head":
        assert args.freeze_backbone is True and args.mask_after_first_error is True
    else:
        assert args.implicit_beta == 0.05


def test_llama31_8b_implicit_configs_follow_the_papers_objective() -> None:
    # Yuan et al. 2024, ImplicitPRM run_ce.sh: beta 0.05, lr 5e-7, 1 epoch, global batch 64, Llama-3.1-8B-Instruct.
    full_model, _, full, _ = parse_args(["--config", str(REPO / "configs/prm/llama31_8b_implicit.yaml"), *ON_CPU])
    lora_model, _, lora, _ = parse_args(["--config", str(REPO / "configs/prm/llama31_8b_implicit_lora.yaml"), *ON_CPU])
    for model_args, args in ((full_model, full), (lora_model, lora)):
        assert model_args.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct"
        assert (args.prm_style, args.implicit_beta, args.num_train_epochs) == ("implicit", 0.05, 1)
        assert (args.bf16, args.gradient_checkpointing) == (True, True)
    assert full.learning_rate == pytest.approx(5e-7) and effective_batch_size(full, 8) == 64
    assert full_model.use_peft is False
    assert lora_model.use_peft is True and lora_model.lora_r == 16 and effective_batch_size(lora, 1) == 64


def test_llama31_8b_likelihood_head_config_trains_the_head_of_a_frozen_8b() -> None:
    model_args, _, args, name = parse_args(["--config", str(REPO / "configs/prm/llama31_8b_likelihood_head.yaml"),
                                            *ON_CPU])
    assert name == "llama31_8b_likelihood_head"
    assert model_args.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct" and model_args.use_peft is False
    assert (args.prm_style, args.freeze_backbone, args.mask_after_first_error) == ("likelihood_head", True, True)
