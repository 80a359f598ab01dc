"""+/- chat and step-tag scorers on a tiny random causal LM, checked against the reference one-step-at-a-time reading."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from data_prep.judgement import plus_minus_conversation, step_tag_text, token_index_at
from inference.scoring import load_scorer
from inference.scoring.chat_plus_minus import ChatPlusMinusScorer
from inference.scoring.step_tag import StepTagScorer

PROBLEM = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.", "He buys 4 more: 3 + 4 = 7.", "Therefore, the final answer is: $\\boxed{7}$."]
PAIRS = [(PROBLEM, STEPS), ("What is 12 - 5?", ["12 - 5 = 7."]), ("Compute 2 * 3.", ["2 * 3 = 6.", "So 6."])]


def plus_probability(model, ids: list[int], good: int, bad: int) -> float:
    """P(good) / (P(good) + P(bad)) for the token after `ids`."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1, [good, bad]]
    return torch.softmax(logits.float(), dim=-1)[0].item()


@pytest.fixture(scope="module")
def chat_scorer(causal_lm_dir):
    return load_scorer(causal_lm_dir, prm_style="chat_plus_minus", device="cpu")


@pytest.fixture(scope="module")
def tag_scorer(causal_lm_dir):
    return load_scorer(causal_lm_dir, prm_style="step_tag", device="cpu")


def test_conversation_layout():
    assert plus_minus_conversation("P?", ["a", "b"], "+") == [
        {"role": "user", "content": "P? a"},
        {"role": "assistant", "content": "+"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "+"},
    ]


def test_chat_scores_match_one_turn_at_a_time(chat_scorer):
    assert isinstance(chat_scorer, ChatPlusMinusScorer)
    (result,) = chat_scorer.score([PROBLEM], [STEPS])
    tokenizer = chat_scorer.tokenizer
    conversation = plus_minus_conversation(PROBLEM, STEPS, "+")
    expected = []
    for index in range(len(STEPS)):
        # The RLHFlow reading: the conversation up to user turn i, assistant turn opened, next-token distribution.
        opened = tokenizer.apply_chat_template(conversation[: 2 * index + 1], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(opened, add_special_tokens=False)["input_ids"]
        expected.append(plus_probability(chat_scorer.model, ids, chat_scorer.good_id, chat_scorer.bad_id))
    assert result.step_scores == pytest.approx(expected, abs=1e-5)
    full = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert result.num_tokens == len(tokenizer(full, add_special_tokens=False)["input_ids"])
    prm_input = chat_scorer.build_input(PROBLEM, STEPS)
    assert [prm_input.input_ids[p + 1] for p in prm_input.score_positions] == [chat_scorer.good_id] * 3


def test_step_tag_scores_are_read_at_each_tag(tag_scorer):
    assert isinstance(tag_scorer, StepTagScorer)
    assert tag_scorer.step_tag == "ки"
    text, _ = step_tag_text(PROBLEM, STEPS, "ки")
    assert text == PROBLEM + " " + "\n".join(f"{step} ки" for step in STEPS)
    prm_input = tag_scorer.build_input(PROBLEM, STEPS)
    tokenizer = tag_scorer.tokenizer
    expected = []
    for index, position in enumerate(prm_input.score_positions):
        prefix_ids = list(prm_input.input_ids[: position + 1])
        assert tokenizer.decode(prefix_ids, skip_special_tokens=True).endswith(f"{STEPS[index]} ки")
        expected.append(plus_probability(tag_scorer.model, prefix_ids, tag_scorer.good_id, tag_scorer.bad_id))
    (result,) = tag_scorer.score([PROBLEM], [STEPS])
    assert result.step_scores == pytest.approx(expected, abs=1e-5)
    assert result.num_tokens == len(tokenizer(text)["input_ids"])


@pytest.mark.parametrize("style", ["chat_plus_minus", "step_tag"])
def test_batched_causal_scores_keep_order_and_split_by_budget(causal_lm_dir, style):
    scorer = load_scorer(causal_lm_dir, prm_style=style, device="cpu", max_tokens_per_batch=150)
    results = scorer.score([p for p, _ in PAIRS], [s for _, s in PAIRS])
    assert scorer.forward_passes >= 2
    assert [len(r.step_scores) for r in results] == [3, 1, 2]
    for (problem, steps), result in zip(PAIRS, results, strict=True):
        (alone,) = scorer.score([problem], [steps])
        assert result.step_scores == pytest.approx(alone.step_scores, abs=1e-5)
        assert all(0.0 <= score <= 1.0 for score in result.step_scores)


def test_custom_tokens_and_tag(causal_lm_dir):
    scorer = load_scorer(causal_lm_dir, prm_style="step_tag", device="cpu", step_tag="<tag>", good_token="Y", bad_token="N")
    assert (scorer.good_id, scorer.bad_id) == (
        scorer.tokenizer.encode("Y", add_special_tokens=False)[-1],
        scorer.tokenizer.encode("N", add_special_tokens=False)[-1],
    )
    prm_input = scorer.build_input("P?", ["a", "b"])
    assert [scorer.tokenizer.decode(prm_input.input_ids[: p + 1]).endswith("<tag>") for p in prm_input.score_positions] == [True, True]


def test_token_index_at_first_and_last_cover():
    # Character 5 is split over tokens 2 and 3 (two bytes of one character); token 4 is a special token.
    offsets = [(0, 3), (3, 5), (5, 6), (5, 6), (0, 0), (6, 8)]
    assert token_index_at(offsets, 5) == 2
    assert token_index_at(offsets, 5, last=True) == 3
    assert token_index_at(offsets, 7, last=True) == 5
    assert token_index_at(offsets, 9) is None


def test_chat_template_that_rewrites_the_answer_is_an_error(causal_lm_dir, tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}Verdict: {% endif %}{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}"
    )
    model = AutoModelForCausalLM.from_pretrained(causal_lm_dir)
    scorer = ChatPlusMinusScorer(model, tokenizer, path=str(causal_lm_dir), device=torch.device("cpu"), max_tokens_per_batch=512)
    with pytest.raises(ValueError, match="does not render the answer to turn 1 right after the generation prompt"):
        scorer.score([PROBLEM], [STEPS])
