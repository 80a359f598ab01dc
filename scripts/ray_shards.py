"""Run one `ttc-infer run` config as k shards on a Ray cluster (or a local Ray instance), then merge and evaluate."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

PROG = "ray_shards"
DESCRIPTION = """\
Run `ttc-infer run --config CONFIG --shard i/k` for i = 0..k-1 as Ray tasks, then `ttc-infer merge` the k shard
files into one and `ttc-infer eval` it.

Each task runs the CLI in a subprocess: the backend (vLLM above all) gets a fresh process with its own CUDA
context, and the GPU memory is released when the shard ends. A shard behaves exactly as it does under Slurm: it
appends its rows to <output_dir>/results.shard-i-of-k.jsonl, and rerunning this command resumes every shard
(finished shards return at once). Each shard's stdout and stderr go to <output_dir>/logs/shard-i-of-k.log.

Any other --key value (e.g. --seed 1, --benchmark.limit 50) is a config key passed to every shard, as
`ttc-infer run` reads it. Without --address a local Ray instance is started on this machine; on a cluster, every
node needs the project installed and the config, models and output directory at the same paths (a shared
filesystem), as under Slurm.
"""
EPILOG = """\
examples:
  python scripts/ray_shards.py --config configs/infer/math500_llama1b_vllm.yaml --shards 8 --address auto
  python scripts/ray_shards.py --config configs/infer/tiny.yaml --shards 2 --num_cpus 2 --seed 1
"""
MISSING_RAY = "ray is not installed; install the ray extra: pip install -e '.[ray]'"
STOPPED_EXIT_CODES = (130, 143)
"""`ttc-infer run` stopped by Ctrl-C or SIGTERM (e.g. a preempted node): worth a retry, unlike an error."""


class ShardStopped(Exception):
    """A shard's process was stopped by a signal; Ray retries the task (the shard resumes)."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the `ttc-infer run` config every shard runs")
    parser.add_argument("--shards", type=int, required=True, metavar="K", help="number of shards k (>= 1)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (`auto`, or `ray://host:10001`); default: start a local instance")
    parser.add_argument("--num_cpus", type=int, default=None,
                        help="local instance only: CPUs Ray may schedule on (default: all of this machine's)")
    parser.add_argument("--object_store_mb", type=int, default=100,
                        help="local instance only: Ray's object store size; shards return only their exit code "
                             "(default: 100)")
    parser.add_argument("--gpus_per_shard", type=float, default=None,
                        help="GPUs each shard asks for (default: 1 when the cluster has GPUs, else 0)")
    parser.add_argument("--cpus_per_shard", type=float, default=1.0, help="CPUs each shard asks for (default: 1)")
    parser.add_argument("--max_retries", type=int, default=3,
                        help="retries of a shard whose worker or node died or whose run was stopped by a signal; "
                             "a shard that fails with an error is not retried (default: 3)")
    parser.add_argument("--merged", default=None,
                        help="merged results file (default: <output_dir>/merged.jsonl)")
    parser.add_argument("--eval_dir", default=None,
                        help="`ttc-infer eval` output directory (default: <output_dir>/eval)")
    parser.add_argument("--eval_config", default=None,
                        help="YAML file of `ttc-infer eval` keys (e.g. policy_params); inputs and output_dir "
                             "are set here")
    parser.add_argument("--no_eval", action="store_true", help="stop after the merge")
    return parser


def ttc_infer() -> list[str]:
    """`ttc-infer` as the interpreter running this code starts it (on a Ray node: the node's Python)."""
    return [sys.executable, "-m", "inference.cli"]


def shard_log_path(output_dir: Path, index: int, num_shards: int) -> Path:
    return output_dir / "logs" / f"shard-{index}-of-{num_shards}.log"


def run_shard(command: list[str], cwd: str, log_path: str) -> int:
    """Run one shard's `ttc-infer run`, its output appended to `log_path`; returns its exit code (raises
    ShardStopped when a signal stopped it, so that Ray retries it). It gets SIGTERM when its Ray worker dies (a
    cancelled job, a stopped local instance)."""
    from inference.child_processes import stop_with_parent

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}: {' '.join(command)}\n")
        log.flush()
        code = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, check=False,
                              preexec_fn=stop_with_parent).returncode
    if code < 0 or code in STOPPED_EXIT_CODES:
        raise ShardStopped(f"stopped (exit {code})")
    return code


def last_line(path: Path, prefix: str = "") -> str:
    """The last non-empty line of `path` starting with `prefix` ('' when none or no file)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((text for line in reversed(lines) if (text := line.strip()) and text.startswith(prefix)), "")


def error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0, 1 (a shard, the merge or the eval failed) or 2 (usage or config error)."""
    from data_prep.flags import hyphen_spelling_error

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    if (hint := hyphen_spelling_error(parser, argv)) is not None:
        error(hint)
        return 2
    try:
        args, overrides = parser.parse_known_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (already printed)
        return int(exit_.code or 0)
    if args.shards < 1:
        error(f"--shards {args.shards}: need k >= 1")
        return 2
    if any(token == "--shard" or token.startswith("--shard=") for token in overrides):
        error("--shard is set here for each shard; give --shards K instead")
        return 2

    from inference.cli import UsageError, resolve_run_config
    from inference.config_engine import ConfigError
    from inference.runner import results_path

    shard_args = ["--config", args.config, *overrides]
    try:
        config = resolve_run_config(shard_args)  # a bad config or flag fails here, before any Ray start
    except (UsageError, ConfigError) as bad:
        error(str(bad))
        return 2
    try:
        import ray
    except ImportError:
        error(MISSING_RAY)
        return 2

    k = args.shards
    output_dir = Path(config.output_dir).resolve()
    shards = [f"{i}/{k}" for i in range(k)]
    shard_files = [results_path(dataclasses.replace(config, shard=shard)) for shard in shards]
    logs = [shard_log_path(output_dir, i, k) for i in range(k)]

    if args.address is None:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, object_store_memory=args.object_store_mb * 2**20)
    else:
        ray.init(address=args.address)
    try:
        gpus = args.gpus_per_shard
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        task = ray.remote(run_shard).options(num_cpus=args.cpus_per_shard, num_gpus=gpus,
                                             max_retries=args.max_retries, retry_exceptions=[ShardStopped])
        cwd = os.getcwd()
        pending = {task.remote([*ttc_infer(), "run", *shard_args, "--shard", shard], cwd, str(log)): i
                   for i, (shard, log) in enumerate(zip(shards, logs))}
        print(f"{PROG}: {k} shards of {args.config} ({gpus:g} GPU, {args.cpus_per_shard:g} CPU each); "
              f"logs: {output_dir / 'logs'}", flush=True)
        failures = []
        while pending:  # report each shard as it ends; the others keep running whatever happens to one
            [ready], _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready)
            try:
                code = ray.get(ready)
                reason = f"exit {code}"
            except ray.exceptions.RayError as failed:
                code, reason = -1, " ".join(str(getattr(failed, "cause", None) or failed).split())[:300]
            if code == 0:
                print(f"{PROG}: shard {shards[i]} done: {last_line(logs[i], 'results:')}", flush=True)
            else:
                detail = last_line(logs[i])
                failures.append((i, f"shard {shards[i]} failed ({reason})" + (f": {detail}" if detail else "")
                                     + f"; log: {logs[i]}"))
    finally:
        ray.shutdown()
    for _, failure in sorted(failures):
        error(failure)
    if failures:
        print(f"{PROG}: finished shards are kept; rerun the same command to resume the others", file=sys.stderr)
        return 1

    merged = Path(args.merged) if args.merged else output_dir / "merged.jsonl"
    steps = [[*ttc_infer(), "merge", "--inputs", *map(str, shard_files), "--out", str(merged)]]
    if not args.no_eval:
        eval_dir = Path(args.eval_dir) if args.eval_dir else output_dir / "eval"
        eval_config = ["--config", args.eval_config] if args.eval_config else []
        steps.append([*ttc_infer(), "eval", *eval_config, "--inputs", str(merged), "--output_dir", str(eval_dir)])
    for step in steps:  # their own error line reaches stderr as it is
        code = subprocess.run(step, check=False).returncode
        if code != 0:
            error(f"`ttc-infer {step[3]}` failed (exit {code}); the shard files are kept: {output_dir}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
