"""Beam search on scripted step trees: survivors, expansion requests, finishing, max_iterations, lookahead, compute."""

import zlib

import pytest

from data_prep.records import Problem
from inference.strategies import beam_search
from inference.strategies.common import call_seed
from tests.fakes import ScriptedGenerator, TablePRMScorer
from inference.types import GenerationRequest, SamplingParams

P = Problem(id="b/0", problem="What is 2 + 3?", answer="5", source="toy")
Q = Problem(id="b/1", problem="What is 1 + 1?", answer="2", source="toy")
SCRIPT = {
    (P.problem, ""): ["A good\n\n", "B bad\n\n", "C good\n\n", "D bad\n\n"],
    (P.problem, "A good\n\n"): ["A1 $\\boxed{5}$", "A2 mid\n\n"],
    (P.problem, "C good\n\n"): ["C1 $\\boxed{6}$", "C2 mid\n\n"],
    (P.problem, "A good\n\nA2 mid\n\n"): ["A21 $\\boxed{5}$", "A22 $\\boxed{5}$"],
    (P.problem, "C good\n\nC2 mid\n\n"): ["C21 more\n\n", "C22 more\n\n"],
    (Q.problem, ""): ["q1 a\n\n", "q2 b\n\n", "q3 c\n\n", "q4 d\n\n"],
    (Q.problem, "q3 c\n\n"): ["$\\boxed{2}$", "$\\boxed{2}$"],
    (Q.problem, "q2 b\n\n"): ["$\\boxed{3}$", "$\\boxed{2}$"],
}
SCORES = {
    "A good": 0.9, "B bad": 0.2, "C good": 0.8, "D bad": 0.1,
    "A1 $\\boxed{5}$": 0.7, "A2 mid": 0.6, "C1 $\\boxed{6}$": 0.95, "C2 mid": 0.3,
    "A21 $\\boxed{5}$": 0.5, "A22 $\\boxed{5}$": 0.4, "C21 more": 0.35, "C22 more": 0.33,
    "q1 a": 0.5, "q2 b": 0.6, "q3 c": 0.7, "q4 d": 0.4, "$\\boxed{2}$": 0.8, "$\\boxed{3}$": 0.9,
}


def prefixes(call):
    return [(request.problem, request.prefix) for request in call.requests]


def test_keeps_n_over_m_beams_expands_each_into_m_and_batches_problems(unit_clock):
    generator, scorer = ScriptedGenerator(SCRIPT), TablePRMScorer(SCORES)
    settings = beam_search.Settings(n=4, beam_width=2, seed=7)
    p_row, q_row = beam_search.run([P, Q], generator, scorer, settings)

    calls = generator.calls
    assert [(call.n, call.stop) for call in calls] == [(4, ("\n\n",)), (2, ("\n\n",)), (2, ("\n\n",))]
    assert calls[0].requests == (GenerationRequest(P.problem, ""), GenerationRequest(Q.problem, ""))
    # Top N/M = 2 of each problem, best first: A (0.9), C (0.8); q3 (0.7), q2 (0.6).
    assert prefixes(calls[1]) == [
        (P.problem, "A good\n\n"), (P.problem, "C good\n\n"), (Q.problem, "q3 c\n\n"), (Q.problem, "q2 b\n\n")
    ]
    # Q finished 4 beams in iteration 1 and leaves; P's two finished beams leave its active set.
    assert prefixes(calls[2]) == [(P.problem, "A good\n\nA2 mid\n\n"), (P.problem, "C good\n\nC2 mid\n\n")]
    assert [call.params for call in calls] == [SamplingParams(0.8, 1.0, 512, call_seed(7, i)) for i in range(3)]
    assert len(scorer.calls) == 3
    assert scorer.calls[1].step_lists[:2] == (("A good", "A1 $\\boxed{5}$"), ("A good", "A2 mid"))

    assert [c.text for c in p_row.completions] == [
        "A good\n\nA1 $\\boxed{5}$",
        "C good\n\nC1 $\\boxed{6}$",
        "A good\n\nA2 mid\n\nA21 $\\boxed{5}$",
        "A good\n\nA2 mid\n\nA22 $\\boxed{5}$",
    ]
    assert [c.agg_score for c in p_row.completions] == [0.7, 0.95, 0.5, 0.4]
    assert [c.step_scores for c in p_row.completions][2] == (0.9, 0.6, 0.5)
    assert [c.num_tokens for c in p_row.completions] == [4, 4, 6, 6]
    assert all(c.finished for c in p_row.completions)
    assert (p_row.pred, p_row.correct) == ("5", True)  # weighted: 5 -> 1.6 beats 6 -> 0.95
    assert (q_row.pred, q_row.correct) == ("2", True)  # weighted: 2 -> 2.4 beats 3 -> 0.9
    assert (p_row.strategy, p_row.n, p_row.beam_width, p_row.seed) == ("beam_search", 4, 2, 7)

    # P: 3 generate calls of 4 x 2 words; PRM: 4 x (5 + 2), 4 x (5 + 4), 4 x (5 + 6).
    assert (p_row.compute.policy_tokens, p_row.compute.prm_tokens, p_row.compute.model_calls) == (24, 108, 6)
    # Q: 4 x 2 + 4 x 1 words; PRM: 4 x (5 + 2) + 4 x (5 + 3); it took part in 4 calls.
    assert (q_row.compute.policy_tokens, q_row.compute.prm_tokens, q_row.compute.model_calls) == (12, 60, 4)
    # Each call lasts 1 s: 4 calls shared by two problems, P's last 2 alone.
    assert p_row.compute.seconds == pytest.approx(4.0) and q_row.compute.seconds == pytest.approx(2.0)


def test_best_final_selection_picks_top_score():
    settings = beam_search.Settings(n=4, beam_width=2, final_selection="best")
    p_row, q_row = beam_search.run([P, Q], ScriptedGenerator(SCRIPT), TablePRMScorer(SCORES), settings)
    assert (p_row.pred, q_row.pred) == ("6", "3")


def test_max_iterations_tops_up_with_best_active_beams():
    settings = beam_search.Settings(n=4, beam_width=2, max_iterations=2)
    generator = ScriptedGenerator(SCRIPT)
    row = beam_search.run([P], generator, TablePRMScorer(SCORES), settings)[0]
    assert len(generator.calls) == 2
    assert [c.steps for c in row.completions] == [
        ("A good", "A1 $\\boxed{5}$"), ("C good", "C1 $\\boxed{6}$"), ("A good", "A2 mid"), ("C good", "C2 mid")
    ]
    assert [c.finished for c in row.completions] == [True, True, False, False]
    assert [c.answer for c in row.completions] == ["5", "6", None, None]
    assert row.pred == "6"  # 0.95 beats 0.7


def test_single_iteration_returns_active_beams_best_first():
    generator = ScriptedGenerator(SCRIPT)
    settings = beam_search.Settings(n=4, beam_width=2, max_iterations=1)
    row = beam_search.run([P], generator, TablePRMScorer(SCORES), settings)[0]
    assert len(generator.calls) == 1
    assert [c.steps for c in row.completions] == [("A good",), ("C good",), ("B bad",), ("D bad",)]
    assert (row.pred, row.correct) == (None, False)


def test_finished_pool_is_cut_to_n_best_and_empty_steps_end_beams():
    r = Problem(id="b/2", problem="Pick.", answer="1")
    script = {
        (r.problem, ""): ["$\\boxed{1}$", "$\\boxed{2}$", "go on\n\n", "\n\n"],
        (r.problem, "go on\n\n"): ["$\\boxed{1}$", "$\\boxed{3}$", "$\\boxed{4}$", "$\\boxed{5}$"],
    }
    scores = {"$\\boxed{1}$": 0.3, "$\\boxed{2}$": 0.2, "go on": 0.5, "$\\boxed{3}$": 0.5, "$\\boxed{4}$": 0.1,
              "$\\boxed{5}$": 0.25}
    generator, scorer = ScriptedGenerator(script), TablePRMScorer(scores)
    row = beam_search.run([r], generator, scorer, beam_search.Settings(n=4, beam_width=4))[0]
    assert prefixes(generator.calls[1]) == [(r.problem, "go on\n\n")]
    assert len(scorer.calls[0].step_lists) == 3  # the empty continuation is not scored
    # 7 finished (one empty); the 4 best by agg_score, in finishing order.
    assert [c.steps for c in row.completions] == [
        ("$\\boxed{1}$",), ("go on", "$\\boxed{1}$"), ("go on", "$\\boxed{3}$"), ("go on", "$\\boxed{5}$")
    ]
    assert (row.pred, row.correct) == ("1", True)  # 1 -> 0.6 beats 3 -> 0.5


LOOKAHEAD_SCRIPT = {
    (P.problem, ""): ["X trap\n\n", "Y slow\n\n"],
    (P.problem, "X trap\n\n"): ["X dead $\\boxed{7}$", "X dead2 $\\boxed{7}$"],
    (P.problem, "Y slow\n\n"): ["Y done $\\boxed{5}$", "Y alt $\\boxed{4}$"],
}
LOOKAHEAD_SCORES = {
    "X trap": 0.9, "Y slow": 0.5, "X dead $\\boxed{7}$": 0.1, "X dead2 $\\boxed{7}$": 0.2,
    "Y done $\\boxed{5}$": 0.95, "Y alt $\\boxed{4}$": 0.3,
}


def test_without_lookahead_the_greedy_trap_survives():
    generator = ScriptedGenerator(LOOKAHEAD_SCRIPT)
    row = beam_search.run([P], generator, TablePRMScorer(LOOKAHEAD_SCORES), beam_search.Settings(n=2, beam_width=2))[0]
    assert prefixes(generator.calls[1]) == [(P.problem, "X trap\n\n")]
    assert (row.pred, row.correct) == ("7", False)


def test_lookahead_changes_which_beam_survives_and_counts_its_tokens(unit_clock):
    generator, scorer = ScriptedGenerator(LOOKAHEAD_SCRIPT), TablePRMScorer(LOOKAHEAD_SCORES)
    settings = beam_search.Settings(n=2, beam_width=2, lookahead=1)
    row = beam_search.run([P], generator, scorer, settings)[0]
    expand0, rollout, expand1 = generator.calls
    assert prefixes(rollout) == [(P.problem, "X trap\n\n"), (P.problem, "Y slow\n\n")]
    assert (rollout.n, rollout.params.temperature) == (1, 0.0)
    # X rolls into a 0.1 step, Y into a 0.95 step: Y survives although X scored higher on its own.
    assert prefixes(expand1) == [(P.problem, "Y slow\n\n")]
    assert scorer.calls[0].step_lists == (("X trap", "X dead $\\boxed{7}$"), ("Y slow", "Y done $\\boxed{5}$"))
    assert len(scorer.calls) == 2  # finished candidates are not rolled further
    assert [c.steps for c in row.completions] == [("Y slow", "Y done $\\boxed{5}$"), ("Y slow", "Y alt $\\boxed{4}$")]
    assert [c.step_scores for c in row.completions] == [(0.5, 0.95), (0.5, 0.3)]
    assert (row.pred, row.correct) == ("5", True)
    assert [c.num_tokens for c in row.completions] == [5, 5]  # own path only
    # Policy: 2 + 2 first steps, 3 + 3 lookahead, 3 + 3 last steps. PRM: 4 pairs of 5 + 2 + 3 words.
    assert (row.compute.policy_tokens, row.compute.prm_tokens, row.compute.model_calls) == (16, 40, 5)
    assert row.compute.seconds == pytest.approx(5.0)


def _tree_text(problem: str, prefix: str, n: int) -> list[str]:
    return [f"s{zlib.crc32(prefix.encode()) % 1000}x{i} w\n\n" for i in range(n)]


def _tree_score(problem: str, steps: tuple[str, ...]) -> list[float]:
    return [zlib.crc32(step.encode()) % 1000 / 1000 for step in steps]


def test_unfinished_search_keeps_top_beams_every_iteration_and_stops_at_max_iterations():
    generator, scorer = ScriptedGenerator(_tree_text), TablePRMScorer(_tree_score)
    row = beam_search.run([P], generator, scorer, beam_search.Settings(n=8, beam_width=2, max_iterations=3))[0]
    assert [(len(call.requests), call.n) for call in generator.calls] == [(1, 8), (4, 2), (4, 2)]
    assert len(scorer.calls) == 3
    for scored, expanded in zip(scorer.calls, generator.calls[1:]):
        best = sorted(scored.step_lists, key=lambda steps: _tree_score("", steps)[-1], reverse=True)[:4]
        assert [request.prefix for request in expanded.requests] == ["\n\n".join(s) + "\n\n" for s in best]
    assert len(row.completions) == 8
    assert {len(c.steps) for c in row.completions} == {3}
    assert not any(c.finished for c in row.completions)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n": 6, "beam_width": 4}, "n=6 is not a multiple of beam_width=4; use a multiple of beam_width"),
        ({"n": 0}, "n must be an integer >= 1, got 0"),
        ({"beam_width": 0}, "beam_width must be >= 1, got 0"),
        ({"aggregation": "median"}, "unknown aggregation 'median'"),
        ({"max_iterations": 0}, "max_iterations must be >= 1, got 0"),
        ({"lookahead": -1}, "lookahead must be >= 0, got -1"),
        ({"final_selection": "vote"}, "final_selection must be 'weighted' or 'best', got 'vote'"),
        ({"max_step_tokens": 0}, "max_step_tokens must be >= 1, got 0"),
    ],
)
def test_bad_settings_raise(options, message):
    with pytest.raises(ValueError, match=message):
        beam_search.Settings(**options)
