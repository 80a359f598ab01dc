"""Package a PRM trained by train_prm.py as the shipped verifier checkpoint: bf16 weights, tokenizer, manifest.

The shipped verifier is the starting point of the pipeline's in-run PRMs, the way the shipped tiny policies are the
starting point of its search: training a PRM that checks the synthetic world's arithmetic takes more than an hour
on 2 CPU cores (configs/prm/tiny_corrupted.yaml), far more than a quickstart can afford. This script measures what
the checkpoint does on held-out problems and writes the manifest that tests/e2e/test_shipped_verifier.py checks:

    python scripts/ship_verifier.py --retrain                # RECIPE in this file, then ship (about 90 minutes)
    python scripts/ship_verifier.py --source runs/verifier2/prm --train-seconds 5100   # ship a finished run

The held-out measurement is the pipeline's own: `ttc-data corrupt --split test` (gold and corrupted solutions of
test problems, labelled by the checker) scored by `ttc-infer processbench`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_FILENAME = "ttc_prm_manifest.json"
BACKBONE = "checkpoints/policy-large"

RECIPE: tuple[tuple[str, ...], ...] = (
    # Checker-labelled gold and corrupted solutions of train problems (seconds, no model).
    ("-m", "data_prep.cli", "corrupt", "--out", "runs/corrupted/train.jsonl", "--num_per_level", "2000",
     "--corrupted_per_problem", "3"),
    # 3000 steps from policy-large's weights: the head starts comparing written results after 2000-2500 steps.
    ("training/train_prm.py", "--config", "configs/prm/tiny_corrupted.yaml", "--use_cpu", "true", "--bf16", "true",
     "--save_steps", "250"),
    # 1500 more steps at a lower peak learning rate, from where the first run ended.
    ("training/train_prm.py", "--config", "configs/prm/tiny_corrupted.yaml", "--use_cpu", "true", "--bf16", "true",
     "--model_name_or_path", "runs/corrupted/prm", "--output_dir", "runs/verifier2/prm", "--learning_rate", "2e-4",
     "--warmup_steps", "50", "--max_steps", "1500", "--save_steps", "250", "--save_total_limit", "10", "--seed", "1"),
)
"""The commands that made the shipped verifier (each run as `python <args>` from the repository root)."""
RECIPE_OUTPUT = Path("runs/verifier2/prm")


def recipe_commands() -> list[str]:
    """RECIPE as the manifest writes it."""
    return [shlex.join(("python", *args)) for args in RECIPE]


@dataclass(frozen=True)
class HeldOutCheck:
    """How the manifest's held-out figures were measured (the shipped-verifier test repeats it)."""

    split: str = "test"
    num_per_level: int = 40
    corrupted_per_problem: int = 2
    seed: int = 0


@dataclass
class VerifierManifest:
    """What made the shipped verifier and what it does on held-out problems."""

    commands: list[str]
    """The commands that trained it, in order (data, then each training run)."""
    config: str
    config_sha256: str
    """`config_sha256(config)` when the checkpoint was made: the settings in the repo made these weights."""
    backbone: str
    num_parameters: int
    torch_dtype: str
    train_seconds: float
    heldout: dict = field(default_factory=dict)
    """The `HeldOutCheck` settings."""
    gold_vs_corrupted_step_auroc: float = 0.0
    gold_vs_corrupted_f1: float = 0.0
    backbone_config_hash: str = ""
    """The backbone policy's manifest `config_hash` when the verifier was made: which weights it grew from, so a
    retrained policy-large is not mistaken for them."""

    def save(self, directory: Path) -> Path:
        from data_prep.json_records import write_json_record

        return write_json_record(self, directory / MANIFEST_FILENAME)

    @classmethod
    def load(cls, directory: str | Path) -> "VerifierManifest":
        from data_prep.json_records import read_json_record

        return read_json_record(cls, Path(directory) / MANIFEST_FILENAME,
                                missing=f"{directory} is not a verifier written by scripts/ship_verifier.py")


def policy_config_hash(policy_dir: Path) -> str:
    """The `config_hash` in a tiny policy's manifest (its one reader: a clear error for a directory without one)."""
    from training.policy import PolicyManifest

    return PolicyManifest.load(policy_dir).config_hash


def describe(verifier_dir: Path, large_policy: Path) -> str:
    """What the pipeline prints about the verifier it starts from, including whether it grew from `large_policy`."""
    manifest = VerifierManifest.load(verifier_dir)
    lines = [f"{verifier_dir}: held-out gold-vs-corrupted step AUROC {manifest.gold_vs_corrupted_step_auroc}"]
    current = policy_config_hash(large_policy)
    if manifest.backbone_config_hash and manifest.backbone_config_hash != current:
        lines.append(f"note: it grew from an earlier {manifest.backbone} "
                     f"(config hash {manifest.backbone_config_hash}), not from {large_policy} ({current}); the in-run "
                     "PRMs fine-tune it on this run's policies' samples, and --retrain_verifier grows a new one")
    return "\n".join(lines)


def config_sha256(path: Path) -> str:
    """Hash of the config's settings (not its comments), so documenting the recipe does not orphan the checkpoint."""
    import yaml

    settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def measure_heldout(checkpoint: Path, check: HeldOutCheck, work_dir: Path) -> dict:
    """ProcessBench-style figures of `checkpoint` on held-out gold and corrupted solutions (the pipeline's stage)."""
    data = work_dir / "heldout_corrupted.jsonl"
    subprocess.run(
        [sys.executable, "-m", "data_prep.cli", "corrupt", "--split", check.split, "--out", str(data),
         "--num_per_level", str(check.num_per_level), "--corrupted_per_problem", str(check.corrupted_per_problem),
         "--seed", str(check.seed)],
        check=True, cwd=REPO_ROOT,
    )
    subprocess.run(
        [sys.executable, "-m", "inference.cli", "processbench", "--config", "configs/eval/processbench_tiny.yaml",
         "--data", str(data), "--prms", json.dumps({"verifier": str(checkpoint)}),
         "--output_dir", str(work_dir / "processbench")],
        check=True, cwd=REPO_ROOT,
    )
    return json.loads((work_dir / "processbench" / "processbench-verifier.json").read_text(encoding="utf-8"))


def ship(source: Path, out: Path, commands: list[str], config: Path, train_seconds: float,
         check: HeldOutCheck) -> VerifierManifest:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from data_prep.prm_metadata import PRMMetadata

    metadata = PRMMetadata.load(source)  # refuses anything that is not a train_prm.py checkpoint
    if metadata.prm_style != "token_classification" or metadata.is_peft_adapter:
        raise ValueError(f"{source}: the shipped verifier must be a full token-classification PRM, "
                         f"got {metadata.prm_style} (adapter: {metadata.is_peft_adapter})")
    model = AutoModelForTokenClassification.from_pretrained(source, dtype=torch.bfloat16, use_safetensors=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    # A continued run records the previous stage as its base; the shipped copy names the backbone it grew from.
    train_config = dict(metadata.train_config or {}, stages=len(commands) - 1)
    PRMMetadata(**{**asdict(metadata), "base_model": BACKBONE, "train_config": train_config}).save(out)

    with tempfile.TemporaryDirectory() as work_dir:
        result = measure_heldout(out, check, Path(work_dir))
    manifest = VerifierManifest(
        commands=commands, config=str(config), config_sha256=config_sha256(REPO_ROOT / config), backbone=BACKBONE,
        num_parameters=model.num_parameters(), torch_dtype="bfloat16", train_seconds=train_seconds,
        heldout=asdict(check), gold_vs_corrupted_step_auroc=round(result["step_auroc"], 4),
        gold_vs_corrupted_f1=round(result["tuned"]["f1"], 4),
        backbone_config_hash=policy_config_hash(REPO_ROOT / BACKBONE),
    )
    manifest.save(out)
    return manifest


def retrain() -> float:
    """Run RECIPE; its wall time in seconds."""
    import time

    started = time.time()
    for args in RECIPE:
        print("+ python", shlex.join(args), flush=True)
        subprocess.run([sys.executable, *args], check=True, cwd=REPO_ROOT)
    return round(time.time() - started, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true",
                        help="run the recipe (RECIPE in this file, about 90 minutes on 2 cores), then ship its result")
    parser.add_argument("--source", type=Path, default=None, help="PRM directory written by training/train_prm.py")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/prm-verifier"))
    parser.add_argument("--command", dest="commands", action="append", default=None,
                        help="a command that made the checkpoint, in order (repeat; default: the recipe's)")
    parser.add_argument("--config", type=Path, default=Path("configs/prm/tiny_corrupted.yaml"),
                        help="the recipe's config, hashed into the manifest")
    parser.add_argument("--train-seconds", type=float, default=None, help="wall time of all training runs")
    parser.add_argument("--describe", type=Path, default=None, metavar="LARGE_POLICY",
                        help="ship nothing: print what --out's manifest says, and whether it grew from LARGE_POLICY")
    args = parser.parse_args(argv)
    if args.describe is not None:
        print(describe(args.out, args.describe))
        return 0
    if args.retrain:
        args.train_seconds, args.source, args.commands = retrain(), RECIPE_OUTPUT, None
    elif args.source is None or args.train_seconds is None:
        parser.error("give --source and --train-seconds, or --retrain")
    commands = args.commands or recipe_commands()
    manifest = ship(args.source, args.out, commands, args.config, args.train_seconds, HeldOutCheck())
    print(f"shipped {args.source} -> {args.out}: held-out gold-vs-corrupted step AUROC "
          f"{manifest.gold_vs_corrupted_step_auroc:.3f}, F1 {manifest.gold_vs_corrupted_f1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
