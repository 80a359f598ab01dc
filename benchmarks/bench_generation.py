"""Speed of the transformers policy backend with and without the shared prefill of repeated prompts, in one run.

Two workloads on the shipped tiny policy, each run both ways with the same seed:

- sampling: `--sample_problems` synthetic test problems x `--samples` completions of at most 128 tokens at
  temperature 0.8 (the workload of majority / Best-of-N): every request's samples share its prompt;
- tree: beam search N = `--n`, M = 4 over `--tree_problems` problems, scored by policy-large's token probabilities
  (`lm_likelihood`, incremental): each iteration's children of one beam share its prefix.

`plain` prefills every row inside `model.generate`; `shared prefill` computes the keys and values of each distinct
prompt once and repeats them to its rows. Completions must be equal (checked); only the time differs.

    python benchmarks/bench_generation.py [--sample_problems 4] [--samples 32] [--tree_problems 20] [--n 16]
"""

from __future__ import annotations

import argparse
import os
import time

from data_prep.synthetic import generate_problems
from inference.generation import load_generator
from inference.scoring.loader import load_scorer
from inference.strategies import get_strategy, make_settings
from inference.types import GenerationRequest, SamplingParams


def policy(args: argparse.Namespace, shared: bool):
    generator = load_generator("transformers", args.policy, device="cpu", batch_size=args.batch_size, seed=0)
    if not shared:
        generator._cache_keyword = None  # the plain path: generate prefills every row
    return generator


def sampling(args: argparse.Namespace, shared: bool) -> tuple[float, list, int]:
    generator = policy(args, shared)
    problems = generate_problems("test", max(1, args.sample_problems // 5 + 1), seed=0)[: args.sample_problems]
    requests = [GenerationRequest(problem.problem) for problem in problems]
    params = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=128, seed=0)
    started = time.perf_counter()
    completions = generator.generate(requests, n=args.samples, params=params, stop=None)
    seconds = time.perf_counter() - started
    return seconds, completions, sum(c.num_tokens for per in completions for c in per)


def tree(args: argparse.Namespace, shared: bool) -> tuple[float, list, int]:
    generator = policy(args, shared)
    scorer = load_scorer(args.prm, prm_style="lm_likelihood", device="cpu", max_tokens_per_batch=8192)
    problems = generate_problems("test", max(1, args.tree_problems // 5), seed=0)[: args.tree_problems]
    settings = make_settings("beam_search", {"n": args.n, "beam_width": 4})
    started = time.perf_counter()
    rows = get_strategy("beam_search").run(problems, generator, scorer, settings)
    seconds = time.perf_counter() - started
    return seconds, [[c.text for c in row.completions] for row in rows], sum(r.compute.policy_tokens for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="checkpoints/policy-small")
    parser.add_argument("--prm", default="checkpoints/policy-large", help="the tree workload's likelihood verifier")
    parser.add_argument("--sample_problems", type=int, default=4)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--tree_problems", type=int, default=20)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=64, help="policy batch size (configs/infer/tiny.yaml's)")
    args = parser.parse_args()
    import torch

    print(f"machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}")
    for name, workload in (("sampling", sampling), ("tree", tree)):
        plain_seconds, plain_out, tokens = workload(args, shared=False)
        shared_seconds, shared_out, _ = workload(args, shared=True)
        print(f"{name:9s} plain {plain_seconds:7.1f} s   shared prefill {shared_seconds:7.1f} s   "
              f"x {plain_seconds / shared_seconds:.2f}   policy tokens {tokens}   "
              f"completions equal: {plain_out == shared_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
