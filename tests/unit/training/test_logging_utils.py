"""Offline defaults (W&B offline without an API key), run names and the plain log file."""

from __future__ import annotations

import logging
from pathlib import Path

from training.logging_utils import configure_offline_defaults, configure_wandb, run_identity, setup_logging


def test_wandb_is_offline_without_an_api_key() -> None:
    env: dict[str, str] = {}
    changed = configure_offline_defaults(env)
    assert env["WANDB_MODE"] == "offline"
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert changed == env


def test_an_api_key_or_an_explicit_mode_is_respected() -> None:
    with_key = {"WANDB_API_KEY": "k"}
    configure_offline_defaults(with_key)
    assert "WANDB_MODE" not in with_key
    explicit = {"WANDB_MODE": "disabled", "WANDB_PROJECT": "mine"}
    configure_offline_defaults(explicit)
    assert (explicit["WANDB_MODE"], explicit["WANDB_PROJECT"]) == ("disabled", "mine")


def test_run_identity_names_config_base_model_and_label_source(tmp_path: Path) -> None:
    name, group = run_identity("meta-llama/Llama-3.1-8B", "mc soft k8", "llama31_8b_lora")
    assert name == "llama31_8b_lora-Llama-3.1-8B-mc-soft-k8"
    assert group == "prm-Llama-3.1-8B"
    env: dict[str, str] = {}
    configure_wandb(group, tmp_path, env)
    assert env == {"WANDB_RUN_GROUP": group, "WANDB_DIR": str(tmp_path.resolve())}


def test_log_file_is_written_in_output_dir(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        path = setup_logging(tmp_path)
        logging.getLogger("training.test").info("hello from the test")
        for handler in root.handlers:
            handler.flush()
        assert path == tmp_path / "train.log"
        assert "hello from the test" in path.read_text()
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
