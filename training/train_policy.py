"""Train one tiny Llama policy on synthetic-world gold solutions: `python training/train_policy.py --config configs/policy/small.yaml`.

`python training/train_policy.py --describe DIR [DIR ...]` trains nothing: it prints what each shipped policy's
manifest says (the pipeline's check of the policies it starts from).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trl import SFTConfig, TrlParser

from training.policy import PolicyManifest, PolicyModelArguments, train_policy


@dataclass
class PolicySFTConfig(SFTConfig):
    """TRL's SFTConfig plus ttc's resume switch."""

    resume: bool = False
    """Continue from the last checkpoint in output_dir."""


def describe(policy_dirs: Sequence[str | Path]) -> str:
    """One line a policy: its directory, name, size and the greedy accuracy per level its manifest records."""
    lines = []
    for directory in policy_dirs:
        manifest = PolicyManifest.load(directory)
        accuracies = ", ".join(f"{level}={value}" for level, value in manifest.greedy_accuracy.items())
        lines.append(f"{directory}: {manifest.policy_name}, {manifest.num_parameters:,} parameters, greedy accuracy "
                     f"{accuracies} ({manifest.eval_problems_per_level} problems per level)")
    return "\n".join(lines)


def _describe_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="train_policy.py",
                                     description="Train nothing: print what each policy's manifest says.")
    parser.add_argument("--describe", nargs="+", required=True, metavar="DIR",
                        help="policy directories written by train_policy.py (e.g. checkpoints/policy-small)")
    args = parser.parse_args(argv)
    try:
        print(describe(args.describe))
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--describe" in argv:
        return _describe_main(argv)
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
