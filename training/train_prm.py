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
    from data_prep.labels import LabelFileError
    from training.generative import PRMInputError
    from training.prm import label_source_name, parse_args, train_prm

    model_args, data_args, args, config_name = parse_args(argv)
    setup_logging(args.output_dir, is_main_process=args.process_index == 0)
    base = model_args.model_name_or_path or f"random-{model_args.init_from_config}"
    run_name, group = run_identity(base, label_source_name(data_args), config_name)
    if args.run_name in (None, args.output_dir):
        args.run_name = run_name
    configure_wandb(group, args.output_dir)
    try:
        result = train_prm(model_args, data_args, args, config_name, callbacks=callbacks, save_model=save_model)
    except (PRMInputError, LabelFileError) as error:
        # Raised before training starts: a label file or tokenizer that does not fit; one line, no traceback.
        print(f"train_prm.py: error: {error}", file=sys.stderr)
        return 2
    logger.info("done: %s after %d steps, train loss %.4f", result.output_dir, result.global_step, result.train_loss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
