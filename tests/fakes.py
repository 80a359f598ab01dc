"""Deterministic fakes of the Generator and PRMScorer protocols for tests: scripted texts and table scores.

Both fakes count "tokens" as whitespace-separated words (`len(text.split())`), so tests can compute every
compute counter by hand, and both record each call so tests can assert exactly what a strategy asked for.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from inference.types import Completion, GenerationRequest, PRMScore, SamplingParams

Continuation = str | Completion
"""A scripted continuation: a text (the fake derives finish reason and token count) or a ready Completion."""

Script = Mapping[tuple[str, str], Sequence[Continuation]] | Callable[[str, str, int], Sequence[Continuation]]
"""(problem text, prefix) -> continuations, or a callable (problem, prefix, n) -> continuations."""

StepTable = Mapping[str, float] | Callable[[str, tuple[str, ...]], Sequence[float]]
"""Step text (stripped) -> score, or a callable (problem, steps) -> one score per step."""


def count_words(text: str) -> int:
    """The fakes' token count: whitespace-separated words."""
    return len(text.split())


@dataclass(frozen=True)
class GenerateCall:
    """One recorded `ScriptedGenerator.generate` call."""

    requests: tuple[GenerationRequest, ...]
    n: int
    params: SamplingParams
    stop: tuple[str, ...] | None


@dataclass(frozen=True)
class ScoreCall:
    """One recorded `TablePRMScorer.score` call."""

    problems: tuple[str, ...]
    step_lists: tuple[tuple[str, ...], ...]


def _truncate_words(text: str, max_words: int) -> str:
    """`text` up to the end of its `max_words`-th word (original spacing kept)."""
    ends = [match.end() for match in re.finditer(r"\S+", text)]
    return text[: ends[max_words - 1]] if max_words <= len(ends) else text


def complete_text(text: str, stop: Sequence[str] | None, max_tokens: int) -> Completion:
    """What a real backend would return for a model that wants to write `text` and then end its sequence.

    Cut after the earliest stop string (kept in the text, finish "stop"); if more than `max_tokens` words come
    before that, cut after `max_tokens` words (finish "length"); otherwise the whole text (finish "eos").
    """
    finish = "eos"
    cuts = [text.find(s) + len(s) for s in stop or () if s and s in text]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    if count_words(text) > max_tokens:
        text, finish = _truncate_words(text, max_tokens), "length"
    return Completion(text=text, num_tokens=count_words(text), finish_reason=finish)


class ScriptedGenerator:
    """A Generator that answers each (problem, prefix) with scripted continuations, in script order.

    Each request gets the first `n` continuations of its script entry (the same ones every time it is asked);
    a script shorter than `n` raises unless `cycle=True`, which repeats it. Text continuations pass through
    `complete_text` (stop strings and `params.max_tokens` are honoured); Completion objects come back as given.
    """

    def __init__(
        self, script: Script, *, cycle: bool = False, name: str = "scripted-policy", num_parameters: int = 1_000
    ) -> None:
        self.script = script
        self.cycle = cycle
        self.name = name
        self.num_parameters = num_parameters
        self.calls: list[GenerateCall] = []

    def _continuations(self, request: GenerationRequest, n: int) -> list[Continuation]:
        if callable(self.script):
            items = list(self.script(request.problem, request.prefix, n))
        else:
            key = (request.problem, request.prefix)
            if key not in self.script:
                raise KeyError(f"no scripted continuations for (problem, prefix)={key!r}; add this key to the script")
            items = list(self.script[key])
        if not items or (len(items) < n and not self.cycle):
            raise ValueError(
                f"script has {len(items)} continuations for prefix {request.prefix!r} of problem "
                f"{request.problem!r} but n={n} were requested; script more or pass cycle=True"
            )
        return list(itertools.islice(itertools.cycle(items), n))

    def generate(
        self,
        requests: list[GenerationRequest],
        *,
        n: int,
        params: SamplingParams,
        stop: list[str] | None = None,
    ) -> list[list[Completion]]:
        """n scripted completions per request, in request order; records the call."""
        self.calls.append(GenerateCall(tuple(requests), n, params, None if stop is None else tuple(stop)))
        return [
            [item if isinstance(item, Completion) else complete_text(item, stop, params.max_tokens)
             for item in self._continuations(request, n)]
            for request in requests
        ]


class TablePRMScorer:
    """A PRMScorer that scores each step from a table keyed by step text, or by a callable of (problem, steps).

    A step missing from the table scores `default`, or raises KeyError when `default` is None.
    `num_tokens` of a pair is the words of the problem plus the words of all its steps.
    """

    def __init__(
        self,
        table: StepTable,
        *,
        default: float | None = None,
        name: str = "table-prm",
        num_parameters: int = 100,
    ) -> None:
        self.table = table
        self.default = default
        self.name = name
        self.num_parameters = num_parameters
        self.calls: list[ScoreCall] = []

    def _step_scores(self, problem: str, steps: tuple[str, ...]) -> tuple[float, ...]:
        if callable(self.table):
            scores = tuple(float(s) for s in self.table(problem, steps))
            if len(scores) != len(steps):
                raise ValueError(f"score callable returned {len(scores)} scores for {len(steps)} steps")
            return scores
        scores = []
        for step in steps:
            key = step.strip()
            if key not in self.table and self.default is None:
                raise KeyError(f"step {key!r} is not in the score table; add it or pass default=")
            scores.append(float(self.table.get(key, self.default)))
        return tuple(scores)

    def score(self, problems: list[str], step_lists: list[list[str]]) -> list[PRMScore]:
        """Table scores for each (problem, steps) pair, in input order; records the call."""
        if len(problems) != len(step_lists):
            raise ValueError(f"{len(problems)} problems but {len(step_lists)} step lists; pass one per problem")
        self.calls.append(ScoreCall(tuple(problems), tuple(tuple(s) for s in step_lists)))
        return [
            PRMScore(
                step_scores=self._step_scores(problem, tuple(steps)),
                num_tokens=count_words(problem) + sum(count_words(step) for step in steps),
            )
            for problem, steps in zip(problems, step_lists)
        ]
