"""`load_scorer`: a PRM checkpoint directory -> the scorer of its declared style, with clear errors for the wrong kind."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from data_prep.checkpoints import architectures, checkpoint_kind, require_safetensors
from data_prep.prm_metadata import METADATA_FILENAME, PRM_STYLES, PRMMetadata
from inference.generation.common import model_load_options, resolve_device, resolve_dtype
from inference.scoring.checker import SYNTHETIC_CHECKER, SyntheticCheckerScorer
from inference.scoring.likelihood import LIKELIHOOD_STYLE
from inference.types import PRMScorer

logger = logging.getLogger(__name__)

SCORER_STYLES: tuple[str, ...] = (*PRM_STYLES, LIKELIHOOD_STYLE)
"""What `prm_style` may name: the trained PRM styles, and a plain causal LM read as a likelihood verifier."""

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_TOKEN_CLASSIFICATION_SUFFIX = "ForTokenClassification"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def _architectures(directory: Path) -> list[str]:
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{directory / 'config.json'} not found: {directory} is not a transformers checkpoint; "
            "point the PRM path at a directory written by save_pretrained (or by training/train_prm.py)"
        )
    return architectures(directory)


def _check_architecture(directory: Path, style: str) -> None:
    """A full checkpoint's declared class must fit the style (a causal LM would get a random token head)."""
    architectures = _architectures(directory)
    if not architectures:
        logger.warning("%s/config.json declares no architectures; cannot check it fits prm_style %r", directory, style)
        return
    if style == "token_classification":
        if not any(name.endswith(_TOKEN_CLASSIFICATION_SUFFIX) for name in architectures):
            raise ValueError(
                f"{directory} is a {', '.join(architectures)} checkpoint, not a token-classification PRM: loading it "
                "as one would attach an untrained head; use prm_style 'chat_plus_minus' or 'step_tag' for a causal "
                "LM PRM, or point at a checkpoint written by training/train_prm.py"
            )
    elif not any(name.endswith(_CAUSAL_SUFFIXES) for name in architectures):
        raise ValueError(
            f"{directory} is a {', '.join(architectures)} checkpoint, but prm_style {style!r} reads a causal LM's "
            "next-token distribution; use prm_style 'token_classification' for a token-classification PRM"
        )


def _adapter_head_labels(directory: Path) -> int:
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


def _resolve(name: str, explicit: Any, from_metadata: Any, default: Any, metadata: PRMMetadata | None) -> Any:
    if explicit is not None and metadata is not None and explicit != from_metadata:
        raise ValueError(
            f"{name}={explicit!r} contradicts {name}={from_metadata!r} in the checkpoint's {METADATA_FILENAME}; "
            f"drop {name} from the config"
        )
    if explicit is not None:
        return explicit
    return from_metadata if metadata is not None else default


def _load_tokenizer(directory: Path, base_model: str | None, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    source = str(directory)
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        if base_model is None:
            raise FileNotFoundError(f"{directory} has no tokenizer files ({', '.join(_TOKENIZER_FILES)})")
        logger.info("%s has no tokenizer; using the base model's (%s)", directory, base_model)
        source = base_model
    return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)


def _load_model(directory: Path, style: str, metadata: PRMMetadata | None, torch_dtype: Any, trust_remote_code: bool) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    auto_class = AutoModelForTokenClassification if style == "token_classification" else AutoModelForCausalLM
    if metadata is None or not metadata.is_peft_adapter:
        _check_architecture(directory, style)
        require_safetensors(directory, "prm.path")
        return auto_class.from_pretrained(str(directory), dtype=torch_dtype,
                                          **model_load_options(trust_remote_code, f"PRM {directory}"))
    from peft import PeftModel

    if not metadata.base_model:
        raise ValueError(f"{directory}/{METADATA_FILENAME}: is_peft_adapter is true but base_model is not set")
    extra: dict[str, Any] = {}
    if style == "token_classification":
        extra["num_labels"] = _adapter_head_labels(directory)
    require_safetensors(metadata.base_model, f"{directory}/{METADATA_FILENAME} base_model")
    base = auto_class.from_pretrained(metadata.base_model, dtype=torch_dtype,
                                      **model_load_options(trust_remote_code, f"PRM base {metadata.base_model}"), **extra)
    return PeftModel.from_pretrained(base, str(directory)).merge_and_unload()


def _load_likelihood_scorer(directory: Path, metadata: PRMMetadata | None, dtype: str, device: str,
                            max_tokens_per_batch: int, trust_remote_code: bool, unused: dict[str, Any]) -> PRMScorer:
    """A plain causal LM (a policy checkpoint) as the likelihood verifier; a trained PRM is not one."""
    from inference.scoring.likelihood import LikelihoodScorer

    if metadata is not None:
        raise ValueError(f"{directory} is a trained PRM ({METADATA_FILENAME}, style {metadata.prm_style}); "
                         f"prm_style {LIKELIHOOD_STYLE} reads a plain causal LM such as a policy checkpoint")
    given = [key for key, value in unused.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} do not apply to prm_style {LIKELIHOOD_STYLE}; remove them")
    torch_device = resolve_device(device)
    model = _load_model(directory, LIKELIHOOD_STYLE, None, resolve_dtype(dtype, torch_device), trust_remote_code)
    tokenizer = _load_tokenizer(directory, None, trust_remote_code)
    return LikelihoodScorer(model, tokenizer, path=str(directory), device=torch_device,
                            max_tokens_per_batch=max_tokens_per_batch)


def is_loadable_prm_path(path: str | Path) -> bool:
    """A local directory, or `synthetic-checker` (no files): what to check before any slow work."""
    return str(path) == SYNTHETIC_CHECKER or Path(path).is_dir()


def load_scorer(
    path: str | Path,
    *,
    prm_style: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    max_tokens_per_batch: int = 8192,
    trust_remote_code: bool = False,
    step_tag: str | None = None,
    good_token: str | None = None,
    bad_token: str | None = None,
    prefix_cache_bytes: int | None = None,
) -> PRMScorer:
    """Load a PRM from a local checkpoint directory (or `synthetic-checker`, the synthetic world's exact checker).

    The style comes from the checkpoint's ttc_prm.json; `prm_style` is needed only for a checkpoint without
    one (a public PRM) and must agree with it otherwise. `step_tag` (step_tag style) and `good_token` /
    `bad_token` (causal styles) likewise default to the metadata, then to Math-Shepherd's `ки` and `+`/`-`.
    max_tokens_per_batch: padded tokens (rows x longest row) per forward pass. prefix_cache_bytes: the
    token-classification scorer's key/value cache for incremental scoring (None: its default; 0: off).
    """
    if str(path) == SYNTHETIC_CHECKER:
        # The synthetic world's exact checker: no checkpoint, so the options that shape how a model reads steps
        # would be ignored; refuse them instead (dtype, device and batch size have no model to apply to).
        given = {"prm_style": prm_style, "step_tag": step_tag, "good_token": good_token, "bad_token": bad_token,
                 "prefix_cache_bytes": prefix_cache_bytes}
        if any(value is not None for value in given.values()):
            raise ValueError(f"{SYNTHETIC_CHECKER} is not a model; remove "
                             f"{', '.join(k for k, v in given.items() if v is not None)}")
        return SyntheticCheckerScorer()
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"PRM path {directory} is not a directory; download the checkpoint to a local folder")
    metadata = PRMMetadata.load(directory) if (directory / METADATA_FILENAME).is_file() else None
    if prm_style is not None and prm_style not in SCORER_STYLES:
        raise ValueError(f"prm_style={prm_style!r} is not one of {', '.join(SCORER_STYLES)}")
    if metadata is None and prm_style is None:
        raise ValueError(
            f"{directory} has no {METADATA_FILENAME} and no prm_style was given; set prm_style to one of "
            f"{', '.join(SCORER_STYLES)}"
        )
    if prm_style == LIKELIHOOD_STYLE:
        return _load_likelihood_scorer(directory, metadata, dtype, device, max_tokens_per_batch, trust_remote_code,
                                       {"step_tag": step_tag, "good_token": good_token, "bad_token": bad_token,
                                        "prefix_cache_bytes": prefix_cache_bytes})
    style = _resolve("prm_style", prm_style, metadata.prm_style if metadata else None, None, metadata)
    kind, evidence = checkpoint_kind(directory)
    if kind == "policy":
        raise ValueError(
            f"{directory} is a policy checkpoint, not a PRM ({evidence}): prm_style {style!r} would read a judgement "
            f"it was never trained to give; to verify with a policy's own token probabilities set prm_style "
            f"{LIKELIHOOD_STYLE}, or point the PRM path at a PRM"
        )
    if style == "token_classification" and (step_tag, good_token, bad_token) != (None, None, None):
        raise ValueError("step_tag, good_token and bad_token apply to the causal PRM styles, not token_classification")
    if prefix_cache_bytes is not None and style != "token_classification":
        raise ValueError(f"prefix_cache_bytes applies to token_classification PRMs, not {style}")
    if style == "chat_plus_minus" and step_tag is not None:
        raise ValueError("step_tag applies only to prm_style 'step_tag', not chat_plus_minus")

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    base_model = metadata.base_model if metadata is not None and metadata.is_peft_adapter else None
    model = _load_model(directory, style, metadata, torch_dtype, trust_remote_code)
    tokenizer = _load_tokenizer(directory, base_model, trust_remote_code)
    common = {"path": str(directory), "device": torch_device, "max_tokens_per_batch": max_tokens_per_batch}
    if style == "token_classification":
        from inference.scoring.token_classification import TokenClassificationScorer

        return TokenClassificationScorer(
            model,
            tokenizer,
            step_separator=metadata.step_separator if metadata else PRMMetadata.step_separator,
            positive_label=metadata.positive_label if metadata else PRMMetadata.positive_label,
            **({} if prefix_cache_bytes is None else {"prefix_cache_bytes": prefix_cache_bytes}),
            **common,
        )
    tokens = {
        "good_token": _resolve("good_token", good_token, metadata.good_token if metadata else None, "+", metadata),
        "bad_token": _resolve("bad_token", bad_token, metadata.bad_token if metadata else None, "-", metadata),
    }
    if style == "chat_plus_minus":
        from inference.scoring.chat_plus_minus import ChatPlusMinusScorer

        return ChatPlusMinusScorer(model, tokenizer, **tokens, **common)
    from data_prep.labels import MATH_SHEPHERD_STEP_TAG
    from inference.scoring.step_tag import StepTagScorer

    tag = _resolve("step_tag", step_tag, metadata.step_tag if metadata else None, MATH_SHEPHERD_STEP_TAG, metadata)
    return StepTagScorer(model, tokenizer, step_tag=tag, **tokens, **common)
