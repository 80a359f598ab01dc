"""Train a process reward model: `accelerate launch training/train_prm.py --config configs/prm/<name>.yaml [--key value]`."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from training.logging_utils import configure_offline_defaults, configure_wandb, run_identity, setup_logging

logger = logging.getLogger("training.train_prm")


def main(argv: list[str] | None = None, *, callbacks: Sequence[Any] = (), save_model: bool = True) -> int:
    """Parse the config and train; `callbacks` and `save_model` are for in-process callers (benchmarks)."""
    configure_offline_defaults()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # PRMTrainer lives in trl.experimental (pinned, known)
    from data_prep.checkpoints import require_safetensors
    from data_prep.labels import LabelFileError
    from data_prep.yaml_files import load_yaml_mapping
    from training.generative import PRMInputError
    from training.prm import label_source_name, parse_args, train_prm

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if "--config" in argv[:-1]:
            # TRL reads the file with yaml.safe_load, which keeps the last of a repeated key without a word.
            load_yaml_mapping(argv[argv.index("--config") + 1])
        model_args, data_args, args, config_name = parse_args(argv)
    except (ValueError, OSError) as error:  # a bad key, value or file: HfArgumentParser and the dataclasses raise
        where = f"{argv[argv.index('--config') + 1]}: " if "from config file" in str(error) else ""
        print(f"train_prm.py: error: {where}{_one_line(error)}", file=sys.stderr)
        return 2
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


def _one_line(error: BaseException) -> str:
    """The error's message on one line (HfArgumentParser and PyYAML messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
