"""Train one tiny Llama policy on synthetic-world gold solutions: `python training/train_policy.py --config configs/policy/small.yaml`."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

if __package__ in (None, ""):
    # Run as a script (`python training/train_policy.py`): make the repository root importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trl import SFTConfig, TrlParser

from training.policy import PolicyModelArguments, train_policy


@dataclass
class PolicySFTConfig(SFTConfig):
    """TRL's SFTConfig plus ttc's resume switch."""

    resume: bool = False
    """Continue from the last checkpoint in output_dir."""


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("WANDB_MODE", "offline")
    parser = TrlParser((PolicyModelArguments, PolicySFTConfig))
    model_args, sft_config = parser.parse_args_and_config(argv)
    manifest = train_policy(model_args, sft_config)
    print(f"saved {manifest.policy_name} ({manifest.num_parameters:,} parameters) to {sft_config.output_dir}")
    print("greedy accuracy:", ", ".join(f"{k}={v:.2f}" for k, v in manifest.greedy_accuracy.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
