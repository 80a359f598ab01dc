"""Tokens/s of the transformers policy backend against plain per-prompt `model.generate`, in one run.

Three workloads on the shipped tiny policy, each run with the same seed by plain generate and the backend (for the
tree workloads both with its key/value reuse across calls, `kv_reuse_bytes`, and without):

- sampling: `--sample_problems` synthetic test problems x `--samples` completions of at most 128 tokens at
  temperature 0.8 (the workload of majority / Best-of-N);
- tree step: one step (stop at the blank line, at most 512 tokens, temperature 0.8) from `--tree_problems` level-4/5
  problems x prefixes of 2, 3, 4 and 5 gold steps, `--children` continuations each (one beam-search expansion),
  after an untimed call on the parent prefixes (1-4 gold steps), whose rows the reusing backend keeps (its store is
  emptied before each run, so a run reuses only what its own parent call left);
- beam search: `--beam_problems` synthetic test problems, beam search N = `--beam_n`, M = `--children` with the
  shipped PRM (`--prm`); the seconds are the policy's generate calls (the PRM's are the same work every way), and
  the line counts the problems whose completions differ between reuse on and off (the same seed: only
  floating-point differences of the split prefill can change a draw).

`plain generate` is what a caller writes without the backend: per prompt (or per prefix)
`model.generate(input_ids, num_return_sequences=n, do_sample=True, temperature=0.8, max_new_tokens=...)`, with
`stop_strings` for the tree step, on the same model object and prompt ids. Its tokens are counted as the backend
counts them (up to and including EOS; a stopped row up to its padding). The ratio is tokens/s over tokens/s, each
side's fastest of `--repeats` alternated runs with the same seed (the cores are shared; the fastest run is the one
least slowed by other work).
`--check_greedy` also decodes both workloads greedily both ways and checks the texts are equal.

    OMP_NUM_THREADS=1 python benchmarks/bench_generation.py [--sample_problems 4] [--samples 32] [--tree_problems 8]
        [--beam_problems 20]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from data_prep.steps import STEP_SEPARATOR, join_steps
from data_prep.synthetic import generate_problems, gold_steps
from inference.generation import load_generator
from inference.scoring.loader import load_scorer
from inference.strategies import get_strategy, make_settings
from inference.types import Completion, GenerationRequest, SamplingParams

PREFIX_STEPS = (2, 3, 4, 5)


def sampling_requests(args: argparse.Namespace) -> list[GenerationRequest]:
    problems = generate_problems("test", max(1, args.sample_problems // 5 + 1), seed=0)[: args.sample_problems]
    return [GenerationRequest(problem.problem) for problem in problems]


def tree_requests(args: argparse.Namespace, parent: bool = False) -> list[GenerationRequest]:
    """The tree step's requests, or (`parent`) those of the step before, one gold step shorter."""
    problems = [p for p in generate_problems("test", args.tree_problems, seed=0) if p.level >= 4][: args.tree_problems]
    return [
        GenerationRequest(problem.problem, join_steps(gold_steps(problem)[: steps - parent]) + STEP_SEPARATOR)
        for problem in problems
        for steps in PREFIX_STEPS
    ]


def plain_completions(generator, requests, n: int, params: SamplingParams, stop: list[str] | None) -> list[list]:
    """Per prompt `model.generate(num_return_sequences=n)`: completions (cut at the stop string) of every row."""
    import torch

    model, tokenizer = generator.model, generator.tokenizer
    pad, eos = generator.pad_id, generator.eos_ids
    config = generator._generation_config(params)  # the same neutral sampling settings (no top_k=50 default)
    config.num_return_sequences = n if params.temperature > 0 else 1
    config.stop_strings = stop
    extra = {"tokenizer": tokenizer} if stop else {}
    completions = []
    torch.manual_seed(params.seed or 0)
    for ids in generator.prompt_token_ids(requests):
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config, **extra)
        per_prompt = []
        for row in output[:, len(ids):].tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in eos), None)
            finish = "eos" if end is not None else "length"
            if end is None:
                end = next((i for i, t in enumerate(row) if t == pad), len(row))
            text = tokenizer.decode(row[: end - (finish == "eos")], skip_special_tokens=True)
            ends = [text.find(s) + len(s) for s in stop or [] if s in text]
            if ends:
                text, finish = text[: min(ends)], "stop"
            per_prompt.append(Completion(text=text, num_tokens=end, finish_reason=finish,
                                         forward_tokens=len(ids) - 1 + end))
        completions.append(per_prompt * (n if params.temperature <= 0 else 1))
    return completions


class PlainGenerator:
    """A `Generator` on plain per-prompt `model.generate` (what a caller writes without the backend)."""

    def __init__(self, backend) -> None:
        self.backend, self.name, self.num_parameters = backend, backend.name, backend.num_parameters

    def generate(self, requests, *, n: int, params: SamplingParams, stop: list[str] | None = None) -> list[list]:
        return plain_completions(self.backend, requests, n, params, stop)


def plain_generate(generator, requests, n: int, params: SamplingParams, stop: list[str] | None) -> tuple[float, list, int]:
    """Seconds, texts and generated tokens of `plain_completions`."""
    started = time.perf_counter()
    completions = plain_completions(generator, requests, n, params, stop)
    seconds = time.perf_counter() - started
    texts = [[c.text for c in per][: n if params.temperature > 0 else 1] for per in completions]
    return seconds, texts, sum(c.num_tokens for per in completions for c in per[: n if params.temperature > 0 else 1])


def backend_generate(generator, requests, n: int, params: SamplingParams, stop: list[str] | None) -> tuple[float, list, int]:
    started = time.perf_counter()
    completions = generator.generate(requests, n=n, params=params, stop=stop)
    seconds = time.perf_counter() - started
    texts = [[c.text for c in per][: n if params.temperature > 0 else 1] for per in completions]
    return seconds, texts, sum(c.num_tokens for per in completions for c in per[: n if params.temperature > 0 else 1])


class TimedGenerator:
    """A generator whose generate calls are timed (the search's policy seconds)."""

    def __init__(self, generator) -> None:
        self.generator, self.name, self.num_parameters = generator, generator.name, generator.num_parameters
        self.seconds = 0.0

    def generate(self, requests, **options) -> list[list]:
        started = time.perf_counter()
        try:
            return self.generator.generate(requests, **options)
        finally:
            self.seconds += time.perf_counter() - started


def beam_search(args: argparse.Namespace, generator, scorer) -> tuple[float, list]:
    """Policy seconds and result rows of one beam search (N = --beam_n, M = --children)."""
    settings = make_settings("beam_search", {"n": args.beam_n, "beam_width": args.children})
    problems = generate_problems("test", max(1, args.beam_problems // 5), seed=0)[: args.beam_problems]
    timed = TimedGenerator(generator)
    rows = get_strategy("beam_search").run(problems, timed, scorer, settings)
    return timed.seconds, rows


def ratio_line(name: str, tokens: dict[str, int], seconds: dict[str, float]) -> str:
    rates = {side: tokens[side] / seconds[side] for side in seconds}
    parts = [f"{side} {seconds[side]:6.1f} s {rates[side]:7.0f} tok/s" for side in seconds]
    ratios = [f"{side} x {rates[side] / rates['plain generate']:.2f}" for side in seconds if side != "plain generate"]
    return f"{name:11s} " + "   ".join(parts) + "   " + "   ".join(ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="checkpoints/policy-small")
    parser.add_argument("--prm", default="checkpoints/prm-verifier", help="the verifier of the beam search")
    parser.add_argument("--sample_problems", type=int, default=4)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--tree_problems", type=int, default=8)
    parser.add_argument("--beam_problems", type=int, default=20, help="0 skips the beam search")
    parser.add_argument("--beam_n", type=int, default=16)
    parser.add_argument("--children", type=int, default=4, help="continuations per prefix (the beam width M)")
    parser.add_argument("--batch_size", type=int, default=64, help="policy batch size (configs/infer/tiny.yaml's)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternated; the fastest counts")
    parser.add_argument("--check_greedy", action="store_true", help="also check greedy texts equal both ways")
    args = parser.parse_args()
    import torch

    reusing = load_generator("transformers", args.policy, device="cpu", batch_size=args.batch_size, seed=0)
    fresh = load_generator("transformers", args.policy, device="cpu", batch_size=args.batch_size, seed=0)
    fresh.kv_store = None  # the same model, no reuse across calls
    print(f"machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    stop = [STEP_SEPARATOR]
    workloads = (
        ("sampling", sampling_requests(args), None, args.samples, 128, None),
        ("tree step", tree_requests(args), tree_requests(args, parent=True), args.children, 512, stop),
    )
    for name, requests, parents, n, max_tokens, stop in workloads:
        params = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=max_tokens, seed=0)
        sides = {"plain generate": None, "backend": fresh} if parents is None else {
            "plain generate": None, "reuse off": fresh, "reuse on": reusing}
        seconds = dict.fromkeys(sides, float("inf"))
        tokens: dict[str, int] = {}
        for _ in range(args.repeats):  # alternated, the fastest of each kept: the least disturbed by other load
            for side, generator in sides.items():
                if generator is None:
                    taken, _, tokens[side] = plain_generate(fresh, requests, n, params, stop)
                else:
                    if generator.kv_store is not None:
                        generator.kv_store.clear()
                        generator.generate(parents, n=n, params=replace(params, seed=1), stop=stop)
                    taken, _, tokens[side] = backend_generate(generator, requests, n, params, stop)
                seconds[side] = min(seconds[side], taken)
        line = ratio_line(name, tokens, seconds)
        if args.check_greedy:
            greedy = SamplingParams(temperature=0.0, max_tokens=max_tokens)
            expected = plain_generate(fresh, requests, 1, greedy, stop)[1]
            equal = all(expected == backend_generate(generator, requests, 1, greedy, stop)[1]
                        for generator in sides.values() if generator is not None)
            line += f"   greedy equal: {equal}"
        print(line, flush=True)
    if args.beam_problems:
        scorer = load_scorer(args.prm, device="cpu", max_tokens_per_batch=8192, prefix_cache_bytes=1 << 30)
        sides = {"plain generate": PlainGenerator(fresh), "reuse off": fresh, "reuse on": reusing}
        seconds = dict.fromkeys(sides, float("inf"))
        tokens, rows = {}, {}
        for _ in range(args.repeats):
            for side, generator in sides.items():
                if side == "reuse on":
                    reusing.kv_store.clear()
                taken, rows[side] = beam_search(args, generator, scorer)
                tokens[side] = sum(row.compute.policy_tokens for row in rows[side])
                seconds[side] = min(seconds[side], taken)
        differ = sum([c.text for c in on.completions] != [c.text for c in off.completions]
                     for on, off in zip(rows["reuse on"], rows["reuse off"], strict=True))
        print(ratio_line(f"beam N={args.beam_n}", tokens, seconds)
              + f"   problems whose completions differ, reuse on vs off: {differ} of {len(rows['reuse on'])}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
