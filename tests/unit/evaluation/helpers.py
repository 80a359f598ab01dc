"""Hand-made result rows and string-equality grading for evaluation tests."""

from __future__ import annotations

from inference.types import Compute, ResultRow, ScoredCompletion


def exact_grader(gold: str, pred: str | None) -> bool:
    return pred is not None and pred.strip() == gold.strip()


def exact_grouper(answers: list[str | None]) -> list[int | None]:
    ids: dict[str, int] = {}
    return [None if a is None else ids.setdefault(a.strip(), len(ids)) for a in answers]


def sample(answer: str | None, score: float | None = 0.5, tokens: int = 10) -> ScoredCompletion:
    text = "no answer" if answer is None else f"$\\boxed{{{answer}}}$"
    return ScoredCompletion(text, (text,), () if score is None else (score,), score, answer, tokens, answer is not None)


def row(
    problem_id: str,
    strategy: str,
    *,
    gold: str = "A",
    completions: tuple[ScoredCompletion, ...] = (),
    n: int | None = None,
    beam_width: int | None = None,
    seed: int = 0,
    correct: bool = False,
    level: int | None = 1,
    policy_tokens: int | None = None,
    prm_tokens: int = 0,
    policy: str = "policy-1b",
    prm: str = "prm-a",
) -> ResultRow:
    return ResultRow(
        problem_id=problem_id, source="test", level=level, strategy=strategy,
        n=len(completions) if n is None else n, beam_width=beam_width, seed=seed, gold=gold,
        completions=completions, pred=None, correct=correct,
        compute=Compute(
            policy_tokens=sum(c.num_tokens for c in completions) if policy_tokens is None else policy_tokens,
            prm_tokens=prm_tokens,
        ),
        policy=policy, prm=prm,
    )


# Problem p1 (level 1, gold A): answers A B A C, scores .1 .9 .3 .5, tokens 10 20 30 40, 200 PRM tokens.
P1 = (sample("A", 0.1, 10), sample("B", 0.9, 20), sample("A", 0.3, 30), sample("C", 0.5, 40))
# Problem p2 (level 2, gold Y): answers X X - Y, scores .2 .2 .99 .8 (the unanswered one never wins).
P2 = (sample("X", 0.2, 5), sample("X", 0.2, 5), sample(None, 0.99, 5), sample("Y", 0.8, 5))


def sampling_rows(strategies=("majority", "best_of_n", "weighted_best_of_n")) -> list[ResultRow]:
    return [
        r
        for s in strategies
        for r in (
            row("p1", s, gold="A", completions=P1, level=1, prm_tokens=200),
            row("p2", s, gold="Y", completions=P2, level=2, prm_tokens=40),
        )
    ]


def simulated_rows(num_problems: int = 40, n_max: int = 16, seed: int = 0) -> list[ResultRow]:
    """A plausible run: sampling rows (all three strategies share samples) and beam search / DVTS at N = 4, 16.

    Level L problems are solved by a sample with probability 0.9 - 0.17 (L - 1); correct samples score higher.
    """
    import random

    rng = random.Random(seed)
    rows: list[ResultRow] = []
    for index in range(num_problems):
        level = index % 5 + 1
        p = 0.9 - 0.17 * (level - 1)
        pid = f"p{index}"
        completions = []
        for _ in range(n_max):
            right = rng.random() < p
            answer = "42" if right else rng.choice(["41", "43", "7", None])
            score = min(1.0, max(0.0, rng.gauss(0.7 if right else 0.4, 0.2)))
            completions.append(sample(answer, round(score, 3), rng.randint(50, 150)))
        for strategy in ("majority", "best_of_n", "weighted_best_of_n"):
            rows.append(row(pid, strategy, gold="42", completions=tuple(completions), level=level,
                            prm_tokens=sum(c.num_tokens + 30 for c in completions)))
        for strategy, boost in (("beam_search", 0.12), ("dvts", 0.08)):
            for n in (4, 16):
                solved = rng.random() < min(1.0, p + boost * (1 if level >= 3 else -0.5) + 0.02 * n ** 0.5)
                rows.append(row(pid, strategy, gold="42", n=n, beam_width=4, correct=solved, level=level,
                                policy_tokens=90 * n, prm_tokens=200 * n))
    return rows
