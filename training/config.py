"""Config dataclasses of `training/train_prm.py`: model, data and the PRM trainer settings (parsed with TrlParser)."""

# No `from __future__ import annotations`: HfArgumentParser reads the real field types to build the CLI.
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from trl.experimental.prm import PRMConfig

from data_prep.labels import LABEL_FORMATS, MATH_SHEPHERD_STEP_TAG
from data_prep.prm_metadata import PRM_STYLES
from data_prep.steps import STEP_SEPARATOR

MODEL_SHAPES: dict[str, dict] = {
    "tiny": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
    },
    "llama31_8b": {
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    "llama32_1b": {
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
}
"""Named Llama shapes for `init_from_config` (random weights, no download). `tiny` takes its vocabulary size from the
tokenizer; `llama31_8b` and `llama32_1b` are Llama-3.1-8B's and Llama-3.2-1B's published architectures."""

TORCH_DTYPES = ("auto", "float32", "bfloat16", "float16")
LORA_TARGETS_LLAMA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelArguments:
    """Which model to fine-tune into a PRM and how (full weights or a LoRA adapter)."""

    model_name_or_path: str | None = None
    """Local directory or hub id of the base model; None when `init_from_config` builds a random one."""
    tokenizer_name_or_path: str | None = None
    """Tokenizer directory or hub id; default: `model_name_or_path`, or for `init_from_config: tiny` the tiny
    tokenizer of `data_prep.tokenizer.build_tiny_tokenizer()`."""
    torch_dtype: str = "float32"
    """Dtype the weights are loaded in: auto, float32, bfloat16 or float16 (mixed precision is `bf16`/`fp16`)."""
    trust_remote_code: bool = False
    """Allow model code from the model directory; off unless the model needs it."""
    attn_implementation: str | None = None
    """Attention kernel (`sdpa`, `eager`, `flash_attention_2`); None keeps transformers' default."""
    init_from_config: str | None = None
    """Build a RANDOM model instead of loading weights: a named shape (`tiny`, `llama31_8b`) or a config.json path
    (or a directory holding one). For offline tests and memory checks."""
    num_hidden_layers: int | None = None
    """Override the layer count of `init_from_config` (e.g. 2 to cut the 8B shape down for a CPU test)."""
    use_peft: bool = False
    """Train a LoRA adapter (and the classification head) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS_LLAMA))
    """Module names that get LoRA adapters (Llama: attention q/k/v/o and MLP gate/up/down projections)."""

    def __post_init__(self) -> None:
        # On the command line `none` unsets a path the YAML file set (e.g. `--model_name_or_path none
        # --init_from_config llama31_8b` turns the 8B config into a random-weights run).
        for name in ("model_name_or_path", "tokenizer_name_or_path", "init_from_config"):
            if isinstance(getattr(self, name), str) and getattr(self, name).strip().lower() in ("", "none", "null"):
                setattr(self, name, None)
        if (self.model_name_or_path is None) == (self.init_from_config is None):
            raise ValueError(
                f"model_name_or_path={self.model_name_or_path!r}, init_from_config={self.init_from_config!r}: "
                "set exactly one (load weights, or build a random model from a shape/config)"
            )
        if self.torch_dtype not in TORCH_DTYPES:
            raise ValueError(f"torch_dtype must be one of {TORCH_DTYPES}, got {self.torch_dtype!r}")
        if self.num_hidden_layers is not None:
            if self.init_from_config is None:
                raise ValueError("num_hidden_layers only applies with init_from_config; remove it or set init_from_config")
            if self.num_hidden_layers < 1:
                raise ValueError(f"num_hidden_layers must be >= 1, got {self.num_hidden_layers}")
        if self.use_peft:
            if self.lora_r < 1 or self.lora_alpha < 1:
                raise ValueError(f"lora_r and lora_alpha must be >= 1, got {self.lora_r}, {self.lora_alpha}")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
            if not self.lora_target_modules:
                raise ValueError("lora_target_modules is empty; name the modules that get adapters")


@dataclass
class DataArguments:
    """Which stepwise-supervision files to train and evaluate on."""

    train_files: list[str] = field(default_factory=lambda: ["runs/default/labels/train.jsonl"])
    """Training files (.jsonl, .json, .parquet, or `save_to_disk` directories), all of `data_format`."""
    train_weights: list[float] | None = None
    """Mixing weights, one per train file: each file's share of the mixture (seeded by `seed`, no oversampling);
    None concatenates the files."""
    eval_files: list[str] | None = None
    """Evaluation files; None trains without evaluation."""
    data_format: Literal["stepwise", "math_shepherd", "prm800k", "rlhflow", "outcome"] = "stepwise"
    """Row format: `stepwise` (prompt/completions/labels), `math_shepherd` (input/label/task), `prm800k` (raw lines:
    one example per rated alternative), `rlhflow` (conversations: step turns, each answered '+' or '-') or `outcome`
    (prompt/completion/label, TRL's unpaired-preference layout: one label per solution, for prm_style implicit)."""
    neutral_as: bool = True
    """PRM800K only: the label of a neutral (0) rating; True follows the paper's 'neutral is not wrong'."""
    skip_invalid_rows: bool = False
    """Drop malformed rows with a warning instead of stopping at the first one (for large public sets)."""
    max_train_samples: int | None = None
    """Keep only the first N training examples (after mixing)."""
    max_eval_samples: int | None = None
    """Keep only the first N evaluation examples."""
    label_source: str | None = None
    """Name of the label source for run names and the metadata (e.g. `mc_soft_k8`); default: the format and the
    first train file's name."""

    def __post_init__(self) -> None:
        if self.data_format not in LABEL_FORMATS:
            raise ValueError(f"data_format must be one of {LABEL_FORMATS}, got {self.data_format!r}")
        if not self.train_files:
            raise ValueError("train_files is empty; give at least one stepwise-supervision file")
        if self.train_weights is not None:
            if len(self.train_weights) != len(self.train_files):
                raise ValueError(f"{len(self.train_weights)} train_weights for {len(self.train_files)} train_files; "
                                 "give one weight per file")
            if any(not math.isfinite(w) or w < 0 for w in self.train_weights) or sum(self.train_weights) <= 0:
                raise ValueError(f"train_weights must be >= 0 and not all 0, got {self.train_weights}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or unset, got {value}")


IMPLICIT_BETA_DEFAULT = 0.05
"""Yuan et al. 2024's beta, the default of `implicit_beta`."""


@dataclass
class TtcPRMConfig(PRMConfig):
    """TRL's PRMConfig with ttc's step separator, soft labels, the PRM style and `--resume`."""

    prm_style: str = "token_classification"
    """What to train: `token_classification` (a fresh 2-class head on each step separator, TRL's PRMTrainer),
    `chat_plus_minus` (RLHFlow: the causal LM answers each step's user turn with good_token/bad_token) or
    `step_tag` (Math-Shepherd: the causal LM's next token after each step_tag) or `likelihood_head` (the causal
    LM's own token probabilities, read as the untrained likelihood verifier reads them, with a trained head over
    them: training starts from that read-out) or `implicit` (Yuan et al. 2024: the causal LM trained on outcome
    labels against its frozen starting weights, step rewards beta * log-ratio summed over the step). The generative styles keep the LM head; their loss is the 2-way
    cross-entropy over (good_token, bad_token) at the judgement positions only."""
    good_token: str = "+"
    """Generative styles: the single token that means 'this step is correct'."""
    bad_token: str = "-"
    """Generative styles: the single token that means 'this step is wrong'."""
    step_tag: str = MATH_SHEPHERD_STEP_TAG
    """prm_style step_tag: the single token placed after each step (Math-Shepherd's `ки`)."""
    step_separator: str = STEP_SEPARATOR
    """Fixed to data_prep.steps.STEP_SEPARATOR (a blank line) so training and inference split steps alike."""
    soft_labels: bool = True
    """Train on float labels as they are (cross-entropy against [1-p, p]); False turns each label into
    `p > hard_label_threshold` first (bools are unchanged either way)."""
    hard_label_threshold: float = 0.0
    """With soft_labels False: a step is good when its label is above this (0.0: any rollout reached the answer)."""
    mask_after_first_error: bool = False
    """Steps after a solution's first bad step (label false, or a soft label <= hard_label_threshold) carry no
    loss: ProcessBench asks for the first wrong step, and later steps of a wrong solution are bad only because an
    earlier one was."""
    implicit_beta: float = IMPLICIT_BETA_DEFAULT
    """prm_style implicit: beta, the scale of the rewards beta * (log P_model - log P_reference) (0.05 in Yuan et
    al. 2024)."""
    freeze_backbone: bool = True
    """prm_style likelihood_head: train the head only (the LM, hence the read-out it starts from, stays as it is);
    False trains the LM too (all weights, or its LoRA adapters with use_peft)."""
    resume: bool = False
    """Resume from the last `checkpoint-*` in output_dir (sets resume_from_checkpoint)."""

    def __post_init__(self) -> None:
        if self.step_separator != STEP_SEPARATOR:
            raise ValueError(
                f"step_separator={self.step_separator!r} differs from data_prep.steps.STEP_SEPARATOR "
                f"{STEP_SEPARATOR!r}; remove the key (in bash, '\\n\\n' is a backslash and an n, not a blank line)"
            )
        if self.prm_style not in PRM_STYLES:
            raise ValueError(f"prm_style must be one of {PRM_STYLES}, got {self.prm_style!r}")
        if self.prm_style != "token_classification" and self.max_completion_length is not None:
            raise ValueError(f"max_completion_length applies to prm_style token_classification, not {self.prm_style}; "
                             "use max_length")
        # Style-specific keys are read by their style only: a changed value for another style is refused.
        if self.prm_style != "likelihood_head" and not self.freeze_backbone:
            raise ValueError(f"freeze_backbone applies to prm_style likelihood_head, not {self.prm_style}; remove it")
        if self.prm_style != "implicit" and self.implicit_beta != IMPLICIT_BETA_DEFAULT:
            raise ValueError(f"implicit_beta applies to prm_style implicit, not {self.prm_style}; remove it")
        if not self.implicit_beta > 0:
            raise ValueError(f"implicit_beta must be > 0, got {self.implicit_beta}")
        if not 0.0 <= self.hard_label_threshold < 1.0:
            raise ValueError(f"hard_label_threshold must be in [0, 1), got {self.hard_label_threshold}")
        super().__post_init__()


@dataclass(frozen=True)
class LaunchSettings:
    """What an accelerate config file (configs/accelerate/*.yaml) says about the launch."""

    distributed_type: str
    num_processes: int
    use_cpu: bool
    zero_stage: int | None
    """DeepSpeed ZeRO stage, None without DeepSpeed."""
    zero3_save_16bit_model: bool
    offload_optimizer_device: str | None
    offload_param_device: str | None


def read_accelerate_config(path: str | Path) -> LaunchSettings:
    """Read the launch facts from an accelerate config (and its DeepSpeed JSON file, if it names one)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an accelerate config must be a YAML mapping")
    deepspeed = raw.get("deepspeed_config") or {}
    json_file = deepspeed.get("deepspeed_config_file")
    stage = deepspeed.get("zero_stage")
    save_16bit = bool(deepspeed.get("zero3_save_16bit_model", False))
    offload_optimizer = deepspeed.get("offload_optimizer_device")
    offload_param = deepspeed.get("offload_param_device")
    if json_file:
        import json

        # accelerate reads the file relative to the working directory; a path relative to the YAML also works here.
        candidates = [Path(json_file), path.parent / json_file]
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise ValueError(f"{path}: deepspeed_config_file {json_file!r} not found (looked at "
                             f"{', '.join(str(candidate) for candidate in candidates)}); run from the repository root")
        zero = json.loads(found.read_text(encoding="utf-8")).get("zero_optimization", {})
        stage = zero.get("stage")
        save_16bit = bool(zero.get("stage3_gather_16bit_weights_on_model_save", False))
        offload_optimizer = (zero.get("offload_optimizer") or {}).get("device")
        offload_param = (zero.get("offload_param") or {}).get("device")
    distributed_type = str(raw.get("distributed_type", "NO"))
    return LaunchSettings(
        distributed_type=distributed_type,
        num_processes=int(raw.get("num_processes", 1)),
        use_cpu=bool(raw.get("use_cpu", False)),
        zero_stage=int(stage) if distributed_type == "DEEPSPEED" and stage is not None else None,
        zero3_save_16bit_model=save_16bit,
        offload_optimizer_device=offload_optimizer,
        offload_param_device=offload_param,
    )


def effective_batch_size(args: TtcPRMConfig, num_processes: int) -> int:
    """Examples per optimizer step: per-device batch x gradient accumulation x processes (GPUs)."""
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * num_processes
