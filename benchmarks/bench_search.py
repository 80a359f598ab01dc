"""Speed of ttc's batched tree search against a one-problem-per-call baseline, measured in the same run.

Reference code runs beam search one problem at a time; ttc advances every problem's beams in one generate call
and one PRM call per iteration. This script runs the same beam search (same seed, same settings) both ways on
the shipped tiny policy and a PRM checkpoint, checks they agree on the work done, and prints the ratio.

    python benchmarks/bench_search.py --prm runs/default/prm-oracle [--problems 20] [--n 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.synthetic import generate_problems  # noqa: E402
from inference.generation import load_generator  # noqa: E402
from inference.scoring.loader import load_scorer  # noqa: E402
from inference.strategies import get_strategy, make_settings  # noqa: E402


def _timed(run, problems, generator, scorer, settings) -> tuple[float, list]:
    started = time.perf_counter()
    rows = run(problems, generator, scorer, settings)
    return time.perf_counter() - started, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="checkpoints/policy-small")
    parser.add_argument("--prm", required=True, help="a PRM checkpoint written by training/train_prm.py")
    parser.add_argument("--problems", type=int, default=20, help="synthetic test problems (split over 5 levels)")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--beam-width", type=int, default=4)
    parser.add_argument("--strategy", default="beam_search", choices=["beam_search", "dvts"])
    args = parser.parse_args()

    problems = generate_problems("test", max(1, args.problems // 5), seed=0)
    strategy = get_strategy(args.strategy)
    settings = make_settings(args.strategy, {"n": args.n, "beam_width": args.beam_width, "max_step_tokens": 64})
    generator = load_generator("transformers", args.policy, device="cpu", batch_size=64, seed=0)
    scorer = load_scorer(args.prm, device="cpu")

    batched_seconds, batched_rows = _timed(strategy.run, problems, generator, scorer, settings)
    one_by_one_seconds = 0.0
    one_by_one_rows = []
    for problem in problems:
        seconds, rows = _timed(strategy.run, [problem], generator, scorer, settings)
        one_by_one_seconds += seconds
        one_by_one_rows += rows

    def totals(rows):
        return sum(r.compute.policy_tokens for r in rows), sum(r.compute.model_calls for r in rows)

    print(f"machine: {os.cpu_count()} CPU cores, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{args.strategy} N={args.n} M={args.beam_width} on {len(problems)} synthetic test problems")
    print(f"  one problem per call : {one_by_one_seconds:7.1f} s, policy tokens {totals(one_by_one_rows)[0]}, "
          f"model calls {totals(one_by_one_rows)[1]}")
    print(f"  all problems per call: {batched_seconds:7.1f} s, policy tokens {totals(batched_rows)[0]}, "
          f"model calls {totals(batched_rows)[1]}")
    print(f"  speed-up: {one_by_one_seconds / batched_seconds:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
