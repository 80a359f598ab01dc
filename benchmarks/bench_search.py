"""Speed of PRM-guided tree search with and without incremental PRM scoring and larger policy batches, in one run.

Runs the same search (same problems, seed and settings) three ways on the shipped tiny policy and a PRM checkpoint:

- baseline: every candidate's whole solution re-scored by the PRM each iteration, policy batches of 16;
- prefix cache: the PRM scores only each candidate's new tokens (`prefix_cache_bytes` > 0), same batches: its
  rows must equal the baseline's (same completions, answers and token counts; scores to 1e-4);
- optimised: prefix cache plus the policy batch size of configs/infer/tiny.yaml (64). Another batch size draws
  other samples from the same seed, so only its time and work are compared.

Each line also gives the PRM's forward tokens (what it ran) per generated policy token and the share of wall time
spent outside model calls (the strategy's own overhead).

    python benchmarks/bench_search.py --prm runs/default/prm-oracle [--problems 20] [--n 16] [--strategy dvts]
    python benchmarks/bench_search.py --prm checkpoints/policy-large --prm_style lm_likelihood
"""

from __future__ import annotations

import argparse
import os
import time

from data_prep.synthetic import generate_problems
from inference.generation import load_generator
from inference.scoring.loader import load_scorer
from inference.strategies import get_strategy, make_settings


def run_variant(args: argparse.Namespace, problems: list, *, batch_size: int, prefix_cache_bytes: int) -> tuple:
    """(seconds, rows, generate calls, PRM forward passes) of one search with fresh models."""
    strategy = get_strategy(args.strategy)
    settings = make_settings(args.strategy, {"n": args.n, "beam_width": args.beam_width})
    generator = load_generator("transformers", args.policy, device="cpu", batch_size=batch_size, seed=0)
    scorer = load_scorer(args.prm, prm_style=args.prm_style, device="cpu", max_tokens_per_batch=8192,
                         prefix_cache_bytes=prefix_cache_bytes)
    started = time.perf_counter()
    rows = strategy.run(problems, generator, scorer, settings)
    return time.perf_counter() - started, rows, generator.generate_calls, scorer.forward_passes


def same_rows(a: list, b: list) -> bool:
    """Same completions, answers and token counts; step scores equal to 1e-4."""
    for x, y in zip(a, b, strict=True):
        if (x.pred, x.correct, x.compute.policy_tokens, x.compute.prm_tokens) != (
            y.pred, y.correct, y.compute.policy_tokens, y.compute.prm_tokens
        ):
            return False
        for cx, cy in zip(x.completions, y.completions, strict=True):
            if cx.text != cy.text or len(cx.step_scores) != len(cy.step_scores):
                return False
            if any(abs(s - t) > 1e-4 for s, t in zip(cx.step_scores, cy.step_scores)):
                return False
    return len(a) == len(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="checkpoints/policy-small")
    parser.add_argument("--prm", required=True, help="a PRM checkpoint (or a policy with --prm_style lm_likelihood)")
    parser.add_argument("--prm_style", default=None, help="for a checkpoint without ttc_prm.json, e.g. lm_likelihood")
    parser.add_argument("--problems", type=int, default=20, help="synthetic test problems (split over 5 levels)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--beam_width", type=int, default=4)
    parser.add_argument("--strategy", default="beam_search", choices=["beam_search", "dvts"])
    parser.add_argument("--batch_size", type=int, default=64, help="policy batch size of the optimised variant")
    args = parser.parse_args()

    problems = generate_problems("test", max(1, args.problems // 5), seed=0)
    variants = {
        "baseline (whole re-score, batch 16)": dict(batch_size=16, prefix_cache_bytes=0),
        "prefix cache (batch 16)": dict(batch_size=16, prefix_cache_bytes=1 << 30),
        f"optimised (prefix cache, batch {args.batch_size})": dict(
            batch_size=args.batch_size, prefix_cache_bytes=1 << 30
        ),
    }
    results = {name: run_variant(args, problems, **options) for name, options in variants.items()}

    print(f"machine: {os.cpu_count()} CPU cores, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{args.strategy} N={args.n} M={args.beam_width} on {len(problems)} synthetic test problems")
    baseline_seconds, baseline_rows = next(iter(results.values()))[:2]
    for name, (seconds, rows, calls, passes) in results.items():
        tokens = sum(r.compute.policy_tokens for r in rows)
        prm_run = sum(r.compute.forward_tokens[1] for r in rows)
        # Model calls are timed by the ledger (each call's time split over its problems): the rest is the
        # strategy's own work (selection, bookkeeping, tokenizing layouts outside the scorer's forward).
        in_calls = sum(r.compute.seconds for r in rows)
        print(f"  {name:40s} {seconds:7.1f} s  x{baseline_seconds / seconds:5.2f}  policy tokens {tokens:6d}  "
              f"generate calls {calls:4d}  PRM passes {passes:3d}  correct {sum(r.correct for r in rows)}  "
              f"PRM forward / generated tokens {prm_run / max(tokens, 1):5.2f}  "
              f"outside model calls {1 - in_calls / seconds:6.1%}")
    cached_rows = list(results.values())[1][1]
    agree = same_rows(baseline_rows, cached_rows)
    print(f"  prefix-cache rows equal the baseline's: {agree}")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
