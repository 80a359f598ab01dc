"""The PRM layouts on the real vocabularies the public PRMs use (tests/real_vocab.py): token ids, judgement
positions and prompts checked against each PRM's published reading, with training's layout and the scorer's agreeing.

Every scorer here runs on a tiny random model over the real vocabulary, so a score compared with the published
reading (recomputed from the model's logits) checks both the tokens and the positions read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config

from data_prep.judgement import PROMPT_DATE, render_policy_prompt
from data_prep.steps import STEP_SEPARATOR
from inference.prompts import prompt_token_ids
from inference.scoring.chat_plus_minus import ChatPlusMinusScorer
from inference.scoring.likelihood import LikelihoodScorer
from inference.scoring.qwen_prm import QWEN_PRM_SYSTEM_PROMPT, STEP_TOKEN, Qwen2ProcessRewardModel, QwenPRMScorer
from inference.scoring.step_tag import StepTagScorer
from inference.types import GenerationRequest
from tests.real_vocab import chat_template, real_tokenizer
from training.generative import judgement_token_ids, judgement_tokens
from training.likelihood_head import NO_STEP, layout_row

REPO = Path(__file__).resolve().parents[3]
PROBLEM = "What is $2^2 + 3$?"
STEPS = [
    "We have $2^2 = 4$.",  # ends in "." : Llama-3 merges ".\n\n" into one token
    "So $4 + 3 = 7$.\n",  # a trailing newline, trimmed by the Llama-3 templates' user turns
    "Therefore, the final answer is: $\\boxed{7}$. I hope it is correct.",
]
SCORER_ARGS = {"device": "cpu", "max_tokens_per_batch": 4096}


def reference_system_prompt() -> str:
    """search-and-learn's system prompt, as the MATH-500 reference config gives it."""
    config = yaml.safe_load((REPO / "configs/infer/math500_llama1b_vllm.yaml").read_text(encoding="utf-8"))
    return config["policy"]["system_prompt"]


def tiny_lm(cls, config_cls, vocab_size: int, seed: int):
    torch.manual_seed(seed)
    config = config_cls(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
    return cls(config).eval()


@pytest.fixture(scope="module")
def llama31():
    """RLHFlow's PRM tokenizer: the Llama-3.1 vocabulary with Meta's Llama-3.1 chat template."""
    return real_tokenizer("llama3_1", template="llama3_1")


@pytest.fixture(scope="module")
def llama32():
    """The Llama-3.2 policies' tokenizer: the same vocabulary with Meta's Llama-3.2 chat template."""
    return real_tokenizer("llama3_1", template="llama3_2")


@pytest.fixture(scope="module")
def llama_lm(llama31):
    return tiny_lm(LlamaForCausalLM, LlamaConfig, len(llama31), seed=0)


# --------------------------------------------------------------------------------------------------------------------
# RLHFlow's +/- chat PRM (chat_plus_minus) on Llama-3.1
# --------------------------------------------------------------------------------------------------------------------


def test_plus_minus_ids_are_rlhflow_ids_in_both_arms(llama31, llama_lm):
    # RLHFlow (and search-and-learn) take tokenizer.encode("+")[-1] and tokenizer.encode("-")[-1].
    plus, minus = llama31.encode("+")[-1], llama31.encode("-")[-1]
    assert (plus, minus) == (10, 12)
    scorer = ChatPlusMinusScorer(llama_lm, llama31, path="RLHFlow/Llama3.1-8B-PRM-Deepseek-Data", **SCORER_ARGS)
    assert (scorer.good_id, scorer.bad_id) == (plus, minus)
    assert judgement_token_ids(llama31, "chat_plus_minus", good_token="+", bad_token="-", step_tag=None,
                               tokenizer_source="llama3_1") == (plus, minus)


def test_plus_minus_reads_where_rlhflow_reads(llama31, llama_lm):
    scorer = ChatPlusMinusScorer(llama_lm, llama31, path="rlhflow", **SCORER_ARGS)
    built = scorer.build_input(PROBLEM, STEPS)
    conversation = []
    for index, step in enumerate(STEPS):
        conversation += [{"role": "user", "content": f"{PROBLEM} {step}" if index == 0 else step},
                         {"role": "assistant", "content": "+"}]
    full = list(llama31.apply_chat_template(conversation, tokenize=True)["input_ids"])
    assert list(built.input_ids) == full
    assert full.count(llama31.bos_token_id) == 1
    # RLHFlow's per-step reading: the conversation up to step k's "+" answer, logits at position -3 (the "\n\n"
    # after the assistant header, which predicts the "+" before "<|eot_id|>").
    expected_positions = []
    for index in range(len(STEPS)):
        upto = list(llama31.apply_chat_template(conversation[: 2 * index + 2], tokenize=True)["input_ids"])
        assert full[: len(upto)] == upto
        assert upto[-2:] == [10, llama31.convert_tokens_to_ids("<|eot_id|>")]
        expected_positions.append(len(upto) - 3)
    assert list(built.score_positions) == expected_positions
    # search-and-learn's batched reading: the positions before each "ки" of the same conversation answered "ки".
    tag_id = llama31("ки").input_ids[1]
    tagged = [dict(turn, content="ки") if turn["role"] == "assistant" else turn for turn in conversation]
    tagged_ids = list(llama31.apply_chat_template(tagged, tokenize=True)["input_ids"])
    assert [i for i in range(len(tagged_ids) - 1) if tagged_ids[i + 1] == tag_id] == expected_positions
    # Training labels the same tokens at the same positions.
    example = judgement_tokens(llama31, "chat_plus_minus", PROBLEM, STEPS, [1.0, 0.0, 1.0], good_token="+",
                               good_id=10, step_tag=None)
    assert example.input_ids == full and example.step_positions == expected_positions
    assert [example.labels[p] for p in expected_positions] == [1.0, 0.0, 1.0]
    # The scores are RLHFlow's: softmax over (+, -) of the logits there.
    with torch.no_grad():
        logits = llama_lm(torch.tensor([full])).logits[0]
    expected = torch.softmax(logits[expected_positions][:, [10, 12]], dim=-1)[:, 0]
    got = scorer.score([PROBLEM], [STEPS])[0].step_scores
    assert got == pytest.approx(expected.tolist(), abs=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# Math-Shepherd's step-tag PRM (step_tag) on Mistral-7B v0.1
# --------------------------------------------------------------------------------------------------------------------


def test_step_tag_ids_and_positions_are_math_shepherds():
    tokenizer = real_tokenizer("mistral_v1")
    # The model card: candidate_tokens = tokenizer.encode("+ -")[1:], step_tag_id = tokenizer.encode("ки")[-1].
    assert tokenizer.encode("+ -")[1:] == [648, 387]
    assert tokenizer.encode("ки")[-1] == 12902
    model = tiny_lm(MistralForCausalLM, MistralConfig, len(tokenizer), seed=1)
    scorer = StepTagScorer(model, tokenizer, path="peiyi9979/math-shepherd-mistral-7b-prm", **SCORER_ARGS)
    assert (scorer.good_id, scorer.bad_id) == (648, 387)
    built = scorer.build_input(PROBLEM, STEPS)
    # The card's input: f"{question} {output}", output = the steps, each followed by " ки", joined by "\n".
    card_ids = tokenizer(f"{PROBLEM} " + "\n".join(f"{step} ки" for step in STEPS))["input_ids"]
    assert list(built.input_ids) == card_ids and card_ids.count(tokenizer.bos_token_id) == 1
    assert list(built.score_positions) == [i for i, token in enumerate(card_ids) if token == 12902]
    assert len(built.score_positions) == len(STEPS)
    example = judgement_tokens(tokenizer, "step_tag", PROBLEM, STEPS, [1.0, 1.0, 0.0], good_token="+",
                               good_id=648, step_tag="ки")
    assert example.input_ids == card_ids and example.step_positions == list(built.score_positions)
    assert judgement_token_ids(tokenizer, "step_tag", good_token="+", bad_token="-", step_tag="ки",
                               tokenizer_source="mistral_v1") == (648, 387)
    with torch.no_grad():
        logits = model(torch.tensor([card_ids])).logits[0]
    expected = torch.softmax(logits[list(built.score_positions)][:, [648, 387]], dim=-1)[:, 0]
    assert scorer.score([PROBLEM], [STEPS])[0].step_scores == pytest.approx(expected.tolist(), abs=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# The Llama-3.2 policy prompt and the likelihood styles' layout
# --------------------------------------------------------------------------------------------------------------------


def test_policy_prompt_equals_search_and_learns_token_for_token(llama32):
    system_prompt = reference_system_prompt()
    ttc_ids = prompt_token_ids(llama32, [GenerationRequest(problem=PROBLEM)], system_prompt)[0]
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": PROBLEM}]
    # search-and-learn renders its custom template (no BOS in it) and vLLM's tokenizer adds the BOS.
    text = llama32.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                       chat_template=chat_template("search_and_learn"), date_string=PROMPT_DATE)
    assert ttc_ids == llama32(text)["input_ids"]
    assert ttc_ids.count(llama32.bos_token_id) == 1 and ttc_ids[0] == llama32.bos_token_id
    assert f"Today Date: {PROMPT_DATE}\n" in llama32.decode(ttc_ids)
    # Unpinned, the template stamps the day it runs: only the date line may differ from the pinned prompt.
    today = llama32.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    pinned = render_policy_prompt(llama32, PROBLEM, system_prompt)
    differing = [(a, b) for a, b in zip(today.splitlines(), pinned.splitlines()) if a != b]
    assert all(b == f"Today Date: {PROMPT_DATE}" for _, b in differing) and len(differing) <= 1


def test_likelihood_layout_spans_cover_each_step_in_both_arms(llama32):
    system_prompt = reference_system_prompt()
    model = tiny_lm(LlamaForCausalLM, LlamaConfig, len(llama32), seed=2)
    scorer = LikelihoodScorer(model, llama32, system_prompt=system_prompt, path="policy-large", **SCORER_ARGS)
    built = scorer.build_input(PROBLEM, STEPS)
    # The prompt the verifier reads is the one the policy was given, token for token.
    prompt_ids = prompt_token_ids(llama32, [GenerationRequest(problem=PROBLEM)], system_prompt)[0]
    solution = STEP_SEPARATOR.join(STEPS)
    solution_ids = llama32(solution, add_special_tokens=False, return_offsets_mapping=True)
    assert list(built.input_ids) == prompt_ids + solution_ids["input_ids"]
    # Each span is the tokens holding the step's characters; a token that also holds the separator (Llama-3's
    # ".\n\n") belongs to the step whose text it ends.
    offsets = [(0, 0)] * len(prompt_ids) + solution_ids["offset_mapping"]
    start = 0
    for (first, last), step in zip(built.step_spans, STEPS):
        end = start + len(step)
        covered = range(first, last + 1)
        assert offsets[first][0] <= start < offsets[first][1] and offsets[last][0] < end <= offsets[last][1]
        assert all(offsets[i][1] <= start or offsets[i][0] >= end for i in range(len(offsets)) if i not in covered)
        start = end + len(STEP_SEPARATOR)
    merged = llama32.convert_ids_to_tokens(built.input_ids[built.step_spans[0][1]])
    assert merged == ".ĊĊ"  # the real vocabulary does merge the step's end with the separator
    assert list(built.score_positions) == [last for _, last in built.step_spans]
    # Training (likelihood_head / implicit) marks exactly these tokens as each step's.
    row = layout_row(llama32, PROBLEM, STEPS, [1.0, 0.0, 1.0], system_prompt=system_prompt, max_length=None)
    assert row.input_ids == list(built.input_ids)
    for index, (first, last) in enumerate(built.step_spans):
        assert [i for i, step in enumerate(row.step_index) if step == index] == list(range(first, last + 1))
    assert row.step_index[: len(prompt_ids)] == [NO_STEP] * len(prompt_ids)


# --------------------------------------------------------------------------------------------------------------------
# Qwen2.5-Math-PRM (qwen_prm) on Qwen's vocabulary
# --------------------------------------------------------------------------------------------------------------------

def test_qwen_prm_reads_every_extra_0_as_the_model_card():
    tokenizer = real_tokenizer("qwen", template="chatml", special_tokens=(STEP_TOKEN,))
    torch.manual_seed(3)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
    model = Qwen2ProcessRewardModel(config).eval()
    scorer = QwenPRMScorer(model, tokenizer, path="Qwen/Qwen2.5-Math-PRM-7B", **SCORER_ARGS)
    built = scorer.build_input(PROBLEM, STEPS)
    # The model card: the steps joined and ended by <extra_0> as the assistant turn, read where input_ids ==
    # the <extra_0> id, P(class 1) of the head there.
    messages = [{"role": "system", "content": QWEN_PRM_SYSTEM_PROMPT}, {"role": "user", "content": PROBLEM},
                {"role": "assistant", "content": STEP_TOKEN.join(STEPS) + STEP_TOKEN}]
    card_ids = tokenizer.encode(tokenizer.apply_chat_template(messages, tokenize=False))
    step_id = tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    assert list(built.input_ids) == card_ids
    assert list(built.score_positions) == [i for i, token in enumerate(card_ids) if token == step_id]
    # On the real BPE no step's last character merges into the step token: each step's tokens decode to it.
    assistant = max(i for i, token in enumerate(card_ids[: built.score_positions[0]])
                    if token == tokenizer.convert_tokens_to_ids("<|im_start|>"))
    bounds = [assistant + 1] + [position + 1 for position in built.score_positions[:-1]]
    texts = [tokenizer.decode(card_ids[begin:end]) for begin, end in zip(bounds, built.score_positions)]
    assert texts == ["assistant\n" + STEPS[0]] + STEPS[1:]
    assert card_ids[built.score_positions[-1] + 1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        logits = model(torch.tensor([card_ids]))[0]
    expected = torch.softmax(logits[list(built.score_positions)], dim=-1)[:, 1]
    assert scorer.score([PROBLEM], [STEPS])[0].step_scores == pytest.approx(expected.tolist(), abs=1e-5)
