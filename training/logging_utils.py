"""Logging for training runs: a plain log file in output_dir, W&B offline unless an API key is set, no telemetry."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

LOG_FILENAME = "train.log"
WANDB_PROJECT = "ttc-prm"

logger = logging.getLogger(__name__)


def configure_offline_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set environment defaults so a run needs no network: W&B offline without WANDB_API_KEY, no hub telemetry.

    Only unset variables are filled in; returns the ones this call set.
    """
    env = os.environ if environ is None else environ
    defaults = {"HF_HUB_DISABLE_TELEMETRY": "1", "WANDB_PROJECT": WANDB_PROJECT}
    if not env.get("WANDB_API_KEY"):
        defaults["WANDB_MODE"] = "offline"
    changed = {key: value for key, value in defaults.items() if key not in env}
    env.update(changed)
    return changed


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unknown"


def run_identity(base_model: str, label_source: str, config_name: str | None) -> tuple[str, str]:
    """(run name, run group) naming the PRM: `<config>-<base model>-<label source>` grouped by base model."""
    base = _slug(Path(base_model.rstrip("/")).name)
    name = "-".join(_slug(part) for part in (config_name or "prm", base, label_source))
    return name, f"prm-{base}"


def configure_wandb(group: str, output_dir: str | Path, environ: dict[str, str] | None = None) -> None:
    """Point W&B at output_dir and name the group (the run name goes through TrainingArguments.run_name)."""
    env = os.environ if environ is None else environ
    env.setdefault("WANDB_RUN_GROUP", group)
    env.setdefault("WANDB_DIR", str(Path(output_dir).resolve()))


def setup_logging(output_dir: str | Path, is_main_process: bool = True, level: int = logging.INFO) -> Path | None:
    """Log ttc, transformers and TRL messages to stderr and (main process only) to `<output_dir>/train.log`."""
    import transformers

    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    root = logging.getLogger()
    root.setLevel(level if is_main_process else logging.WARNING)
    if not any(isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr for handler in root.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)
    transformers.utils.logging.set_verbosity(level if is_main_process else logging.WARNING)
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    if not is_main_process:
        return None
    path = Path(output_dir) / LOG_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    resolved = str(path.resolve())
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == resolved for h in root.handlers):
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    return path
