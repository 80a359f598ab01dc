"""Records and protocols shared by backends, scorers and strategies (strategies see nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

FinishReason = Literal["stop", "eos", "length"]
"""Why generation ended: hit a stop string (the step separator), the model's end of sequence, or max_tokens."""

Aggregation = Literal["last", "min", "prod", "mean"]
"""How step scores become one solution score."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling settings (engine settings live in the backend's constructor)."""

    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 512
    """Most new tokens per completion in this call (set explicitly: vLLM's default is 16)."""
    seed: int | None = None
    """Seed for this call; None draws from the backend's own seeded stream."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class GenerationRequest:
    """Continue the assistant turn for `problem` after the text already written (`prefix`)."""

    problem: str
    prefix: str = ""
    """Steps written so far, joined and ending with the separator when non-empty; the backend appends it
    after the chat-templated prompt so generation continues the same assistant message."""


@dataclass(frozen=True)
class Completion:
    """One generated continuation."""

    text: str
    """New text only (not the prefix); includes the stop string when generation stopped on it."""
    num_tokens: int
    """Tokens generated for this continuation."""
    finish_reason: FinishReason
    forward_tokens: int | None = field(default=None, compare=False)
    """Tokens the policy ran through its layers for this continuation: the generated ones plus its share of the
    prompt's prefill (shared by the samples of one request), 0 for a copy of another completion that was decoded
    once (greedy n > 1). None when the backend does not say: counted as `num_tokens`. Accounting only: two
    completions with the same text, tokens and finish are equal whatever their share of the prefill."""


@dataclass(frozen=True)
class PRMScore:
    """PRM output for one (problem, steps) pair."""

    step_scores: tuple[float, ...]
    """One score in [0, 1] per step, in step order."""
    num_tokens: int
    """Tokens of the sequence the PRM scored for this pair."""
    forward_tokens: int | None = field(default=None, compare=False)
    """Tokens the PRM ran through its layers for this pair: fewer than `num_tokens` when cached keys and values
    of a scored prefix served the rest, 0 when the pair was answered from the cache or repeats another pair of the
    call. None when the scorer does not say: counted as `num_tokens`."""


class Generator(Protocol):
    """A policy backend (transformers, vLLM, or a scripted fake in tests)."""

    name: str
    num_parameters: int

    def generate(
        self,
        requests: list[GenerationRequest],
        *,
        n: int,
        params: SamplingParams,
        stop: list[str] | None = None,
    ) -> list[list[Completion]]:
        """n completions per request, in request order; one model call for the whole batch."""
        ...


class PRMScorer(Protocol):
    """A process reward model (token-classification, +/- chat, step-tag, or a table in tests)."""

    name: str
    num_parameters: int

    def score(self, problems: list[str], step_lists: list[list[str]]) -> list[PRMScore]:
        """Per-step scores for each (problem, steps) pair, in input order; batched internally."""
        ...


@dataclass(frozen=True)
class ScoredCompletion:
    """A full (or abandoned) solution with its PRM verdict."""

    text: str
    steps: tuple[str, ...]
    step_scores: tuple[float, ...]
    agg_score: float | None
    """Aggregated step scores; None when the PRM did not score it (no steps, or scoring turned off)."""
    answer: str | None
    """Extracted `\\boxed{}` content; None when the solution has no final answer."""
    num_tokens: int
    """Policy tokens generated for this solution (beam search: its own path's tokens)."""
    finished: bool
    """Reached a final answer or the model's end of sequence."""


@dataclass
class Compute:
    """Compute spent on one problem by one strategy run."""

    policy_tokens: int = 0
    """Tokens the policy generated."""
    prm_tokens: int = 0
    """Tokens of the sequences the PRM scored."""
    policy_forward_tokens: int | None = None
    """Tokens the policy ran through its layers (prefill included): what its FLOPs count. None: not counted (rows
    of other sources or older versions), read as `policy_tokens`."""
    prm_forward_tokens: int | None = None
    """Tokens the PRM ran through its layers (fewer than `prm_tokens` where its prefix cache served): what its
    FLOPs count. None: not counted, read as `prm_tokens`."""

    @property
    def forward_tokens(self) -> tuple[int, int]:
        """(policy, PRM) tokens run, the scored counts standing in for what was not counted."""
        return (self.policy_tokens if self.policy_forward_tokens is None else self.policy_forward_tokens,
                self.prm_tokens if self.prm_forward_tokens is None else self.prm_forward_tokens)
    model_calls: int = 0
    """Batched generate/score calls that included this problem."""
    seconds: float = 0.0
    """Wall time; a batched call's time is split evenly over the problems in it."""


@dataclass(frozen=True)
class ResultRow:
    """One problem x strategy x settings: what was searched, what was chosen, what it cost."""

    problem_id: str
    source: str
    level: int | None
    strategy: str
    n: int
    beam_width: int | None
    seed: int
    gold: str
    completions: tuple[ScoredCompletion, ...]
    pred: str | None
    correct: bool
    compute: Compute
    policy: str = ""
    prm: str = ""
    settings: dict = field(default_factory=dict)
    """The strategy's own settings (aggregation, lookahead, max_iterations, ...)."""

    @property
    def has_prm_scores(self) -> bool:
        """Every stored completion carries a PRM score (majority without score_with_prm and greedy runs do not)."""
        return all(c.agg_score is not None for c in self.completions)
