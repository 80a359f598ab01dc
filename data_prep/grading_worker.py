"""The math-verify worker process: (gold, pred) pairs as JSON lines on stdin, one verdict line each on stdout.

Started by `data_prep.grading.Grader` as `python -m data_prep.grading_worker`, a fresh interpreter: unlike a
multiprocessing child it never re-imports the caller's main module, so grading works from a plain script with no
`if __name__ == "__main__":` guard, from a notebook and from any thread.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import lru_cache

from data_prep.steps import extract_boxed_answer

READY = "ready"
"""The first line the worker writes, once math-verify is imported."""


def latex_for_parsing(answer: str) -> str:
    """The string handed to math-verify: a bare answer wrapped as `$\\boxed{...}$`.

    math-verify extracts nothing from a bare `(3, \\frac{\\pi}{2})` or `\\text{(C)}`; inside `\\boxed{}` it does.
    """
    text = answer.strip()
    if "\\boxed" in text or "\\fbox" in text:
        text = extract_boxed_answer(text) or text
    text = text.strip().strip("$").strip().rstrip(".").strip()
    return "$\\boxed{" + text + "}$"


def main() -> int:
    """Answer until stdin closes: `{"verdict": bool}` or `{"error": message}` per request line."""
    protocol = sys.stdout
    sys.stdout = sys.stderr  # a stray print from a library must not corrupt the protocol
    # math-verify warns once that its own (signal-based) timeout is off; the parent process enforces one.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    @lru_cache(maxsize=50_000)
    def parsed(text: str) -> list:
        return parse(latex_for_parsing(text), parsing_timeout=None)

    protocol.write(READY + "\n")
    protocol.flush()
    for line in sys.stdin:
        try:
            gold, pred = json.loads(line)
            gold_parsed, pred_parsed = parsed(gold), parsed(pred)
            equal = bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None))
            reply = {"verdict": equal}
        except Exception as error:  # noqa: BLE001 - reported to the parent, which decides
            reply = {"error": f"{type(error).__name__}: {error}"}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
