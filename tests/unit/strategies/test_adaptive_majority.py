"""Adaptive majority: the Beta stopping rule, round by round on scripted samples, weighted votes, compute, settings."""

from collections import defaultdict

import pytest

from data_prep.records import Problem
from inference.strategies import adaptive_majority as am, make_settings
from inference.strategies.common import call_seed
from tests.fakes import ScriptedGenerator, TablePRMScorer

P = Problem(id="a/0", problem="What is 2 + 3?", answer="5", source="toy")
Q = Problem(id="a/1", problem="What is 1 + 1?", answer="2", source="toy")
FIVE, TWO, THREE, NONE = "$\\boxed{5}$", "$\\boxed{2}$", "$\\boxed{3}$", "no answer"
SAMPLES = {P.problem: [FIVE, FIVE, FIVE, FIVE, FIVE, FIVE], Q.problem: [TWO, THREE, TWO, NONE, TWO, TWO]}


def rounds_generator(samples=SAMPLES):
    """Each call to a problem gets its next n scripted samples (rounds draw new samples)."""
    taken = defaultdict(int)

    def script(problem, prefix, n):
        start = taken[problem]
        taken[problem] += n
        return samples[problem][start:start + n]

    return ScriptedGenerator(script)


def test_beta_stopping_probability_is_exact():
    # P(X > 1/2), X ~ Beta(a + 1, b + 1): (2, 0) -> 1 - 1/8; (4, 0) -> 1 - 1/32; (2, 1) -> 11/16; (1, 1) -> 1/2.
    assert am.majority_probability(2, 0, 1.0) == pytest.approx(7 / 8)
    assert am.majority_probability(4, 0, 1.0) == pytest.approx(31 / 32)
    assert am.majority_probability(2, 1, 1.0) == pytest.approx(11 / 16)
    assert am.majority_probability(1, 1, 1.0) == pytest.approx(0.5)


def test_stops_each_problem_once_settled_round_by_round(unit_clock):
    generator = rounds_generator()
    settings = am.Settings(n=6, round_size=2, threshold=0.9, seed=3)
    p_row, q_row = am.run([P, Q], generator, None, settings)
    # Round 0: P 5,5 (7/8 < .9), Q 2,3 (1/2). Round 1: P 5,5,5,5 (31/32: stops), Q 2,3,2,- (11/16).
    # Round 2: Q alone, 2,3,2,-,2,2: the cap of 6 stops it.
    assert [[r.problem for r in call.requests] for call in generator.calls] == [
        [P.problem, Q.problem], [P.problem, Q.problem], [Q.problem]]
    assert [call.n for call in generator.calls] == [2, 2, 2]
    assert [call.params.seed for call in generator.calls] == [call_seed(3, r) for r in range(3)]
    assert [c.answer for c in p_row.completions] == ["5"] * 4
    assert [c.answer for c in q_row.completions] == ["2", "3", "2", None, "2", "2"]
    assert (p_row.pred, q_row.pred, p_row.correct, q_row.correct) == ("5", "2", True, True)
    assert (p_row.strategy, p_row.n, p_row.prm) == ("adaptive_majority", 6, "")
    # One word per boxed sample ("no answer": 2); calls: P in rounds 0-1, Q in 0-2; no PRM; 1 s per call shared.
    assert (p_row.compute.policy_tokens, p_row.compute.model_calls, p_row.compute.prm_tokens) == (4, 2, 0)
    assert (q_row.compute.policy_tokens, q_row.compute.model_calls, q_row.compute.prm_tokens) == (7, 3, 0)
    assert (p_row.compute.seconds, q_row.compute.seconds) == (pytest.approx(1.0), pytest.approx(2.0))
    assert all(c.agg_score is None for c in q_row.completions)


def test_lower_threshold_stops_after_the_first_unanimous_round():
    p_row, q_row = am.run([P, Q], rounds_generator(), None, am.Settings(n=6, round_size=2, threshold=0.85))
    assert (len(p_row.completions), len(q_row.completions)) == (2, 6)


def test_weighted_votes_use_prm_scores():
    samples = {Q.problem: [TWO, THREE]}
    scorer = TablePRMScorer({TWO: 0.3, THREE: 0.9})
    plain = am.run([Q], rounds_generator(samples), None, am.Settings(n=2, round_size=2))[0]
    weighted = am.run([Q], rounds_generator(samples), scorer, am.Settings(n=2, round_size=2, weighted=True))[0]
    assert (plain.pred, weighted.pred) == ("2", "3")  # a 1-1 tie goes to the first; 0.9 outweighs 0.3
    assert [c.agg_score for c in weighted.completions] == [0.3, 0.9]
    # PRM: 5 problem words + 1 step word, twice; one generate and one score call.
    assert (weighted.compute.prm_tokens, weighted.compute.model_calls, weighted.prm) == (12, 2, "table-prm")
    assert am.vote_totals(weighted.completions, True) == [0.9, 0.3]


@pytest.mark.parametrize(("options", "message"), [
    ({"n": 6, "round_size": 4}, "n=6 is not a multiple of round_size=4"),
    ({"threshold": 1.0}, "threshold must be in \\(0, 1\\), got 1.0"),
    ({"prior": 0}, "prior must be > 0"),
    ({"round_size": 0}, "round_size must be an integer >= 1"),
])
def test_bad_settings_name_the_setting(options, message):
    with pytest.raises(ValueError, match=message):
        make_settings("adaptive_majority", {"n": 8, **options})
