"""Tiny Llama policies for the embedded default: build, SFT on synthetic gold solutions, greedy evaluation, manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from data_prep.checkpoints import POLICY_MANIFEST_FILENAME
from data_prep.json_records import read_json_record, write_json_record
from data_prep.records import Problem
from data_prep.steps import SYSTEM_PROMPT, build_messages, join_steps, split_steps
from data_prep.synthetic import check_solution, generate_problems, gold_steps
from data_prep.tokenizer import build_tiny_tokenizer

logger = logging.getLogger(__name__)

MANIFEST_FILENAME = POLICY_MANIFEST_FILENAME


@dataclass
class PolicyModelArguments:
    """Shape of the tiny Llama policy and the synthetic data it learns from."""

    policy_name: str = "policy-small"
    """Name recorded in the manifest and used by reports."""
    tokenizer_name_or_path: str | None = None
    """A saved tokenizer; None builds ttc's tiny tokenizer (`data_prep.tokenizer`)."""
    hidden_size: int = 96
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    world_seed: int = 0
    """Seed of the synthetic world (train and test splits)."""
    train_problems_per_level: int = 2000
    eval_problems_per_level: int = 40
    """Test-split problems per level for the greedy accuracy written to the manifest."""
    eval_max_new_tokens: int = 200
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.train_problems_per_level < 1 or self.eval_problems_per_level < 1:
            raise ValueError("train_problems_per_level and eval_problems_per_level must be >= 1")


def load_tokenizer(path: str | None) -> PreTrainedTokenizerBase:
    return build_tiny_tokenizer() if path is None else AutoTokenizer.from_pretrained(path)


def build_policy_model(args: PolicyModelArguments, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama of the configured shape."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads,
        max_position_embeddings=args.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def sft_dataset(problems: list[Problem], system_prompt: str | None = SYSTEM_PROMPT) -> Dataset:
    """Conversational prompt-completion rows: TRL trains on the completion (the gold solution) only."""
    rows = [
        {
            "prompt": build_messages(problem.problem, system_prompt),
            "completion": [{"role": "assistant", "content": join_steps(gold_steps(problem))}],
        }
        for problem in problems
    ]
    return Dataset.from_list(rows)


@torch.no_grad()
def greedy_accuracy(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[Problem],
    *,
    max_new_tokens: int,
    batch_size: int,
    system_prompt: str | None = SYSTEM_PROMPT,
) -> dict[str, float]:
    """Greedy-decoding accuracy per level (`"L1"`...) and overall (`"all"`), graded by the synthetic checker."""
    model.eval()
    tokenizer.padding_side = "left"
    correct: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        prompts = [
            tokenizer.apply_chat_template(build_messages(p.problem, system_prompt), tokenize=False, add_generation_prompt=True)
            for p in batch
        ]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        output = model.generate(
            **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        texts = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        for problem, text in zip(batch, texts):
            steps = split_steps(text)
            right = bool(steps) and check_solution(problem, steps).final_correct
            correct[f"L{problem.level}"].append(right)
            correct["all"].append(right)
    return {key: sum(values) / len(values) for key, values in sorted(correct.items())}


def config_hash(*configs: object) -> str:
    """Short hash of the settings that determine the trained weights."""
    payload = json.dumps([_jsonable(c) for c in configs], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _jsonable(config: object) -> dict:
    if isinstance(config, dict):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return asdict(config)  # type: ignore[arg-type]


@dataclass
class PolicyManifest:
    """What a shipped tiny policy is and how it was made (checked by tests against the checkpoint)."""

    policy_name: str
    num_parameters: int
    command: str
    seed: int
    world_seed: int
    config_hash: str
    train_problems: int
    train_tokens: int
    train_seconds: float
    greedy_accuracy: dict[str, float]
    eval_problems_per_level: int
    torch_dtype: str = "bfloat16"
    extra: dict = field(default_factory=dict)

    def save(self, output_dir: str | Path) -> Path:
        return write_json_record(self, Path(output_dir) / MANIFEST_FILENAME)

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> "PolicyManifest":
        return read_json_record(cls, Path(checkpoint_dir) / MANIFEST_FILENAME,
                                missing=f"{checkpoint_dir} is not a policy written by train_policy.py")


def train_policy(model_args: PolicyModelArguments, sft_config) -> PolicyManifest:  # noqa: ANN001 - trl.SFTConfig
    """Build, train, evaluate and save one tiny policy (bf16 safetensors + tokenizer + manifest)."""
    from trl import SFTTrainer

    started = time.time()
    tokenizer = load_tokenizer(model_args.tokenizer_name_or_path)
    model = build_policy_model(model_args, tokenizer, sft_config.seed)
    train_problems = generate_problems("train", model_args.train_problems_per_level, seed=model_args.world_seed)
    dataset = sft_dataset(train_problems)
    trainer = SFTTrainer(model=model, args=sft_config, train_dataset=dataset, processing_class=tokenizer)
    resumed_from_step = _resumed_from_step(sft_config)
    result = trainer.train(resume_from_checkpoint=True if resumed_from_step is not None else None)
    train_seconds = time.time() - started
    output_dir = Path(sft_config.output_dir)
    # Ship bf16 weights and measure the accuracy of exactly those weights.
    model = trainer.model.to(torch.bfloat16)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    eval_problems = generate_problems("test", model_args.eval_problems_per_level, seed=model_args.world_seed)
    accuracy = greedy_accuracy(
        model.float(), tokenizer, eval_problems,
        max_new_tokens=model_args.eval_max_new_tokens, batch_size=model_args.eval_batch_size,
    )
    logger.info("greedy accuracy of %s: %s", model_args.policy_name, accuracy)
    manifest = PolicyManifest(
        policy_name=model_args.policy_name,
        num_parameters=model.num_parameters(),
        command=" ".join(["python", *sys.argv]),
        seed=sft_config.seed,
        world_seed=model_args.world_seed,
        config_hash=config_hash(model_args, _training_settings(sft_config)),
        train_problems=len(train_problems),
        train_tokens=int(trainer.state.num_input_tokens_seen or 0),
        train_seconds=round(train_seconds, 1),
        greedy_accuracy=accuracy,
        eval_problems_per_level=model_args.eval_problems_per_level,
        extra={"train_loss": result.training_loss, "global_steps": trainer.state.global_step},
    )
    if resumed_from_step is not None:
        # train_seconds counts this process only: say where it picked up, so the figure is not read as the whole run.
        manifest.extra["resumed_from_step"] = resumed_from_step
    manifest.save(output_dir)
    return manifest


def _training_settings(sft_config) -> dict:  # noqa: ANN001
    keys = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
            "gradient_accumulation_steps", "warmup_ratio", "lr_scheduler_type", "weight_decay", "seed", "bf16")
    return {key: getattr(sft_config, key, None) for key in keys}


def _resumed_from_step(sft_config) -> int | None:  # noqa: ANN001
    """The step of the checkpoint a `--resume true` run continues from; None when it starts afresh."""
    from transformers.trainer_utils import get_last_checkpoint

    if not getattr(sft_config, "resume", False) or not Path(sft_config.output_dir).is_dir():
        return None
    last = get_last_checkpoint(sft_config.output_dir)
    return None if last is None else int(Path(last).name.rsplit("-", 1)[-1])


def load_policy(checkpoint_dir: str | Path) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    return (AutoModelForCausalLM.from_pretrained(checkpoint_dir, use_safetensors=True),
            AutoTokenizer.from_pretrained(checkpoint_dir))
