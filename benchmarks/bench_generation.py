"""Tokens/s of the transformers policy backend against plain per-prompt `model.generate`, in one run.

Two workloads on the shipped tiny policy, each run both ways with the same seed:

- sampling: `--sample_problems` synthetic test problems x `--samples` completions of at most 128 tokens at
  temperature 0.8 (the workload of majority / Best-of-N);
- tree step: one step (stop at the blank line, at most 512 tokens, temperature 0.8) from `--tree_problems` level-4/5
  problems x prefixes of 2, 3, 4 and 5 gold steps, `--children` continuations each (one beam-search expansion).

`plain generate` is what a caller writes without the backend: per prompt (or per prefix)
`model.generate(input_ids, num_return_sequences=n, do_sample=True, temperature=0.8, max_new_tokens=...)`, with
`stop_strings` for the tree step, on the same model object and prompt ids. Its tokens are counted as the backend
counts them (up to and including EOS; a stopped row up to its padding). The ratio is tokens/s over tokens/s, each
side's fastest of `--repeats` alternated runs with the same seed (the cores are shared; the fastest run is the one
least slowed by other work).
`--check_greedy` also decodes both workloads greedily both ways and checks the texts are equal.

    OMP_NUM_THREADS=1 python benchmarks/bench_generation.py [--sample_problems 4] [--samples 32] [--tree_problems 8]
"""

from __future__ import annotations

import argparse
import os
import time

from data_prep.steps import STEP_SEPARATOR, join_steps
from data_prep.synthetic import generate_problems, gold_steps
from inference.generation import load_generator
from inference.types import GenerationRequest, SamplingParams

PREFIX_STEPS = (2, 3, 4, 5)


def sampling_requests(args: argparse.Namespace) -> list[GenerationRequest]:
    problems = generate_problems("test", max(1, args.sample_problems // 5 + 1), seed=0)[: args.sample_problems]
    return [GenerationRequest(problem.problem) for problem in problems]


def tree_requests(args: argparse.Namespace) -> list[GenerationRequest]:
    problems = [p for p in generate_problems("test", args.tree_problems, seed=0) if p.level >= 4][: args.tree_problems]
    return [
        GenerationRequest(problem.problem, join_steps(gold_steps(problem)[:steps]) + STEP_SEPARATOR)
        for problem in problems
        for steps in PREFIX_STEPS
    ]


def plain_generate(generator, requests, n: int, params: SamplingParams, stop: list[str] | None) -> tuple[float, list, int]:
    """Per prompt `model.generate(num_return_sequences=n)`: texts (cut at the stop string) and generated tokens."""
    import torch

    model, tokenizer = generator.model, generator.tokenizer
    pad, eos = generator.pad_id, generator.eos_ids
    config = generator._generation_config(params)  # the same neutral sampling settings (no top_k=50 default)
    config.num_return_sequences = n if params.temperature > 0 else 1
    config.stop_strings = stop
    extra = {"tokenizer": tokenizer} if stop else {}
    texts, tokens = [], 0
    torch.manual_seed(params.seed or 0)
    started = time.perf_counter()
    for ids in generator.prompt_token_ids(requests):
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config, **extra)
        per_prompt = []
        for row in output[:, len(ids):].tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in eos), None)
            if end is None:
                end = next((i for i, t in enumerate(row) if t == pad), len(row))
            tokens += end
            text = tokenizer.decode(row[:end], skip_special_tokens=True)
            if stop:
                ends = [text.find(s) + len(s) for s in stop if s in text]
                text = text[: min(ends)] if ends else text
            per_prompt.append(text)
        texts.append(per_prompt)
    return time.perf_counter() - started, texts, tokens


def backend_generate(generator, requests, n: int, params: SamplingParams, stop: list[str] | None) -> tuple[float, list, int]:
    started = time.perf_counter()
    completions = generator.generate(requests, n=n, params=params, stop=stop)
    seconds = time.perf_counter() - started
    texts = [[c.text for c in per][: n if params.temperature > 0 else 1] for per in completions]
    return seconds, texts, sum(c.num_tokens for per in completions for c in per[: n if params.temperature > 0 else 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="checkpoints/policy-small")
    parser.add_argument("--sample_problems", type=int, default=4)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--tree_problems", type=int, default=8)
    parser.add_argument("--children", type=int, default=4, help="continuations per prefix (the beam width M)")
    parser.add_argument("--batch_size", type=int, default=64, help="policy batch size (configs/infer/tiny.yaml's)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternated; the fastest counts")
    parser.add_argument("--check_greedy", action="store_true", help="also check greedy texts equal both ways")
    args = parser.parse_args()
    import torch

    generator = load_generator("transformers", args.policy, device="cpu", batch_size=args.batch_size, seed=0)
    print(f"machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    workloads = (
        ("sampling", sampling_requests(args), args.samples, 128, None),
        ("tree step", tree_requests(args), args.children, 512, [STEP_SEPARATOR]),
    )
    for name, requests, n, max_tokens, stop in workloads:
        params = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=max_tokens, seed=0)
        plain_s = backend_s = float("inf")
        for _ in range(args.repeats):  # alternated, the fastest of each kept: the least disturbed by other load
            seconds, _, plain_tokens = plain_generate(generator, requests, n, params, stop)
            plain_s = min(plain_s, seconds)
            seconds, _, backend_tokens = backend_generate(generator, requests, n, params, stop)
            backend_s = min(backend_s, seconds)
        plain_rate, backend_rate = plain_tokens / plain_s, backend_tokens / backend_s
        line = (f"{name:9s} {len(requests)} prompts x {n}: plain generate {plain_s:6.1f} s {plain_rate:7.0f} tok/s   "
                f"backend {backend_s:6.1f} s {backend_rate:7.0f} tok/s   x {backend_rate / plain_rate:.2f}")
        if args.check_greedy:
            greedy = SamplingParams(temperature=0.0, max_tokens=max_tokens)
            equal = plain_generate(generator, requests, 1, greedy, stop)[1] == backend_generate(
                generator, requests, 1, greedy, stop)[1]
            line += f"   greedy equal: {equal}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
