"""Peak memory of `ttc-infer run` against the number of problems: it must not grow with them (rows go to disk as
each chunk finishes, a resumed run keeps only the keys of the rows already there).

Writes N synthetic problems (the synthetic world's test generator, levels 1-5) to a JSONL file, runs
`ttc-infer run` on them in a fresh process with the shipped tiny policy and the cheapest strategy (majority at
N = 1, no PRM, short solutions), and reads the process's peak resident set size from the kernel (`wait4`). Then
reruns the finished run once (a resume that finds every row done: the reading side). Then measures, with
tracemalloc in this process and a constant policy, what `run_sweep` itself allocates and keeps. Prints two tables.

    python benchmarks/bench_memory.py                       # 200 and 2000 problems
    python benchmarks/bench_memory.py --problems 200 20000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_problems(path: Path, count: int) -> None:
    from data_prep.synthetic import generate_problems

    per_level = -(-count // 5)
    problems = generate_problems("test", per_level, seed=7)[:count]
    with path.open("w", encoding="utf-8") as handle:
        for problem in problems:
            handle.write(json.dumps({"id": problem.id, "problem": problem.problem, "answer": problem.answer,
                                     "level": problem.level}) + "\n")


def run_once(problems: Path, output_dir: Path, max_tokens: int) -> tuple[float, float, int]:
    """(seconds, peak RSS in MiB, rows in the results file) of one `ttc-infer run` process."""
    command = [sys.executable, "-m", "inference.cli", "run", "--benchmark.name_or_path", str(problems),
               "--benchmark.fields.id", "id", "--benchmark.fields.level", "level",
               "--policy.model_name_or_path", "checkpoints/policy-small", "--policy.batch_size", "64",
               "--sweep.strategies", "majority", "--sweep.max_n", "1",
               "--strategies.majority.score_with_prm", "false", "--strategies.majority.max_tokens", str(max_tokens),
               "--chunk_size", "64", "--output_dir", str(output_dir), "--log_level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ttc-infer run failed on {problems}: {stderr[-2000:]}")
    rows = (output_dir / "results.jsonl").read_bytes().count(b"\n")
    return seconds, usage.ru_maxrss / 1024, rows  # ru_maxrss is in KiB on Linux


class _ConstantPolicy:
    """A policy that answers every request at once with one fixed solution: no model, so what the sweep itself
    keeps is all that tracemalloc sees."""

    name = "constant"
    num_parameters = 1

    def generate(self, requests, *, n, params, stop=None):  # noqa: ANN001, ANN201 - the Generator protocol
        from inference.types import Completion

        solution = Completion(text="(1) 2 + 3 = 5\n\nThe answer is $\\boxed{5}$", num_tokens=12, finish_reason="eos")
        return [[solution] * n for _ in requests]


def sweep_allocations(count: int) -> tuple[float, float]:
    """(MiB still allocated after, peak MiB during) `run_sweep` over `count` problems, by tracemalloc, in this
    process with the constant policy: the runner's own growth, without the allocator and torch around it."""
    import gc
    import tracemalloc

    from data_prep.synthetic import generate_problems
    from inference.config import CliValue, RunConfig, parse_config
    from inference.runner import run_sweep

    problems = generate_problems("test", -(-count // 5), seed=7)[:count]
    with tempfile.TemporaryDirectory() as out:
        config = parse_config(RunConfig, None, {
            "sweep.strategies": CliValue("majority"), "sweep.max_n": CliValue("1"), "chunk_size": CliValue("64"),
            "strategies.majority.score_with_prm": CliValue("false"), "output_dir": CliValue(out)})
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        run_sweep(config, problems, _ConstantPolicy(), None, Path(out) / "results.jsonl", progress=False)
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return (after - before) / 2**20, (peak - before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--max_tokens", type=int, default=32, help="tokens per solution (short: memory, not speed)")
    args = parser.parse_args()
    print("| problems | run: s | run: peak RSS MiB | resume (all done): s | resume: peak RSS MiB | rows |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    peaks = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.problems:
            problems = Path(scratch) / f"problems_{count}.jsonl"
            write_problems(problems, count)
            out = Path(scratch) / f"run_{count}"
            seconds, peak, rows = run_once(problems, out, args.max_tokens)
            resume_seconds, resume_peak, resume_rows = run_once(problems, out, args.max_tokens)
            assert rows == resume_rows == count, (rows, resume_rows, count)
            peaks.append((peak, resume_peak))
            print(f"| {count} | {seconds:.1f} | {peak:.0f} | {resume_seconds:.1f} | {resume_peak:.0f} | {rows} |")
    (first, first_resume), (last, last_resume) = peaks[0], peaks[-1]
    print(f"\npeak RSS ratio {args.problems[-1]} / {args.problems[0]} problems: run {last / first:.3f}, "
          f"resume {last_resume / first_resume:.3f}")
    logging.getLogger("inference.runner").setLevel(logging.ERROR)
    print("\n| problems | run_sweep: MiB kept after | run_sweep: peak MiB (tracemalloc, constant policy) |")
    print("| ---: | ---: | ---: |")
    for count in args.problems:
        kept, peak = sweep_allocations(count)
        print(f"| {count} | {kept:.2f} | {peak:.2f} |")


if __name__ == "__main__":
    main()
