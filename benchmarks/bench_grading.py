"""The grader under random and adversarial answers: no comparison outlives its timeout, none raises, and a worker
that dies is replaced with its pair counted as not equal.

Draws seeded (gold, pred) pairs: most are answers as policies write them (integers, decimals, fractions and their
decimal forms, percents, roots, pi, intervals, tuples, `x = ...`, `\\text{}` wrappers, equal or not); the rest are
adversarial: deep nesting (fractions, parentheses, braces), huge exponents and power towers, factorials, long
strings (10 kB to 200 kB), unicode (emoji, CJK, combining marks, zero-width and right-to-left marks, lone
surrogates, NUL) and malformed LaTeX. Every pair goes through `data_prep.grading.Grader.match` as callers use it (equal
normalised strings match at once, the rest ask math-verify), timed; pairs whose call started a worker (the first, and the one after each timeout or death)
are timed apart, since starting one (importing math-verify) is bounded by its own limit, not the comparison's.

    python benchmarks/bench_grading.py                          # 10,000 pairs, 1 s timeout
    python benchmarks/bench_grading.py --pairs 1000 --timeout_s 5
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections import Counter
from collections.abc import Callable

from data_prep.grading import Grader

SLACK_S = 0.25
"""What a comparison may take beyond its timeout: reading the reply and killing the worker."""


def _number(rng: random.Random) -> int:
    return rng.choice([rng.randint(0, 20), rng.randint(-100, 100), rng.randint(0, 10**6)])


def realistic_pair(rng: random.Random) -> tuple[str, str, bool | None]:
    """(gold, pred, expected verdict or None when not asserted) of the kinds policies write."""
    a, b = _number(rng), rng.randint(1, 12)
    kind = rng.randrange(9)
    if kind == 0:
        return str(a), str(a if rng.random() < 0.5 else a + 1), None
    if kind == 1:
        return f"\\frac{{{a}}}{{{b}}}", f"{a / b:.6g}" if rng.random() < 0.5 else f"\\dfrac{{{a}}}{{{b}}}", None
    if kind == 2:
        return f"{a}\\%", str(a), True
    if kind == 3:
        return f"\\sqrt{{{b}}}", f"{b}^{{1/2}}", True
    if kind == 4:
        return f"{b}\\pi", f"\\pi \\cdot {b}", True
    if kind == 5:
        lo, hi = sorted((a, a + b))
        return f"({lo}, {hi}]", f"\\left({lo},{hi}\\right]", True
    if kind == 6:
        return f"({a}, {b})", f"({b}, {a})" if a != b else f"({a}, {b + 1})", False
    if kind == 7:
        return str(a), f"x = {a}", True
    return f"\\text{{{a} apples}}", f"{a}", None


def _unicode_noise(rng: random.Random) -> str:
    pieces = ["😀", "½", "√2", "一二三", "e\u0301", "\u200b", "\u202e", "\u0000", "\ud800", "ℵ₀", "∞", "\ufeff"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))


ADVERSARIAL: list[tuple[str, Callable[[random.Random], tuple[str, str]]]] = [
    ("nested fractions", lambda r: ("\\frac{" * (d := r.randint(50, 400)) + "1" + "}{2}" * d, "0")),
    ("nested parentheses", lambda r: ("(" * (d := r.randint(100, 3000)) + "1" + ")" * d, "1")),
    ("nested braces", lambda r: ("{" * (d := r.randint(100, 3000)) + "2" + "}" * d, "2")),
    ("huge exponent", lambda r: (f"{r.randint(2, 99)}^{{{r.randint(10**5, 10**9)}}}", str(r.randint(0, 9)))),
    ("power tower", lambda r: ("^{".join(str(r.randint(2, 9)) for _ in range(r.randint(3, 6))) + "}" * 5, "1")),
    ("factorial", lambda r: (f"{r.randint(10**4, 10**6)}!", f"{r.randint(10**4, 10**6)}!")),
    ("long digits", lambda r: ("9" * r.randint(10_000, 200_000), "9" * r.randint(10_000, 200_000))),
    ("long latex", lambda r: ("+".join(f"\\frac{{{i}}}{{{i + 1}}}" for i in range(r.randint(500, 3000))), "1")),
    ("unicode", lambda r: (_unicode_noise(r), _unicode_noise(r))),
    ("unicode around a number", lambda r: (str(n := r.randint(0, 99)), _unicode_noise(r) + str(n))),
    ("malformed latex", lambda r: (r.choice(["\\frac{1}{", "}}}{{{", "\\" * r.randint(1, 2000), "$$$", "\\sqrt",
                                             "^^^^", "\\begin{pmatrix}1&2", "\\left(", "1/0", "0^{-1}"]), "1")),
]


def draw_pairs(count: int, adversarial_share: float, seed: int) -> list[tuple[str, str, str, bool | None]]:
    """(kind, gold, pred, expected) for `count` pairs; `adversarial_share` of them adversarial."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        if rng.random() < adversarial_share:
            kind, make = rng.choice(ADVERSARIAL)
            gold, pred = make(rng)
            pairs.append((kind, gold, pred, None))
        else:
            pairs.append(("realistic", *realistic_pair(rng)))
    return pairs


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.died = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.died += "worker died" in record.getMessage()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--adversarial_share", type=float, default=0.05,
                        help="each timeout costs a worker restart (~1.5 s), so adversarial pairs dominate the time")
    parser.add_argument("--timeout_s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counter = _Count()
    logging.getLogger("data_prep.grading").addHandler(counter)
    logging.getLogger("data_prep.grading").propagate = False  # one warning per timeout would flood the table
    pairs = draw_pairs(args.pairs, args.adversarial_share, args.seed)
    slowest: Counter = Counter()
    timed_out: Counter = Counter()
    slowest_starting: float = 0.0
    crashes: list[str] = []
    wrong: list[tuple[str, str]] = []
    kinds = Counter(kind for kind, *_ in pairs)
    started = time.perf_counter()
    with Grader(timeout_s=args.timeout_s) as grader:
        for kind, gold, pred, expected in pairs:
            starts_worker = grader._process is None or grader._process.poll() is not None
            timeouts_before = grader.num_timeouts
            begin = time.perf_counter()
            try:
                verdict = grader.match(gold, pred)
            except Exception as error:  # noqa: BLE001 - counted: the benchmark's claim is that there are none
                crashes.append(f"{kind}: {type(error).__name__}: {error}"[:200])
                continue
            elapsed = time.perf_counter() - begin
            timed_out[kind] += grader.num_timeouts - timeouts_before
            if starts_worker:
                slowest_starting = max(slowest_starting, elapsed)  # the call started a worker first
            else:
                slowest[kind] = max(slowest[kind], elapsed)
            if expected is not None and verdict != expected:
                wrong.append((gold[:60], pred[:60]))
        timeouts = grader.num_timeouts
    total = time.perf_counter() - started
    print(f"{args.pairs} pairs ({args.pairs - kinds['realistic']} adversarial), timeout {args.timeout_s:g} s, "
          f"{total:.0f} s in all")
    print("| kind | pairs | timed out | slowest comparison, s |")
    print("| --- | ---: | ---: | ---: |")
    for kind in ["realistic", *(name for name, _ in ADVERSARIAL)]:
        print(f"| {kind} | {kinds[kind]} | {timed_out[kind]} | {slowest[kind]:.3f} |")
    print(f"\ntimeouts {timeouts}, worker deaths {counter.died}, exceptions raised {len(crashes)}, "
          f"slowest call that started a worker {slowest_starting:.2f} s")
    worst = max(slowest.values())
    print(f"slowest comparison {worst:.3f} s against a bound of {args.timeout_s + SLACK_S:.2f} s: "
          f"{'within' if worst <= args.timeout_s + SLACK_S else 'OVER'}")
    print(f"realistic pairs with a known verdict graded otherwise: {len(wrong)} {wrong[:5]}")
    for crash in crashes[:5]:
        print("  raised:", crash)


if __name__ == "__main__":
    main()
