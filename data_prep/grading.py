"""Answer equivalence: a normalised-string fast path, then math-verify in a worker process with a hard timeout."""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

from data_prep.grading_worker import READY
from data_prep.steps import extract_boxed_answer

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
"""Seconds one math-verify comparison (parse both sides + verify) may take before it counts as "not equal"."""

WORKER_START_TIMEOUT_S = 120.0
"""Seconds to wait for the worker process to import math-verify; not counted against a comparison's timeout."""

DEFAULT_CACHE_SIZE = 200_000
"""(gold, pred) verdicts kept per `Grader`."""

# --------------------------------------------------------------------------- normalisation

_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACING = re.compile(r"\\[!,;: ]|\\quad(?![A-Za-z])|\\qquad(?![A-Za-z])")
_THOUSANDS_INTEGER = re.compile(r"-?\d{1,3}(?:,\d{3})+")
_LETTER_CHOICE = re.compile(r"\(([A-Z])\)")


def _strip_dollars(answer: str) -> str:
    """Drop `\\$` currency signs and `$` math delimiters."""
    return answer.replace("\\$", "").replace("$", "")


def normalize_answer(answer: str) -> str:
    """A canonical string for an answer: equal strings are equal answers (the converse needs math-verify).

    Removes `$`, `\\left`/`\\right`, LaTeX spacing (`\\!`, `\\,` ...), whitespace, `\\text{}`-style wrappers,
    a trailing `.` and a trailing `\\%`; rewrites `\\dfrac`/`\\tfrac` to `\\frac`, `1{,}000` and `1,000` to `1000`
    (plain integers only) and a lone `(C)` to `C`. A boxed answer is unwrapped first.
    """
    text = answer.strip()
    if "\\boxed" in text or "\\fbox" in text:
        text = extract_boxed_answer(text) or text
    text = _strip_dollars(text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("{,}", ",")
    text = _LEFT_RIGHT.sub("", text)
    text = _SPACING.sub("", text)
    previous = None
    while previous != text:  # unwrap nested \text{\textbf{...}} from the inside out
        previous, text = text, _TEXT_WRAPPER.sub(r"\1", text)
    text = re.sub(r"\s+", "", text)
    text = text.rstrip(".")
    if text.endswith("\\%"):
        text = text[:-2]
    elif text.endswith("%"):
        text = text[:-1]
    if _THOUSANDS_INTEGER.fullmatch(text):
        text = text.replace(",", "")
    choice = _LETTER_CHOICE.fullmatch(text)
    if choice:
        text = choice.group(1)
    return text


class Grader:
    """Answer equivalence with a verdict cache and one lazily started math-verify worker process.

    Thread-safe: comparisons from several threads share the worker one at a time. The worker is started on
    the first comparison that needs math-verify (never at import) and replaced after a timeout or when it dies.
    It is a fresh interpreter (`python -m data_prep.grading_worker`), not a multiprocessing child, so the caller
    needs no `if __name__ == "__main__":` guard: plain scripts, notebooks and threads all work.
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        fast_path: bool = True,
    ) -> None:
        _check_timeout(timeout_s)
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.timeout_s = timeout_s
        self.cache_size = cache_size
        self.fast_path = fast_path
        """When True, answers with equal `normalize_answer` strings match without asking math-verify."""
        self.num_timeouts = 0
        """Comparisons that ran past their timeout (counted as not equal)."""
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._worker_lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._pending = b""
        """Bytes the worker wrote past the last whole line read."""

    # ----- public

    def match(self, gold: str, pred: str | None, *, timeout_s: float | None = None) -> bool:
        """True when `pred` is mathematically equivalent to `gold`; None or blank `pred` is never equal."""
        if not isinstance(gold, str) or not gold.strip():
            raise ValueError(f"gold answer must be a non-empty string, got {gold!r}")
        if pred is None or not pred.strip():
            return False
        if self.fast_path and normalize_answer(gold) == normalize_answer(pred):
            return True
        key = (gold, pred)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        verdict = self._ask_worker(gold, pred, self.timeout_s if timeout_s is None else timeout_s)
        if verdict is None:
            return False
        if self.cache_size:
            with self._cache_lock:
                self._cache[key] = verdict
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return verdict

    def group(self, answers: list[str | None], *, timeout_s: float | None = None) -> list[int | None]:
        """Group ids for `answers`: equivalent answers share an id, ids count up in first-occurrence order.

        None and blank answers get None. Each new answer is compared (as prediction) with one
        representative (as gold) per existing group, the first member seen.
        """
        representatives: list[str] = []
        by_normal: dict[str, int] = {}
        groups: list[int | None] = []
        for answer in answers:
            if answer is None or not answer.strip():
                groups.append(None)
                continue
            normal = normalize_answer(answer)
            group_id = by_normal.get(normal) if self.fast_path else None
            if group_id is None:
                group_id = next(
                    (index for index, rep in enumerate(representatives) if self.match(rep, answer, timeout_s=timeout_s)),
                    None,
                )
            if group_id is None:
                group_id = len(representatives)
                representatives.append(answer)
            by_normal.setdefault(normal, group_id)
            groups.append(group_id)
        return groups

    def close(self) -> None:
        """Stop the worker process (a later comparison starts a new one)."""
        with self._worker_lock:
            self._stop_worker()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- worker management

    def _ask_worker(self, gold: str, pred: str, timeout_s: float) -> bool | None:
        """The worker's verdict, or None when it timed out or died (the worker is then replaced)."""
        _check_timeout(timeout_s)
        with self._worker_lock:
            process = self._ensure_worker()
            try:
                process.stdin.write((json.dumps([gold, pred]) + "\n").encode("utf-8"))
                process.stdin.flush()
                line = self._read_line(time.monotonic() + timeout_s)
            except (BrokenPipeError, EOFError, OSError):
                logger.warning("math-verify worker died comparing gold=%r pred=%r; counted as not equal", gold, pred)
                self._stop_worker()
                return None
            if line is None:
                self.num_timeouts += 1
                logger.warning(
                    "math-verify took over %.1fs comparing gold=%r pred=%r; counted as not equal", timeout_s, gold, pred
                )
                self._stop_worker()
                return None
        reply = json.loads(line)
        if "error" in reply:
            logger.warning("math-verify failed comparing gold=%r pred=%r (%s); counted as not equal", gold, pred,
                           reply["error"])
            return False
        return bool(reply["verdict"])

    def _read_line(self, deadline: float) -> str | None:
        """The worker's next whole output line, or None at the deadline; EOFError when the worker is gone."""
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError("the math-verify worker closed its output")
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode("utf-8")

    def _ensure_worker(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop_worker()
        # The worker imports data_prep from where this module lies, installed or not.
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "data_prep.grading_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, bufsize=0,
        )
        try:
            ready = self._read_line(time.monotonic() + WORKER_START_TIMEOUT_S)
        except EOFError:
            ready = None
        if ready != READY:
            self._stop_worker()
            raise RuntimeError(
                f"the math-verify worker did not start within {WORKER_START_TIMEOUT_S:.0f}s; "
                "check that math-verify imports (python -c 'import math_verify')"
            )
        return self._process

    def _stop_worker(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
        self._process, self._pending = None, b""


def _check_timeout(timeout_s: float) -> None:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")


# --------------------------------------------------------------------------- module-level API

_default_grader: Grader | None = None
_default_grader_lock = threading.Lock()


def default_grader() -> Grader:
    """The process-wide `Grader` behind `answers_match` and `group_equivalent` (created on first use)."""
    global _default_grader
    with _default_grader_lock:
        if _default_grader is None:
            _default_grader = Grader()
        return _default_grader


def answers_match(gold: str, pred: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when `pred` is mathematically equivalent to `gold` (`\\frac{1}{2}` = `0.5`, `x=5` = `5`).

    None or blank `pred` is False. A comparison that takes over `timeout_s` seconds counts as False.
    Safe to call from any thread.
    """
    return default_grader().match(gold, pred, timeout_s=timeout_s)


def group_equivalent(answers: list[str | None], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[int | None]:
    """Group id per answer: equivalent answers share an id, ids in first-occurrence order, None stays None."""
    return default_grader().group(answers, timeout_s=timeout_s)
