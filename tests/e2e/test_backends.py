"""Policy backend and PRM scorers end to end on tiny random checkpoints: generate steps, continue a prefix, score."""

from __future__ import annotations

import pytest

from data_prep.prm_metadata import PRMMetadata
from data_prep.steps import STEP_SEPARATOR, join_steps, split_steps
from inference.generation import load_generator
from inference.scoring import load_scorer
from inference.types import GenerationRequest, PRMScore, SamplingParams
from tests.unit.generation.tiny_models import build_tiny_tokenizer, save_causal_lm, save_token_classifier

pytestmark = pytest.mark.slow

PROBLEMS = ["Tom has 3 apples and buys 4 more. How many apples does he have?", "What is 12 - 5?"]
# "\n\n" is the real step stop; "e" is common enough that a random policy hits it, so both finish kinds show up.
STOP = [STEP_SEPARATOR, "e"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    tokenizer = build_tiny_tokenizer()
    root = tmp_path_factory.mktemp("backends")
    policy = save_causal_lm(root / "policy", tokenizer, seed=0)
    prm = save_token_classifier(
        root / "prm", tokenizer, seed=1, metadata=PRMMetadata(prm_style="token_classification", base_model="tiny")
    )
    return {"policy": policy, "prm": prm, "tokenizer": tokenizer}


def test_generate_continue_and_score(checkpoints):
    generator = load_generator("transformers", str(checkpoints["policy"]), device="cpu", batch_size=8, seed=0)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=24, seed=0)
    requests = [GenerationRequest(problem=p) for p in PROBLEMS]
    first = generator.generate(requests, n=4, params=params, stop=STOP)
    assert [len(c) for c in first] == [4, 4]
    completions = [c for per_request in first for c in per_request]
    assert {c.finish_reason for c in completions} <= {"stop", "length", "eos"}
    assert any(c.finish_reason == "stop" for c in completions)
    # (The exact token-count rule is checked against raw model.generate output in the unit tests; a random
    # policy's sampled tokens need not re-tokenize to the same count, so only bounds are checked here.)
    for completion in completions:
        assert 1 <= completion.num_tokens <= 24
        if completion.finish_reason == "stop":
            assert completion.text.endswith(tuple(STOP))
            # Cut right after the first stop: no stop string ends earlier in the kept text.
            assert not any(stop in completion.text[:-1] for stop in STOP)
        elif completion.finish_reason == "length":
            assert completion.num_tokens == 24

    # Continue the first completion of each problem from its text, as beam search does.
    prefixes = [join_steps(split_steps(per_request[0].text) or ["Start."]) + STEP_SEPARATOR for per_request in first]
    follow = generator.generate(
        [GenerationRequest(problem=p, prefix=prefix) for p, prefix in zip(PROBLEMS, prefixes, strict=True)],
        n=2,
        params=params,
        stop=STOP,
    )
    assert [len(c) for c in follow] == [2, 2]
    assert generator.generate_calls == 2

    step_lists = [split_steps(prefix + c.text) or [prefix.strip()] for prefix, per in zip(prefixes, follow) for c in per]
    problems = [p for p in PROBLEMS for _ in range(2)]
    for style, path in [("token_classification", checkpoints["prm"]), ("chat_plus_minus", checkpoints["policy"]), ("step_tag", checkpoints["policy"])]:
        scorer = load_scorer(path, prm_style=style, device="cpu", max_tokens_per_batch=256)
        scores = scorer.score(problems, step_lists)
        assert all(isinstance(s, PRMScore) for s in scores)
        assert [len(s.step_scores) for s in scores] == [len(steps) for steps in step_lists]
        assert all(0.0 <= value <= 1.0 for s in scores for value in s.step_scores)
        # PRM compute is the unpadded length of each pair's input, whatever the batch it was padded in.
        assert [s.num_tokens for s in scores] == [
            len(scorer.build_input(problem, steps).input_ids) for problem, steps in zip(problems, step_lists)
        ]
        assert scorer.forward_passes >= 1
