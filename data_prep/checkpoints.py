"""Which kind of checkpoint a directory holds, policy or PRM, read from its ttc files and config.json, so that
each role refuses the other kind by name before any weights load; and the safetensors-only rule for its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from data_prep.io import read_json
from data_prep.prm_metadata import METADATA_FILENAME

POLICY_MANIFEST_FILENAME = "ttc_policy_manifest.json"
"""The manifest a policy trained by `training/train_policy.py` carries (command, seed, config hash, accuracy)."""

PRM_ARCHITECTURE_SUFFIXES = ("ForTokenClassification", "ForSequenceClassification", "ForProcessRewardModel",
                             "ForPrmModel", "ForRewardModel")
"""config.json architectures of reward heads (TRL/ttc token classification, Qwen2.5-Math-PRM, Skywork PRM): a
policy with one of these would generate from a head that was never trained to write text."""

CheckpointKind = Literal["policy", "prm", "unknown"]


def architectures(directory: str | Path) -> list[str]:
    """The `architectures` of a checkpoint's config.json ([] when it has no config.json or declares none); a
    config.json that is not a JSON object raises naming the file."""
    config = Path(directory) / "config.json"
    if not config.is_file():
        return []
    data = read_json(config)
    if not isinstance(data, dict):
        raise ValueError(f"{config}: expected a JSON object, got {type(data).__name__}")
    return list(data.get("architectures") or [])


def checkpoint_kind(directory: str | Path) -> tuple[CheckpointKind, str]:
    """(kind, the evidence in words) for a local directory; a hub id or a plain causal LM is "unknown"."""
    directory = Path(directory)
    if (directory / METADATA_FILENAME).is_file():
        return "prm", f"it holds {METADATA_FILENAME}, written by training/train_prm.py"
    reward_heads = [name for name in architectures(directory) if name.endswith(PRM_ARCHITECTURE_SUFFIXES)]
    if reward_heads:
        return "prm", f"its config.json declares {', '.join(reward_heads)}, a reward head"
    if (directory / POLICY_MANIFEST_FILENAME).is_file():
        return "policy", f"it holds {POLICY_MANIFEST_FILENAME}, written by training/train_policy.py"
    return "unknown", ""


def require_policy_checkpoint(path: str | Path, key: str = "policy.model_name_or_path") -> None:
    """Refuse a PRM checkpoint named as the policy (it would write noise as if all were fine)."""
    kind, evidence = checkpoint_kind(path) if Path(path).is_dir() else ("unknown", "")
    if kind == "prm":
        raise ValueError(
            f"{key}={str(path)!r} is a PRM checkpoint, not a policy ({evidence}); point {key} at a policy "
            "(e.g. checkpoints/policy-small) and give the PRM as prm.path"
        )


UNSAFE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
"""Pickle-based weight files: loading one can run arbitrary code, so ttc reads safetensors only."""


def require_safetensors(path: str | Path, key: str) -> None:
    """Refuse a local checkpoint whose weights are pickle files only (a hub id is left to the loader, which is
    asked for safetensors too)."""
    directory = Path(path)
    if not directory.is_dir():
        return
    if any(directory.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in directory.iterdir() if p.suffix in UNSAFE_WEIGHT_SUFFIXES)
    if pickled:
        raise ValueError(
            f"{key}={str(path)!r} holds weights as pickle files only ({', '.join(pickled[:3])}); ttc loads "
            "safetensors only (pickle can run code): convert once with "
            "`AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`"
        )
