"""Mechanics every strategy shares: base settings, batched model calls with compute accounting, result rows."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter

from data_prep.grading import answers_match
from data_prep.records import Problem
from data_prep.steps import extract_boxed_answer, split_steps
from inference.scoring.aggregate import aggregate, check_aggregation
from inference.types import (
    Aggregation,
    Completion,
    Compute,
    GenerationRequest,
    Generator,
    PRMScore,
    PRMScorer,
    ResultRow,
    SamplingParams,
    ScoredCompletion,
)

logger = logging.getLogger(__name__)


def require(ok: bool, message: str) -> None:
    """Raise ValueError(message) unless `ok`: settings validation that states rule, value and fix."""
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class StrategySettings:
    """Settings every strategy has."""

    n: int = 4
    """Generation budget per problem (N): solutions sampled, or beams kept in flight by tree search."""
    aggregation: Aggregation = "last"
    """How step scores become a solution score: last step (the reference default), min, prod or mean (RLHFlow's
    best-of-N aggregation)."""
    temperature: float = 0.8
    """Sampling temperature of the policy."""
    top_p: float = 1.0
    """Nucleus sampling mass of the policy."""
    seed: int = 0
    """Seed of the run; each generate call gets a seed derived from it (`call_seed`)."""

    def __post_init__(self) -> None:
        require(
            isinstance(self.n, int) and self.n >= 1, f"n must be an integer >= 1, got {self.n!r}; set n: 1, 2, 4, ..."
        )
        check_aggregation(self.aggregation)
        require(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}; use 0 for greedy")
        require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}; use 1.0 to turn it off")
        require(isinstance(self.seed, int), f"seed must be an integer, got {self.seed!r}")


@dataclass(frozen=True)
class SamplingSettings(StrategySettings):
    """Settings of strategies that sample N full solutions at once (majority, Best-of-N)."""

    max_tokens: int = 2048
    """Most new tokens per full solution."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}; e.g. max_tokens: 2048")


def call_seed(seed: int, index: int) -> int:
    """Seed of the `index`-th generate call of a run: `seed` itself for call 0, then a 31-bit hash of both."""
    if index == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


class Ledger:
    """Makes batched model calls for a list of problems and charges each call to the problems in it.

    Every call passes `owners` (the problem index of each item). Per call: each problem in it gets one
    model call and an even share of the call's wall time; tokens go to the problem that owns each item.
    """

    def __init__(self, problems: Sequence[Problem], generator: Generator, scorer: PRMScorer | None) -> None:
        self.problems = list(problems)
        self.generator = generator
        self.scorer = scorer
        self.compute = [Compute(policy_forward_tokens=0, prm_forward_tokens=0) for _ in self.problems]

    def _charge_call(self, owners: Sequence[int], seconds: float) -> None:
        distinct = sorted(set(owners))
        for owner in distinct:
            self.compute[owner].model_calls += 1
            self.compute[owner].seconds += seconds / len(distinct)

    def generate(
        self, owners: Sequence[int], prefixes: Sequence[str], *, n: int, params: SamplingParams, stop: list[str] | None
    ) -> list[list[Completion]]:
        """n completions per (problem, prefix) in one generate call; nothing is called for an empty batch."""
        if not owners:
            return []
        pairs = zip(owners, prefixes, strict=True)
        requests = [GenerationRequest(self.problems[owner].problem, prefix) for owner, prefix in pairs]
        start = perf_counter()
        outputs = self.generator.generate(requests, n=n, params=params, stop=stop)
        self._charge_call(owners, perf_counter() - start)
        if len(outputs) != len(requests) or any(len(out) != n for out in outputs):
            raise RuntimeError(
                f"generator {self.generator.name!r} returned {[len(o) for o in outputs]} completions for "
                f"{len(requests)} requests with n={n}; a Generator must return n completions per request"
            )
        for owner, out in zip(owners, outputs):
            self.compute[owner].policy_tokens += sum(c.num_tokens for c in out)
            self.compute[owner].policy_forward_tokens += sum(
                c.num_tokens if c.forward_tokens is None else c.forward_tokens for c in out)
        return outputs

    def score(self, owners: Sequence[int], step_lists: Sequence[Sequence[str]]) -> list[PRMScore | None]:
        """PRM scores of each (problem, steps) in one score call; empty step lists are not sent and get None."""
        if self.scorer is None:
            raise RuntimeError("this run has no PRM scorer; pass one to score solutions")
        sent = [i for i, steps in enumerate(step_lists) if steps]
        results: list[PRMScore | None] = [None] * len(step_lists)
        if not sent:
            return results
        problem_texts = [self.problems[owners[i]].problem for i in sent]
        start = perf_counter()
        scores = self.scorer.score(problem_texts, [list(step_lists[i]) for i in sent])
        self._charge_call([owners[i] for i in sent], perf_counter() - start)
        if len(scores) != len(sent):
            raise RuntimeError(f"scorer {self.scorer.name!r} returned {len(scores)} scores for {len(sent)} solutions")
        for i, result in zip(sent, scores):
            if len(result.step_scores) != len(step_lists[i]):
                raise RuntimeError(
                    f"scorer {self.scorer.name!r} returned {len(result.step_scores)} step scores for "
                    f"{len(step_lists[i])} steps; a PRMScorer must score every step"
                )
            self.compute[owners[i]].prm_tokens += result.num_tokens
            self.compute[owners[i]].prm_forward_tokens += (
                result.num_tokens if result.forward_tokens is None else result.forward_tokens)
            results[i] = result
        return results


def scored_completion(
    text: str,
    steps: Sequence[str],
    step_scores: Sequence[float],
    aggregation: Aggregation,
    *,
    num_tokens: int,
    finished: bool,
) -> ScoredCompletion:
    """A ScoredCompletion; agg_score is None when there are no step scores (no steps, or not scored)."""
    return ScoredCompletion(
        text=text,
        steps=tuple(steps),
        step_scores=tuple(step_scores),
        agg_score=aggregate(step_scores, aggregation) if step_scores else None,
        answer=extract_boxed_answer(text),
        num_tokens=num_tokens,
        finished=finished,
    )


def sample_solutions(
    ledger: Ledger, settings: SamplingSettings, *, score: bool = True, owners: Sequence[int] | None = None
) -> list[list[ScoredCompletion]]:
    """N full solutions per problem in one generate call, then (if `score`) one PRM call over all of them.

    `owners` picks the problems (indices into the ledger's; default all); the result follows their order.
    """
    params = SamplingParams(settings.temperature, settings.top_p, settings.max_tokens, call_seed(settings.seed, 0))
    owners = list(range(len(ledger.problems))) if owners is None else list(owners)
    outputs = ledger.generate(owners, [""] * len(owners), n=settings.n, params=params, stop=None)
    flat = [(owner, completion) for owner, out in zip(owners, outputs) for completion in out]
    step_lists = [split_steps(completion.text) for _, completion in flat]
    scores = ledger.score([owner for owner, _ in flat], step_lists) if score else [None] * len(flat)
    position = {owner: k for k, owner in enumerate(owners)}
    solutions: list[list[ScoredCompletion]] = [[] for _ in owners]
    for (owner, completion), steps, result in zip(flat, step_lists, scores):
        answered = extract_boxed_answer(completion.text) is not None
        solutions[position[owner]].append(
            scored_completion(
                completion.text,
                steps,
                result.step_scores if result is not None else (),
                settings.aggregation,
                num_tokens=completion.num_tokens,
                finished=answered or completion.finish_reason != "length",
            )
        )
    return solutions


def make_row(
    problem: Problem,
    strategy: str,
    settings: StrategySettings,
    completions: Sequence[ScoredCompletion],
    pred: str | None,
    compute: Compute,
    *,
    policy: str,
    prm: str,
) -> ResultRow:
    """The ResultRow of one problem, graded against the gold answer."""
    return ResultRow(
        problem_id=problem.id,
        source=problem.source,
        level=problem.level,
        strategy=strategy,
        n=settings.n,
        beam_width=getattr(settings, "beam_width", None),
        seed=settings.seed,
        gold=problem.answer,
        completions=tuple(completions),
        pred=pred,
        correct=answers_match(problem.answer, pred),
        compute=compute,
        policy=policy,
        prm=prm,
        settings=dataclasses.asdict(settings),
    )
