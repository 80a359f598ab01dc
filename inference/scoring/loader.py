"""`load_scorer`: a PRM checkpoint directory -> the scorer of its declared style, with clear errors for the wrong kind.

Which styles exist, what each reads and how it loads is `inference.scoring.styles.STYLES`; this module checks the
directory, its metadata and the options against that entry, then calls the entry's load function.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from data_prep.checkpoints import checkpoint_kind
from data_prep.prm_metadata import METADATA_FILENAME, PRMMetadata
from inference.generation.common import resolve_device, resolve_dtype
from inference.scoring.checker import SYNTHETIC_CHECKER, SyntheticCheckerScorer
from inference.scoring.checkpoint import declared_architectures
from inference.scoring.styles import STYLE_NAMES, STYLES, StyleRequest, check_architecture, resolve_option
from inference.types import PRMScorer

logger = logging.getLogger(__name__)


def _check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The given options the style reads; one it does not read is an error naming the ones it does."""
    spec = STYLES[name]
    given = {key: value for key, value in options.items() if value is not None}
    foreign = [key for key in given if key not in spec.options]
    if foreign:
        takes = f"it takes {', '.join(spec.options)}" if spec.options else "it takes no options"
        raise ValueError(f"{', '.join(foreign)} {'does' if len(foreign) == 1 else 'do'} not apply to prm_style "
                         f"{name!r} ({takes}); remove {'it' if len(foreign) == 1 else 'them'}")
    return given


def is_loadable_prm_path(path: str | Path) -> bool:
    """A local directory, or `synthetic-checker` (no files): what to check before any slow work."""
    return str(path) == SYNTHETIC_CHECKER or Path(path).is_dir()


def resolve_style(directory: Path, prm_style: str | None) -> tuple[str, PRMMetadata | None]:
    """The style a PRM directory is read with and its metadata, from its files alone (no weights load): a missing
    directory, a policy checkpoint in a judgement style, or a trained PRM in a plain-LM style is refused by name."""
    if not directory.is_dir():
        raise FileNotFoundError(f"PRM path {directory} is not a directory; download the checkpoint to a local folder")
    metadata = PRMMetadata.load(directory) if (directory / METADATA_FILENAME).is_file() else None
    if prm_style is not None and prm_style not in STYLES:
        raise ValueError(f"prm_style={prm_style!r} is not one of {', '.join(STYLE_NAMES)}")
    if metadata is None and prm_style is None:
        kind, evidence = checkpoint_kind(directory)
        if kind == "policy":
            plain = [name for name, spec in STYLES.items() if spec.reads_plain_lm]
            raise ValueError(f"{directory} is a policy checkpoint, not a PRM ({evidence}); point the PRM path at a "
                             f"PRM, or set prm_style {' or '.join(plain)} to verify with the policy's own token "
                             "probabilities")
        raise ValueError(
            f"{directory} has no {METADATA_FILENAME} and no prm_style was given; set prm_style to one of "
            f"{', '.join(STYLE_NAMES)}"
        )
    if prm_style is not None and STYLES[prm_style].reads_plain_lm:
        if metadata is not None:
            raise ValueError(f"{directory} is a trained PRM ({METADATA_FILENAME}, style {metadata.prm_style}); "
                             f"prm_style {prm_style} reads a plain causal LM such as a policy checkpoint")
        style = prm_style
    else:
        style = resolve_option("prm_style", prm_style, metadata.prm_style if metadata else None, None, metadata)
        kind, evidence = checkpoint_kind(directory)
        if kind == "policy":
            plain = [name for name, spec in STYLES.items() if spec.reads_plain_lm]
            raise ValueError(
                f"{directory} is a policy checkpoint, not a PRM ({evidence}): prm_style {style!r} would read a "
                f"judgement it was never trained to give; to verify with a policy's own token probabilities set "
                f"prm_style {' or '.join(plain)}, or point the PRM path at a PRM"
            )
    return style, metadata


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
    backend: str = "transformers",
    gpu_memory_utilization: float | None = None,
) -> PRMScorer:
    """Load a PRM from a local checkpoint directory (or `synthetic-checker`, the synthetic world's exact checker).

    The style comes from the checkpoint's ttc_prm.json; `prm_style` is needed only for a checkpoint without
    one (a public PRM) and must agree with it otherwise. `step_tag` (step_tag style) and `good_token` /
    `bad_token` (causal styles) likewise default to the metadata, then to Math-Shepherd's `ки` and `+`/`-`.
    max_tokens_per_batch: padded tokens (rows x longest row) per forward pass. prefix_cache_bytes: the
    token-classification scorer's key/value cache for incremental scoring (None: its default; 0: off).
    backend: `transformers` (every style) or `vllm` (`inference.scoring.vllm_scorer.VLLM_READINGS`: vLLM batches
    by itself, so max_tokens_per_batch does not apply; gpu_memory_utilization is its engine's share, None 0.4).
    """
    if backend not in ("transformers", "vllm"):
        raise ValueError(f"PRM backend {backend!r} is not one of transformers, vllm")
    if backend == "transformers" and gpu_memory_utilization is not None:
        raise ValueError("gpu_memory_utilization applies to the vllm PRM backend only; remove it")
    options = {"step_tag": step_tag, "good_token": good_token, "bad_token": bad_token,
               "prefix_cache_bytes": prefix_cache_bytes}
    if str(path) == SYNTHETIC_CHECKER:
        # The synthetic world's exact checker: no checkpoint, so the options that shape how a model reads steps
        # would be ignored; refuse them instead (dtype, device and batch size have no model to apply to).
        given = {"prm_style": prm_style, **options, "backend": None if backend == "transformers" else backend}
        if any(value is not None for value in given.values()):
            raise ValueError(f"{SYNTHETIC_CHECKER} is not a model; remove "
                             f"{', '.join(k for k, v in given.items() if v is not None)}")
        return SyntheticCheckerScorer()
    directory = Path(path)
    style, metadata = resolve_style(directory, prm_style)
    given = _check_options(style, options)
    if metadata is None or not metadata.is_peft_adapter:
        # A full checkpoint's declared class must fit the style before any weights load.
        architectures = declared_architectures(directory)
        if architectures:
            check_architecture(directory, style, architectures)
        else:
            logger.warning("%s/config.json declares no architectures; cannot check it fits prm_style %r",
                           directory, style)
    if backend == "vllm":
        from inference.scoring.vllm_scorer import load_vllm_scorer

        engine = {} if gpu_memory_utilization is None else {"gpu_memory_utilization": gpu_memory_utilization}
        return load_vllm_scorer(style, directory, metadata, given, dtype=dtype, device=device,
                                trust_remote_code=trust_remote_code, **engine)
    torch_device = resolve_device(device)
    request = StyleRequest(directory=directory, metadata=metadata, device=torch_device,
                           dtype=resolve_dtype(dtype, torch_device), max_tokens_per_batch=max_tokens_per_batch,
                           trust_remote_code=trust_remote_code, options=given)
    return STYLES[style].load(request)
