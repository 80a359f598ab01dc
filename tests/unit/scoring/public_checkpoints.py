"""Tiny random checkpoints in the published layouts of Qwen2.5-Math-PRM and Skywork-o1-Open-PRM, written tensor by
tensor (not by ttc's own model classes), so the tests check ttc's loaders against the public layout itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

from data_prep.tokenizer import build_tiny_tokenizer

QWEN_AUTO_MAP = {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                 "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
SKYWORK_AUTO_MAP = {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                    "AutoModel": "modeling_qwen2_rm.Qwen2ForRewardModel"}
REMOTE_CODE = 'raise RuntimeError("the checkpoint\'s own modeling code ran; ttc must never import it")\n'
"""What the checkpoints' `modeling_qwen2_rm.py` / `configuration_qwen2_rm.py` hold: running them fails the test."""


def tokenizer_with_extra_0() -> PreTrainedTokenizerFast:
    """ttc's tiny tokenizer with `<extra_0>` added as a special token, as Qwen2.5-Math-PRM's tokenizer has it."""
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens([AddedToken("<extra_0>", special=True, normalized=False)], special_tokens=True)
    return tokenizer


def tiny_qwen2_config(tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )


@dataclass
class PublicCheckpoint:
    """A written checkpoint and the random weights in it, for hand computations."""

    directory: Path
    backbone: Qwen2Model
    head: dict[str, torch.Tensor]


def _write(directory: Path, config: Qwen2Config, architecture: str, auto_map: dict[str, str],
           tensors: dict[str, torch.Tensor], tokenizer: PreTrainedTokenizerFast, shards: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    raw = config.to_dict()
    raw.update(architectures=[architecture], auto_map=auto_map, model_type="qwen2")
    (directory / "config.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    for name in ("modeling_qwen2_rm.py", "configuration_qwen2_rm.py"):
        (directory / name).write_text(REMOTE_CODE, encoding="utf-8")
    names = sorted(tensors)
    if shards == 1:
        save_file({name: tensors[name].contiguous() for name in names}, str(directory / "model.safetensors"),
                  metadata={"format": "pt"})
    else:
        # Sharded like the published 7B (model-0000k-of-0000n.safetensors + model.safetensors.index.json).
        weight_map = {}
        for shard in range(shards):
            file_name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
            part = names[shard::shards]
            save_file({name: tensors[name].contiguous() for name in part}, str(directory / file_name),
                      metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, file_name))
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
                 "weight_map": weight_map}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    tokenizer.save_pretrained(str(directory))


def _backbone(tokenizer: PreTrainedTokenizerFast, seed: int) -> tuple[Qwen2Config, Qwen2Model]:
    torch.manual_seed(seed)
    config = tiny_qwen2_config(tokenizer)
    return config, Qwen2Model(config).eval()


def save_qwen_prm(directory: Path, tokenizer: PreTrainedTokenizerFast, *, seed: int = 0,
                  drop: tuple[str, ...] = ()) -> PublicCheckpoint:
    """Qwen2ForProcessRewardModel: `model.*` + `score.0` (hidden -> hidden) + `score.2` (hidden -> 2), 2 shards."""
    config, backbone = _backbone(tokenizer, seed)
    hidden = config.hidden_size
    head = {"score.0.weight": torch.randn(hidden, hidden) * 0.3, "score.0.bias": torch.randn(hidden) * 0.2,
            "score.2.weight": torch.randn(2, hidden) * 0.15, "score.2.bias": torch.tensor([0.1, -0.2])}
    tensors = {f"model.{name}": value for name, value in backbone.state_dict().items()} | head
    tensors = {name: value for name, value in tensors.items() if name not in drop}
    _write(directory, config, "Qwen2ForProcessRewardModel", QWEN_AUTO_MAP, tensors, tokenizer, shards=2)
    return PublicCheckpoint(directory, backbone, head)


def save_skywork_prm(directory: Path, tokenizer: PreTrainedTokenizerFast, *, seed: int = 0,
                     drop: tuple[str, ...] = ()) -> PublicCheckpoint:
    """Qwen2ForPrmModel: a Qwen2 causal LM (`model.*`, `lm_head.weight`) + `v_head.summary` (hidden -> 1), 1 file."""
    config, backbone = _backbone(tokenizer, seed)
    hidden = config.hidden_size
    head = {"v_head.summary.weight": torch.randn(1, hidden) * 0.8, "v_head.summary.bias": torch.tensor([0.3])}
    tensors = {f"model.{name}": value for name, value in backbone.state_dict().items()}
    tensors["lm_head.weight"] = torch.randn(config.vocab_size, hidden) * 0.02
    tensors = {name: value for name, value in (tensors | head).items() if name not in drop}
    _write(directory, config, "Qwen2ForPrmModel", SKYWORK_AUTO_MAP, tensors, tokenizer, shards=1)
    return PublicCheckpoint(directory, backbone, head)
