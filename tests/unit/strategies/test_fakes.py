"""The test fakes themselves: ScriptedGenerator honours stop strings and max_tokens; TablePRMScorer counts words."""

import pytest

from tests.fakes import ScriptedGenerator, TablePRMScorer, complete_text
from inference.types import Completion, GenerationRequest, PRMScore, SamplingParams


def test_complete_text_stop_length_and_eos():
    assert complete_text("one two\n\nthree", ["\n\n"], 10) == Completion("one two\n\n", 2, "stop")
    assert complete_text("one two three four", ["\n\n"], 3) == Completion("one two three", 3, "length")
    assert complete_text("a b c d\n\ne", ["\n\n"], 2) == Completion("a b", 2, "length")
    assert complete_text("one two\n\nthree", None, 10) == Completion("one two\n\nthree", 3, "eos")


def test_scripted_generator_returns_script_in_order_and_records_calls():
    script = {("P", ""): ["x y\n\n", "z\n\n", Completion("w", 7, "length")], ("P", "x y\n\n"): ["done"]}
    generator = ScriptedGenerator(script)
    params = SamplingParams(temperature=0.5, max_tokens=50)
    requests = [GenerationRequest("P"), GenerationRequest("P", "x y\n\n")]
    out = generator.generate(requests, n=1, params=params, stop=["\n\n"])
    assert out == [[Completion("x y\n\n", 2, "stop")], [Completion("done", 1, "eos")]]
    out = generator.generate([GenerationRequest("P")], n=3, params=params, stop=None)
    assert [c.text for c in out[0]] == ["x y\n\n", "z\n\n", "w"]
    assert out[0][2] == Completion("w", 7, "length")
    assert [(len(c.requests), c.n, c.stop) for c in generator.calls] == [(2, 1, ("\n\n",)), (1, 3, None)]


def test_scripted_generator_short_script_raises_unless_cycle():
    script = {("P", ""): ["a", "b"]}
    with pytest.raises(ValueError, match="script has 2 continuations .* n=3"):
        ScriptedGenerator(script).generate([GenerationRequest("P")], n=3, params=SamplingParams())
    out = ScriptedGenerator(script, cycle=True).generate([GenerationRequest("P")], n=3, params=SamplingParams())
    assert [c.text for c in out[0]] == ["a", "b", "a"]
    with pytest.raises(KeyError, match="no scripted continuations"):
        ScriptedGenerator(script).generate([GenerationRequest("Q")], n=1, params=SamplingParams())


def test_table_scorer_scores_steps_and_counts_words():
    scorer = TablePRMScorer({"a b": 0.25, "c": 0.5}, default=0.1)
    out = scorer.score(["p q r", "p"], [["a b", "c"], ["zz"]])
    assert out == [PRMScore((0.25, 0.5), 3 + 2 + 1), PRMScore((0.1,), 1 + 1)]
    assert scorer.calls[0].step_lists == (("a b", "c"), ("zz",))
    with pytest.raises(KeyError, match="not in the score table"):
        TablePRMScorer({"a": 1.0}).score(["p"], [["b"]])
    by_position = TablePRMScorer(lambda problem, steps: [i / 10 for i in range(len(steps))])
    assert by_position.score(["p"], [["x", "y"]])[0].step_scores == (0.0, 0.1)
