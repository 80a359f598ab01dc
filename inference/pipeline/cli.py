"""The main job on the embedded default, in one command: world -> labels -> PRMs -> search -> eval -> report.

Every stage is one of ttc's own commands (`ttc-data`, `ttc-infer`, `accelerate launch training/train_prm.py`),
run as a subprocess so the training and inference arms stay independent. A stage is skipped when its cache key
(its command line, the content of the config files it reads and the keys of the stages it depends on) matches
the key recorded when it last finished; so a second run starts at the first changed stage, and a run stopped
with Ctrl-C resumes at the interrupted stage (whose own command resumes where it can). `--force` redoes all.

    python scripts/pipeline.py                    # default scale, about 8 minutes on 2 CPU cores
    python scripts/pipeline.py --scale smoke      # every stage on a handful of problems (tests)
    python scripts/pipeline.py --scale large      # more problems and a larger budget, for a patient user
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import typing
from pathlib import Path

from data_prep.checkpoints import checkpoint_kind, require_policy_checkpoint
from data_prep.flags import hyphen_spelling_error
from inference.pipeline.cache import StageFailed, run_stages
from inference.pipeline.scales import SCALES
from inference.pipeline.stages import (
    REPO_ROOT,
    PipelineOptions,
    build_stages,
    stage_names,
)
from inference.pipeline.summary import summary_lines


class UsageError(Exception):
    """A command line argparse refuses."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # argparse would print usage and exit: one line instead
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def check_checkpoints(opts: PipelineOptions) -> None:
    """Refuse, before any stage runs, a checkpoint option that names a missing directory or the other kind of
    checkpoint (a PRM as a policy writes noise for minutes; a policy as the PRMs' base trains a head from nothing)."""
    policies = (("--small_policy", opts.small_policy), ("--large_policy", opts.large_policy))
    for flag, path in policies:
        if not opts.retrain_policies and not Path(path).is_dir():
            raise UsageError(f"{flag} {path}: checkpoint directory not found; point it at a policy or add "
                             "--retrain_policies to train one there")
        require_policy_checkpoint(path, key=flag)
    if not opts.retrain_verifier and not Path(opts.prm_base).is_dir():
        raise UsageError(f"--prm_base {opts.prm_base}: checkpoint directory not found; point it at the verifier PRM "
                         "or add --retrain_verifier to train one there")
    kind, evidence = checkpoint_kind(opts.prm_base) if Path(opts.prm_base).is_dir() else ("unknown", "")
    if kind == "policy":
        raise UsageError(f"--prm_base {opts.prm_base} is a policy checkpoint, not a PRM ({evidence}); the in-run "
                         "PRMs start from a PRM (checkpoints/prm-verifier)")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipeline.py",
        description=__doc__.split("\n\n")[0],
        epilog=f"Stages: {', '.join(stage_names())}. Logs: <run_dir>/logs/<stage>.log.",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="default",
                        help="how much work: smoke (tests, ~2 min), default (~8 min on 2 cores), large (patient users)")
    parser.add_argument("--run_dir", default=None, help="where everything goes (default: runs/<scale>)")
    parser.add_argument("--small_policy", default="checkpoints/policy-small", help="the policy that searches")
    parser.add_argument("--large_policy", default="checkpoints/policy-large",
                        help="the reference policy (greedy decoding); the verifier stage notes whether the verifier "
                             "grew from it (--retrain_verifier grows one from configs/prm/tiny_corrupted.yaml's "
                             "model_name_or_path, checkpoints/policy-large)")
    parser.add_argument("--retrain_policies", action="store_true",
                        help="train both tiny policies with training/train_policy.py instead of using the shipped ones "
                        "(writes into --small_policy/--large_policy)")
    parser.add_argument("--prm_base", default="checkpoints/prm-verifier",
                        help="the in-run PRMs' initial weights: the shipped verifier PRM (see its manifest)")
    parser.add_argument("--retrain_verifier", action="store_true",
                        help="retrain the verifier PRM with scripts/ship_verifier.py --retrain (about 90 minutes on "
                        "2 cores) instead of using the shipped one (writes into --prm_base)")
    parser.add_argument("--force", action="store_true", help="redo every stage, ignoring the cache")
    parser.add_argument("--no_wandb", action="store_true", help="skip the W&B offline runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="run only these stages (and skip the rest)")
    parser.add_argument("--jobs", default="auto",
                        help="stages run at once, each as soon as the stages it needs are done, its output in its "
                        "log only (1: one at a time, output on the terminal too). auto: min(4, CPU cores), each "
                        "stage with cores / jobs threads (OMP_NUM_THREADS; the tiny models run faster as two "
                        "one-thread processes than as one two-thread process on 2 cores)")
    return parser


def parallelism(jobs: str, cores: int) -> tuple[int, int | None]:
    """(stages at once, OMP threads per stage or None for the command's default) for `--jobs` on `cores` cores."""
    if jobs == "auto":
        count = max(1, min(4, cores))
        return count, max(1, cores // count)
    try:
        count = int(jobs)
    except ValueError:
        raise UsageError(f"--jobs must be a whole number >= 1 or auto, got {jobs!r}") from None
    if count < 1:
        raise UsageError(f"--jobs must be a whole number >= 1 or auto, got {jobs!r}")
    return count, (max(1, cores // count) if count > 1 else None)


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline; 0 when every stage finished, 1 when one failed, 2 for a usage error, 130 when interrupted."""
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    spelling = hyphen_spelling_error(parser, argv)
    if spelling:
        print(f"pipeline.py: error: {spelling}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
        jobs, threads = parallelism(args.jobs, len(os.sched_getaffinity(0)))
        opts = PipelineOptions(
            run_dir=Path(args.run_dir or f"runs/{args.scale}"), scale=SCALES[args.scale],
            small_policy=args.small_policy, large_policy=args.large_policy, force=args.force,
            retrain_policies=args.retrain_policies, wandb=not args.no_wandb, seed=args.seed,
            prm_base=args.prm_base, retrain_verifier=args.retrain_verifier,
            jobs=jobs, threads_per_stage=threads,
        )
        os.chdir(REPO_ROOT)
        check_checkpoints(opts)
    except (UsageError, ValueError) as error:
        print(f"pipeline: error: {error}", file=sys.stderr)
        return 2
    started = time.time()
    # A plain SIGTERM behaves like Ctrl-C: stop and leave the finished stages cached. SIGINT too, even when the
    # pipeline starts from a background job of a script, which hands it SIGINT ignored (Python then installs no
    # KeyboardInterrupt handler and `kill -INT` would be lost).
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_stages(build_stages(opts), opts, only=args.only)
    except StageFailed as error:
        print(f"pipeline: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\npipeline: interrupted; run the same command again to resume at the interrupted stage",
              file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"\nfinished in {time.time() - started:.0f}s. Report: {opts.run_dir / 'report' / 'report.html'}")
    try:
        lines = summary_lines(opts)
    except ValueError as error:  # e.g. two arms of a headline claim evaluated on different problems
        print(f"pipeline: error: summary: {error}", file=sys.stderr)
        return 1
    for line in lines:
        print("  " + line)
    return 0
