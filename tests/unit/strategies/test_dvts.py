"""DVTS on scripted step trees: N/M independent subtrees, one finalist each, batched calls, exact compute."""

import pytest

from data_prep.records import Problem
from inference.strategies import dvts
from tests.fakes import ScriptedGenerator, TablePRMScorer
from inference.types import GenerationRequest

P = Problem(id="d/0", problem="What is 2 + 3?", answer="5", source="toy")
Q = Problem(id="d/1", problem="What is 4 + 1?", answer="5", source="toy")
BY_PREFIX = {
    "": ["a\n\n", "b\n\n", "c\n\n", "d\n\n"],
    "b\n\n": ["b1 $\\boxed{5}$", "b2\n\n"],
    "c\n\n": ["c1 more\n\n", "c2 $\\boxed{6}$"],
    "c\n\nc1 more\n\n": ["c11 $\\boxed{5}$", "c12 $\\boxed{6}$"],
}
SCORES = {
    "a": 0.3, "b": 0.6, "c": 0.9, "d": 0.8,
    "b1 $\\boxed{5}$": 0.7, "b2": 0.4, "c1 more": 0.5, "c2 $\\boxed{6}$": 0.45,
    "c11 $\\boxed{5}$": 0.2, "c12 $\\boxed{6}$": 0.65,
}


def script(problem: str, prefix: str, n: int) -> list[str]:
    return BY_PREFIX[prefix]


def prefixes(call):
    return [(request.problem, request.prefix) for request in call.requests]


def test_subtrees_keep_their_own_best_and_contribute_one_finalist_each(unit_clock):
    generator, scorer = ScriptedGenerator(script), TablePRMScorer(SCORES)
    row = dvts.run([P], generator, scorer, dvts.Settings(n=4, beam_width=2))[0]

    first, second, third = generator.calls
    assert (first.requests, first.n) == ((GenerationRequest(P.problem, ""),), 4)
    # Subtree 0 = {a, b}, subtree 1 = {c, d}: each keeps its best (b, c), where beam search would keep c and d.
    assert (prefixes(second), second.n) == ([(P.problem, "b\n\n"), (P.problem, "c\n\n")], 2)
    # Subtree 0 ended with b1 (best, boxed); subtree 1 goes on from c1.
    assert (prefixes(third), third.n) == ([(P.problem, "c\n\nc1 more\n\n")], 2)
    assert len(scorer.calls) == 3

    assert [c.steps for c in row.completions] == [("b", "b1 $\\boxed{5}$"), ("c", "c1 more", "c12 $\\boxed{6}$")]
    assert [c.agg_score for c in row.completions] == [0.7, 0.65]
    assert [c.num_tokens for c in row.completions] == [3, 5]
    assert all(c.finished for c in row.completions)
    assert (row.pred, row.correct) == ("5", True)  # weighted: 0.7 for 5 beats 0.65 for 6
    assert (row.strategy, row.n, row.beam_width) == ("dvts", 4, 2)
    # Policy words: 4 x 1, then 2 + 1 + 2 + 2, then 2 + 2. PRM: 4 x (5 + 1), 8 + 7 + 8 + 8, 2 x (5 + 5).
    assert (row.compute.policy_tokens, row.compute.prm_tokens, row.compute.model_calls) == (15, 75, 6)
    assert row.compute.seconds == pytest.approx(6.0)


def test_max_iterations_takes_each_live_subtree_best_candidate():
    generator = ScriptedGenerator(script)
    row = dvts.run([P], generator, TablePRMScorer(SCORES), dvts.Settings(n=4, beam_width=2, max_iterations=2))[0]
    assert len(generator.calls) == 2
    assert [c.steps for c in row.completions] == [("b", "b1 $\\boxed{5}$"), ("c", "c1 more")]
    assert [c.finished for c in row.completions] == [True, False]
    assert row.pred == "5"


def test_all_problems_and_subtrees_advance_in_one_call_per_iteration(unit_clock):
    generator, scorer = ScriptedGenerator(script), TablePRMScorer(SCORES)
    p_row, q_row = dvts.run([P, Q], generator, scorer, dvts.Settings(n=4, beam_width=2))
    assert [len(call.requests) for call in generator.calls] == [2, 4, 2]
    assert prefixes(generator.calls[1]) == [
        (P.problem, "b\n\n"), (P.problem, "c\n\n"), (Q.problem, "b\n\n"), (Q.problem, "c\n\n")
    ]
    assert [len(call.step_lists) for call in scorer.calls] == [8, 8, 4]
    assert p_row.completions == q_row.completions
    assert (p_row.compute.policy_tokens, q_row.compute.policy_tokens) == (15, 15)
    assert (p_row.compute.model_calls, p_row.compute.seconds) == (6, pytest.approx(3.0))


def test_returns_n_over_m_finalists():
    def wide(problem: str, prefix: str, n: int) -> list[str]:
        depth = prefix.count("\n\n")
        return [f"d{depth}s{i} $\\boxed{{{i}}}$" if depth == 1 else f"d{depth}s{i}\n\n" for i in range(n)]

    def by_index(problem: str, steps: tuple[str, ...]) -> list[float]:
        return [0.1 * (1 + int(step[3])) for step in steps]

    generator = ScriptedGenerator(wide)
    row = dvts.run([P], generator, TablePRMScorer(by_index), dvts.Settings(n=8, beam_width=2))[0]
    # 4 subtrees: first steps s0..s7 dealt in pairs, each keeps its higher index (s1, s3, s5, s7); then each
    # expands into s0, s1 and keeps s1, whose boxed answer is 1.
    assert [c.steps for c in row.completions] == [(f"d0s{k}", "d1s1 $\\boxed{1}$") for k in (1, 3, 5, 7)]
    assert [(len(call.requests), call.n) for call in generator.calls] == [(1, 8), (4, 2)]
    assert row.pred == "1"


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="n=6 is not a multiple of beam_width=4; use a multiple of beam_width"):
        dvts.Settings(n=6, beam_width=4)
    with pytest.raises(ValueError, match="unknown aggregation 'sum'"):
        dvts.Settings(aggregation="sum")
