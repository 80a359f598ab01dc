"""Majority vote: equivalence-grouped vote, its tie rule, one batched generate call, exact compute counters."""

import pytest

from data_prep.records import Problem
from inference.strategies import majority
from inference.strategies.selection import majority_answer
from tests.fakes import ScriptedGenerator, TablePRMScorer
from inference.types import Completion, GenerationRequest, SamplingParams, ScoredCompletion

HALF = Problem(id="t/0", problem="Halve one.", answer="\\frac{1}{2}", level=2, source="toy")
TWO = Problem(id="t/1", problem="What is 1 + 1?", answer="2", level=None, source="toy")
SCRIPT = {
    (HALF.problem, ""): [
        "Half of one.\n\nSo $\\boxed{0.5}$.",  # 5 words
        "Guess.\n\n$\\boxed{3}$",  # 2
        "Divide.\n\n$\\boxed{\\frac{1}{2}}$",  # 2
        "Guess again.\n\n$\\boxed{3}$",  # 3
        "Slash.\n\n$\\boxed{1/2}$",  # 2
    ],
    (TWO.problem, ""): [
        "$\\boxed{2}$",
        "$\\boxed{3}$",
        "$\\boxed{3}$",
        Completion("no answer", 2, "length"),
        "$\\boxed{2}$",
    ],
}
SCORES = {"Half of one.": 0.9, "So $\\boxed{0.5}$.": 0.8, "$\\boxed{3}$": 0.99}


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["0.5", "3", "\\frac{1}{2}", "3", "1/2"], "0.5"),  # three equivalent halves beat two 3s
        (["3", "\\frac{1}{2}", "0.5", "3", "1/2"], "\\frac{1}{2}"),  # the winning group's first member is returned
        (["3", "0.5", "1/2", "3"], "3"),  # tie 2-2: the group seen first wins
        (["0.5", "3", "3", "1/2"], "0.5"),
        ([None, None, "7", None], "7"),  # missing answers never vote
        ([None, None], None),
        ([], None),
    ],
)
def test_majority_answer(answers, expected):
    assert majority_answer(answers) == expected


def test_run_votes_over_equivalent_answers_and_counts_compute(unit_clock):
    generator = ScriptedGenerator(SCRIPT, name="policy-x", num_parameters=10)
    scorer = TablePRMScorer(SCORES, default=0.5, name="prm-y")
    settings = majority.Settings(n=5, temperature=0.7, top_p=0.9, max_tokens=64, seed=3)
    rows = majority.run([HALF, TWO], generator, scorer, settings)

    assert len(generator.calls) == 1
    call = generator.calls[0]
    assert call.requests == (GenerationRequest(HALF.problem, ""), GenerationRequest(TWO.problem, ""))
    assert (call.n, call.stop, call.params) == (5, None, SamplingParams(0.7, 0.9, 64, 3))
    assert len(scorer.calls) == 1 and len(scorer.calls[0].step_lists) == 10

    half, two = rows
    assert (half.pred, half.correct) == ("0.5", True)
    assert (two.pred, two.correct) == ("2", True)  # 2 vs 3 tie: 2 came first
    assert half.completions[0] == ScoredCompletion(
        text="Half of one.\n\nSo $\\boxed{0.5}$.",
        steps=("Half of one.", "So $\\boxed{0.5}$."),
        step_scores=(0.9, 0.8),
        agg_score=0.8,
        answer="0.5",
        num_tokens=5,
        finished=True,
    )
    assert two.completions[3].answer is None and two.completions[3].finished is False
    assert [c.answer for c in half.completions] == ["0.5", "3", "\\frac{1}{2}", "3", "1/2"]
    # Policy tokens are words of the samples; PRM tokens are problem words + step words per sample.
    assert (half.compute.policy_tokens, half.compute.prm_tokens) == (14, 5 * 2 + 14)
    assert (two.compute.policy_tokens, two.compute.prm_tokens) == (6, 5 * 5 + 6)
    assert (half.compute.model_calls, two.compute.model_calls) == (2, 2)
    assert half.compute.seconds == pytest.approx(1.0) and two.compute.seconds == pytest.approx(1.0)
    assert (half.strategy, half.n, half.beam_width, half.seed, half.gold, half.level, half.source) == (
        "majority", 5, None, 3, "\\frac{1}{2}", 2, "toy"
    )
    assert (half.policy, half.prm) == ("policy-x", "prm-y")
    assert half.settings == {
        "n": 5, "aggregation": "last", "temperature": 0.7, "top_p": 0.9, "seed": 3, "max_tokens": 64,
        "score_with_prm": True,
    }


def test_run_without_prm_skips_scoring(unit_clock):
    scorer = TablePRMScorer(SCORES, default=0.5)
    rows = majority.run([HALF], ScriptedGenerator(SCRIPT), scorer, majority.Settings(n=5, score_with_prm=False))
    assert scorer.calls == []
    assert rows[0].pred == "0.5"
    assert {c.agg_score for c in rows[0].completions} == {None}
    assert rows[0].prm == ""
    assert (rows[0].compute.policy_tokens, rows[0].compute.prm_tokens, rows[0].compute.model_calls) == (14, 0, 1)
    assert rows[0].compute.seconds == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n": 0}, "n must be an integer >= 1, got 0"),
        ({"aggregation": "median"}, "unknown aggregation 'median'; use one of last, min, prod, mean"),
        ({"max_tokens": 0}, "max_tokens must be >= 1, got 0"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"top_p": 0.0}, "top_p must be in \\(0, 1\\]"),
    ],
)
def test_bad_settings_raise(options, message):
    with pytest.raises(ValueError, match=message):
        majority.Settings(**options)
