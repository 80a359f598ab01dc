"""Best-of-N: naive picks the top aggregated score, weighted sums scores per equivalent answer; tie rules."""

import pytest

from data_prep.records import Problem
from inference.strategies import best_of_n
from inference.strategies.selection import best_answer, select_answer, weighted_answer
from tests.fakes import ScriptedGenerator, TablePRMScorer
from inference.types import Completion, ScoredCompletion


def solution(answer: str | None, score: float | None) -> ScoredCompletion:
    text = f"$\\boxed{{{answer}}}$" if answer is not None else "no answer"
    return ScoredCompletion(text, (text,), () if score is None else (score,), score, answer, 1, answer is not None)


def test_best_answer_takes_top_score_among_answered():
    assert best_answer([solution("5", 0.6), solution("6", 0.9), solution("7", 0.3)]) == "6"
    # A top-scored solution without a final answer never wins.
    assert best_answer([solution(None, 0.99), solution("5", 0.6)]) == "5"
    assert best_answer([solution(None, 0.99)]) is None
    assert best_answer([]) is None


def test_best_answer_tie_goes_to_first():
    assert best_answer([solution("5", 0.7), solution("6", 0.7)]) == "5"
    assert best_answer([solution("6", 0.7), solution("5", 0.7)]) == "6"


def test_weighted_frequent_mid_scores_beat_single_top():
    assert weighted_answer([solution("9", 0.9), solution("7", 0.5), solution("7", 0.5)]) == "7"


def test_weighted_single_top_beats_frequent_low_scores():
    assert weighted_answer([solution("9", 0.9), solution("7", 0.3), solution("7", 0.3)]) == "9"


def test_weighted_groups_equivalent_answers():
    completions = [solution("3", 0.7), solution("0.5", 0.4), solution("\\frac{1}{2}", 0.4)]
    assert weighted_answer(completions) == "0.5"
    assert best_answer(completions) == "3"


def test_weighted_tie_goes_to_first_group_and_skips_unanswered():
    assert weighted_answer([solution("4", 0.5), solution("8", 0.25), solution("8", 0.25)]) == "4"
    assert weighted_answer([solution("8", 0.25), solution("4", 0.5), solution("8", 0.25)]) == "8"
    assert weighted_answer([solution(None, 0.9), solution(None, 0.9), solution("1", 0.1)]) == "1"
    assert weighted_answer([solution(None, 0.9)]) is None


def test_selection_needs_scores():
    with pytest.raises(ValueError, match="completion 0 \\(answer '5'\\) has no PRM score"):
        weighted_answer([solution("5", None)])
    with pytest.raises(ValueError, match="unknown final selection 'vote'"):
        select_answer([solution("5", 0.5)], "vote")


PROBLEM = Problem(id="p/0", problem="What is 2 + 3?", answer="5", level=1, source="toy")
SCRIPT = {
    (PROBLEM.problem, ""): [
        "Add.\n\n$\\boxed{5}$",
        "Add twice.\n\n$\\boxed{5}$",
        "Multiply.\n\n$\\boxed{6}$",
        Completion("Ramble.", 1, "length"),
    ]
}
SCORES = {"Add.": 0.6, "Add twice.": 0.9, "$\\boxed{5}$": 0.6, "Multiply.": 0.1, "$\\boxed{6}$": 0.9, "Ramble.": 0.99}


def test_naive_and_weighted_runs_disagree_as_expected(unit_clock):
    settings = best_of_n.Settings(n=4)
    naive = best_of_n.run([PROBLEM], ScriptedGenerator(SCRIPT), TablePRMScorer(SCORES), settings)[0]
    weighted = best_of_n.run_weighted([PROBLEM], ScriptedGenerator(SCRIPT), TablePRMScorer(SCORES), settings)[0]
    assert [c.agg_score for c in naive.completions] == [0.6, 0.6, 0.9, 0.99]
    assert (naive.strategy, naive.pred, naive.correct) == ("best_of_n", "6", False)
    assert (weighted.strategy, weighted.pred, weighted.correct) == ("weighted_best_of_n", "5", True)
    # policy: 2 + 3 + 2 + 1 words; PRM: 4 x 5 problem words + the same step words.
    assert (naive.compute.policy_tokens, naive.compute.prm_tokens, naive.compute.model_calls) == (8, 28, 2)
    assert naive.compute.seconds == pytest.approx(2.0)


def test_aggregation_setting_changes_naive_pick():
    settings = best_of_n.Settings(n=4, aggregation="min")
    row = best_of_n.run([PROBLEM], ScriptedGenerator(SCRIPT), TablePRMScorer(SCORES), settings)[0]
    assert [c.agg_score for c in row.completions] == [0.6, 0.6, 0.1, 0.99]
    assert (row.pred, row.settings["aggregation"]) == ("5", "min")


def test_generator_returning_too_few_completions_is_an_error():
    class Short(ScriptedGenerator):
        def generate(self, requests, *, n, params, stop=None):
            return [out[:-1] for out in super().generate(requests, n=n, params=params, stop=stop)]

    with pytest.raises(RuntimeError, match="must return n completions per request"):
        best_of_n.run([PROBLEM], Short(SCRIPT), TablePRMScorer(SCORES), best_of_n.Settings(n=4))


def test_forward_tokens_are_charged_as_the_models_report_them_else_as_their_token_counts():
    from dataclasses import replace

    from inference.types import PRMScore

    problem = Problem(id="p", problem="What is 2 + 3?", answer="5")
    script = {(problem.problem, ""): ["Add.\n\n$\\boxed{5}$", "So.\n\n$\\boxed{6}$"]}
    settings = best_of_n.Settings(n=2)
    (plain,) = best_of_n.run([problem], ScriptedGenerator(script), TablePRMScorer({}, default=0.5), settings)
    # Fakes report no forward tokens: the scored counts stand in.
    assert plain.compute.forward_tokens == (plain.compute.policy_tokens, plain.compute.prm_tokens)

    class Reporting(ScriptedGenerator):
        def generate(self, requests, *, n, params, stop=None):
            return [[replace(c, forward_tokens=c.num_tokens + 10) for c in out]
                    for out in super().generate(requests, n=n, params=params, stop=stop)]

    class Caching(TablePRMScorer):
        def score(self, problems, step_lists):
            return [PRMScore(r.step_scores, r.num_tokens, forward_tokens=1) for r in super().score(problems, step_lists)]

    (row,) = best_of_n.run([problem], Reporting(script), Caching({}, default=0.5), settings)
    assert (row.compute.policy_tokens, row.compute.prm_tokens) == (plain.compute.policy_tokens, plain.compute.prm_tokens)
    assert row.compute.forward_tokens == (plain.compute.policy_tokens + 2 * 10, 2)
