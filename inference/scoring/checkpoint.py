"""Reading a PRM checkpoint directory: its declared architectures, tokenizer, weight names and model (transformers
auto classes, peft adapters, or a native backbone-plus-head class whose head must be in the checkpoint)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.checkpoints import architectures, require_safetensors
from data_prep.prm_metadata import METADATA_FILENAME, PRMMetadata
from inference.generation.common import model_load_options

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
SAFETENSORS_INDEX = "model.safetensors.index.json"


def declared_architectures(directory: Path) -> list[str]:
    """config.json's `architectures`; a directory without config.json is not a transformers checkpoint."""
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{directory / 'config.json'} not found: {directory} is not a transformers checkpoint; "
            "point the PRM path at a directory written by save_pretrained (or by training/train_prm.py)"
        )
    return architectures(directory)


def load_tokenizer(directory: Path, base_model: str | None, trust_remote_code: bool) -> Any:
    """The checkpoint's tokenizer, or its peft base model's when the adapter directory has none."""
    from transformers import AutoTokenizer

    source = str(directory)
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        if base_model is None:
            raise FileNotFoundError(f"{directory} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
        logger.info("%s has no tokenizer; using the base model's (%s)", directory, base_model)
        source = base_model
    return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)


def adapter_head_labels(directory: Path) -> int:
    """Rows of the classification head saved in a peft adapter (the head is trained, so it must be there)."""
    from safetensors import safe_open

    config_path = directory / "adapter_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: ttc_prm.json says is_peft_adapter but there is no adapter")
    saved = [name for name in (json.loads(config_path.read_text(encoding="utf-8")).get("modules_to_save") or [])]
    weights = directory / "adapter_model.safetensors"
    if saved and weights.is_file():
        pattern = re.compile(r"\.(" + "|".join(re.escape(name) for name in saved) + r")\.weight$")
        with safe_open(str(weights), framework="pt") as handle:
            for key in handle.keys():
                if pattern.search(key):
                    return int(handle.get_slice(key).get_shape()[0])
    raise ValueError(
        f"{directory}: the peft adapter holds no classification head (modules_to_save={saved}), so the head would be "
        "random; train the LoRA with the head in modules_to_save (TaskType.TOKEN_CLS does this)"
    )


def load_auto_model(directory: Path, auto_class_name: str, metadata: PRMMetadata | None, torch_dtype: Any,
                    trust_remote_code: bool) -> Any:
    """Full weights through a transformers auto class (`AutoModelForCausalLM`, ...), or a peft adapter merged into
    its base model when ttc_prm.json says the directory holds one."""
    import transformers

    auto_class = getattr(transformers, auto_class_name)
    if metadata is None or not metadata.is_peft_adapter:
        require_safetensors(directory, "prm.path")
        return auto_class.from_pretrained(str(directory), dtype=torch_dtype,
                                          **model_load_options(trust_remote_code, f"PRM {directory}"))
    from peft import PeftModel

    if not metadata.base_model:
        raise ValueError(f"{directory}/{METADATA_FILENAME}: is_peft_adapter is true but base_model is not set")
    extra: dict[str, Any] = {}
    if auto_class_name == "AutoModelForTokenClassification":
        extra["num_labels"] = adapter_head_labels(directory)
    require_safetensors(metadata.base_model, f"{directory}/{METADATA_FILENAME} base_model")
    options = model_load_options(trust_remote_code, f"PRM base {metadata.base_model}")
    base = auto_class.from_pretrained(metadata.base_model, dtype=torch_dtype, **options, **extra)
    require_safetensors(directory, "prm.path")  # the adapter's weights too: peft would fall back to a .bin
    return PeftModel.from_pretrained(base, str(directory)).merge_and_unload()


def checkpoint_weight_names(directory: Path) -> set[str]:
    """Names of the tensors in a checkpoint's safetensors files (from the shard index when there is one)."""
    from safetensors import safe_open

    index = directory / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: expected a JSON object with a 'weight_map' object")
        return set(weight_map)
    names: set[str] = set()
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            names.update(handle.keys())
    return names


def load_backbone_with_head(model_class: type, directory: Path, head_weights: Sequence[str], torch_dtype: Any,
                            what: str) -> Any:
    """`model_class` (a transformers backbone plus a torch.nn head) from the checkpoint's safetensors, refusing a
    checkpoint that lacks any head weight (it would be random) or any other weight the class needs.

    The class is ttc's own, so `trust_remote_code` plays no part: code shipped with the checkpoint never runs.
    """
    require_safetensors(directory, "prm.path")
    names = checkpoint_weight_names(directory)
    missing_head = [name for name in head_weights if name not in names]
    if missing_head:
        raise ValueError(
            f"{directory}: the safetensors weights hold no {', '.join(missing_head)}, the {what} head, so it would "
            f"be random; point prm.path at the full {what} checkpoint"
        )
    model, info = model_class.from_pretrained(str(directory), dtype=torch_dtype, output_loading_info=True,
                                              **model_load_options(False, f"PRM {directory}"))
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{directory}: the safetensors weights lack {shown}, which a {what} needs; "
                         f"point prm.path at the full {what} checkpoint")
    return model
