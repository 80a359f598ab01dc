"""Train a process reward model: `accelerate launch training/train_prm.py --config configs/prm/<name>.yaml [--key value]`."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from training.logging_utils import configure_offline_defaults, configure_wandb, run_identity, setup_logging

logger = logging.getLogger("training.train_prm")


def main(argv: list[str] | None = None, *, callbacks: Sequence[Any] = (), save_model: bool = True) -> int:
    """Parse the config and train; `callbacks` and `save_model` are for in-process callers (benchmarks)."""
    configure_offline_defaults()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # PRMTrainer lives in trl.experimental (pinned, known)
    # The configs name the key every transformers version the pyproject admits reads (4.56 has no
    # `activation_checkpointing`); its rename is no news to the user, and would sit above any error line.
    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)
    from data_prep.checkpoints import require_safetensors
    from data_prep.labels import LabelFileError
    from data_prep.yaml_files import load_yaml_mapping
    from training.generative import PRMInputError
    from training.prm import label_source_name, parse_args, train_prm

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    # argparse prints its whole usage (a hundred lines of TrainingArguments) before a bad value's error: hold it.
    held, config = io.StringIO(), {}
    try:
        # TRL reads the file with yaml.safe_load, which keeps the last of a repeated key without a word.
        config = load_yaml_mapping(config_path) if config_path else {}
        with contextlib.redirect_stderr(held):
            model_args, data_args, args, config_name = parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a bad flag or value (2)
        if not exit_.code:
            return 0
        errors = [line.split(": error: ", 1)[1] for line in held.getvalue().splitlines() if ": error: " in line]
        message = errors[-1] if errors else (held.getvalue().strip().splitlines() or ["a bad command line"])[-1]
        print(f"train_prm.py: error: {_config_key(message, config, config_path, argv)}{message}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:  # a bad key, value or file: HfArgumentParser and the dataclasses raise
        message = _one_line(error)
        where = f"{config_path}: " if "from config file" in message else _config_key(message, config, config_path, argv)
        print(f"train_prm.py: error: {where}{message}", file=sys.stderr)
        return 2
    sys.stderr.write(held.getvalue())
    setup_logging(args.output_dir, is_main_process=args.process_index == 0)
    if model_args.trust_remote_code:
        logger.warning("trust_remote_code is on, so Python code shipped with %s will run",
                       model_args.model_name_or_path or model_args.tokenizer_name_or_path)
    try:
        # Pickle weights can run code when loaded; ttc reads safetensors only (a hub id is left to the loader).
        if model_args.model_name_or_path:
            require_safetensors(model_args.model_name_or_path, "model_name_or_path")
    except ValueError as error:
        print(f"train_prm.py: error: {_one_line(error)}", file=sys.stderr)
        return 2
    base = model_args.model_name_or_path or f"random-{model_args.init_from_config}"
    run_name, group = run_identity(base, label_source_name(data_args), config_name)
    if args.run_name in (None, args.output_dir):
        args.run_name = run_name
    configure_wandb(group, args.output_dir)
    try:
        result = train_prm(model_args, data_args, args, config_name, callbacks=callbacks, save_model=save_model)
    except (PRMInputError, LabelFileError, FileNotFoundError) as error:
        # Raised before any model is built: a label file, path or tokenizer that does not fit; one line.
        print(f"train_prm.py: error: {_one_line(error)}", file=sys.stderr)
        return 2
    logger.info("done: %s after %d steps, train loss %.4f", result.output_dir, result.global_step, result.train_loss)
    return 0


def _config_key(message: str, config: dict, config_path: str | None, argv: list[str]) -> str:
    """`<config file>: ` when the flag an error names came from the config file, not the command line."""
    flag = re.search(r"--(\w+)", message)
    if flag and config_path and flag.group(1) in config and f"--{flag.group(1)}" not in argv:
        return f"{config_path}: "
    return ""


def _one_line(error: BaseException) -> str:
    """The error's message on one line (HfArgumentParser and PyYAML messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
