"""configs/prm/tiny_corrupted.yaml: parses (unknown keys are errors) and trains on what `ttc-data corrupt` writes."""

from __future__ import annotations

from pathlib import Path

from data_prep.cli import make_parser
from training.prm import parse_args

REPO = Path(__file__).resolve().parents[3]
CONFIG = str(REPO / "configs/prm/tiny_corrupted.yaml")


def test_corrupted_recipe_parses_and_reads_the_corrupt_commands_output() -> None:
    model_args, data_args, args, name = parse_args(["--config", CONFIG, "--use_cpu", "true"])
    assert name == "tiny_corrupted"
    assert model_args.model_name_or_path == "checkpoints/policy-large" and not model_args.use_peft
    assert data_args.data_format == "stepwise"
    # The header's data command writes the file the config trains on.
    header = Path(CONFIG).read_text().split("\n# Then:")[0]
    command = next(line for line in header.splitlines() if "ttc-data corrupt" in line).split("ttc-data ", 1)[1]
    parsed = make_parser().parse_args(command.split())
    assert [str(parsed.out)] == data_args.train_files
    # Long enough to pass the plateau measured before ~2000 steps of 32.
    assert args.max_steps * args.per_device_train_batch_size >= 64_000
