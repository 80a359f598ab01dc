"""The likelihood verifier on a tiny random causal LM, checked against token-by-token probabilities of the solution."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from data_prep.steps import STEP_SEPARATOR, SYSTEM_PROMPT
from inference.prompts import render_prompt
from inference.scoring import load_scorer
from inference.types import GenerationRequest

PROBLEM = "Start with 14.\n(1) Subtract 9.\n(2) Add 6.\nWhat is the final number?"
STEPS = ["(1) Subtract 9: 14 - 9 = 5", "(2) Add 6: 5 + 6 = 11", "Therefore, the final answer is: $\\boxed{11}$."]
PAIRS = [(PROBLEM, STEPS), (PROBLEM, ["(1) Subtract 9: 14 - 9 = 6"]), ("What is 2 * 3?", ["2 * 3 = 6", "So 6."])]


@pytest.fixture(scope="module")
def likelihood_scorer(causal_lm_dir):
    return load_scorer(causal_lm_dir, prm_style="lm_likelihood", device="cpu")


def reference_step_scores(model, tokenizer, problem: str, steps: list[str]) -> list[float]:
    """Each step's smallest P(token | all text before it), one unpadded forward per solution."""
    prompt_ids = tokenizer.encode(render_prompt(tokenizer, GenerationRequest(problem), SYSTEM_PROMPT),
                                  add_special_tokens=False)
    solution = STEP_SEPARATOR.join(steps)
    encoded = tokenizer(solution, add_special_tokens=False, return_offsets_mapping=True)
    ids = prompt_ids + encoded["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    token_probs = [probs[position - 1, ids[position]].item() for position in range(1, len(ids))]
    scores, start = [], 0
    for step in steps:
        end = start + len(step)
        inside = [
            token_probs[len(prompt_ids) + index - 1]
            for index, (first, last) in enumerate(encoded["offset_mapping"])
            if first < end and last > start
        ]
        scores.append(min(inside))
        start = end + len(STEP_SEPARATOR)
    return scores


def test_step_score_is_the_least_likely_token_of_the_step(likelihood_scorer, causal_lm_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(causal_lm_dir).eval()
    # Scored together: padded batches must give each solution the scores of its own unpadded forward.
    scores = likelihood_scorer.score([problem for problem, _ in PAIRS], [steps for _, steps in PAIRS])
    for (problem, steps), score in zip(PAIRS, scores, strict=True):
        expected = reference_step_scores(model, tiny_tokenizer, problem, steps)
        assert score.step_scores == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert all(0 < value <= 1 for value in score.step_scores)


def test_a_step_the_model_is_sure_of_outscores_one_with_a_surprising_token(likelihood_scorer, monkeypatch):
    import inference.scoring.likelihood as likelihood

    class Confident(torch.nn.Module):
        """Puts all its mass on token 5 everywhere: steps made of token 5 are certain, others are not."""

        def get_decoder(self):
            return lambda input_ids, attention_mask=None: type(
                "Out", (), {"last_hidden_state": torch.zeros((*input_ids.shape, 1))})()

        def get_output_embeddings(self):
            def head(hidden):
                logits = torch.full((*hidden.shape[:-1], 64), -30.0)
                logits[..., 5] = 30.0
                return logits
            return head

    scorer = object.__new__(likelihood.LikelihoodScorer)
    scorer.model = Confident()
    scorer._prefix_caching = False
    prm_input = likelihood.LikelihoodInput(input_ids=(1, 5, 5, 7, 5), score_positions=(2, 4), step_spans=((1, 2), (3, 4)))
    inputs = {"input_ids": torch.tensor([prm_input.input_ids])}
    sure, surprised = scorer.step_probabilities(inputs, [prm_input])[0]
    assert sure == pytest.approx(1.0)
    assert surprised < 1e-20  # token 7 is the step's least likely token: its min, not its mean


def test_likelihood_style_refuses_a_trained_prm_and_foreign_options(token_classifier_dir, causal_lm_dir):
    with pytest.raises(ValueError, match="is a trained PRM .* reads a plain causal LM"):
        load_scorer(token_classifier_dir, prm_style="lm_likelihood", device="cpu")
    with pytest.raises(ValueError, match=r"step_tag does not apply to prm_style 'lm_likelihood' "
                       r"\(it takes prefix_cache_bytes\); remove it"):
        load_scorer(causal_lm_dir, prm_style="lm_likelihood", device="cpu", step_tag="ки")
    with pytest.raises(ValueError, match="is not one of token_classification, chat_plus_minus, step_tag, "
                                         "likelihood_head, implicit, lm_likelihood"):
        load_scorer(causal_lm_dir, prm_style="likelihood", device="cpu")


def assert_beam_scores_agree(cached, whole) -> None:
    """Score a growing beam and a sibling one step off it, depth by depth, both ways: the same scores."""
    for depth in range(1, len(STEPS) + 1):
        partial = [STEPS[:depth], STEPS[:depth - 1] + ["(2) Add 6: 5 + 6 = 12"]]
        got = cached.score([PROBLEM, PROBLEM], partial)
        expected = whole.score([PROBLEM, PROBLEM], partial)
        for a, b in zip(got, expected, strict=True):
            assert a.step_scores == pytest.approx(b.step_scores, rel=1e-4, abs=1e-6)


def test_incremental_scores_equal_whole_ones_as_a_beam_grows(causal_lm_dir):
    # Beam search scores each candidate as its parent plus one step: with the cache only the new step runs.
    cached = load_scorer(causal_lm_dir, prm_style="lm_likelihood", device="cpu")
    whole = load_scorer(causal_lm_dir, prm_style="lm_likelihood", device="cpu", prefix_cache_bytes=0)
    assert_beam_scores_agree(cached, whole)
    assert cached.prefix_cache.hits >= 2 and whole.prefix_cache.hits == 0


def test_an_implicit_prm_scores_incrementally_as_a_whole_forward(causal_lm_dir, tiny_tokenizer, tmp_path):
    # The trained LM and its reference each run only the new step, each from its own cached keys and values.
    from data_prep.prm_metadata import PRMMetadata
    from tests.unit.generation.tiny_models import save_causal_lm

    trained = save_causal_lm(tmp_path / "implicit", tiny_tokenizer, seed=7)
    PRMMetadata(prm_style="implicit", reference_model=str(causal_lm_dir), beta=0.5,
                system_prompt=SYSTEM_PROMPT).save(trained)
    cached = load_scorer(trained, device="cpu")
    whole = load_scorer(trained, device="cpu", prefix_cache_bytes=0)
    assert_beam_scores_agree(cached, whole)
    assert (cached._prefix_caching, whole._prefix_caching) == (True, False)
    assert cached.prefix_cache.hits >= 2
    # Each cached sequence holds both models' layers.
    entry = next(iter(cached.prefix_cache._entries.values()))
    layers = cached.model.config.num_hidden_layers + cached.reference.config.num_hidden_layers
    assert len(entry.keys) == len(entry.values) == layers
