"""qwen_prm and skywork_prm on tiny random checkpoints in the published layouts: loaded without the checkpoints' code,
read at exactly the `<extra_0>` / newline step tokens, scores equal to the backbone plus the head applied by hand, and
a checkpoint missing its head, a tokenizer missing `<extra_0>` or the wrong style for the architecture refused."""

from __future__ import annotations

import shutil

import pytest
import torch

from inference.scoring import load_scorer
from inference.scoring.qwen_prm import QwenPRMScorer
from inference.scoring.skywork_prm import SkyworkPRMScorer
from tests.unit.generation.tiny_models import build_tiny_tokenizer
from tests.unit.scoring.public_checkpoints import save_qwen_prm, save_skywork_prm, tokenizer_with_extra_0

PROBLEM = "What is 6 + 7?"
STEPS = ["6 + 7 = 13.", "The answer is $\\boxed{13}$."]
PAIRS = [
    (PROBLEM, STEPS),
    ("What is 12 - 5?", ["12 - 5 = 7."]),
    ("Compute 2 * 3 * 4.", ["2 * 3 = 6.", "6 * 4 = 24.", "The answer is $\\boxed{24}$."]),
]


@pytest.fixture(scope="module")
def extra_0_tokenizer():
    return tokenizer_with_extra_0()


@pytest.fixture(scope="module")
def qwen_checkpoint(tmp_path_factory, extra_0_tokenizer):
    return save_qwen_prm(tmp_path_factory.mktemp("qwen_prm"), extra_0_tokenizer, seed=5)


@pytest.fixture(scope="module")
def skywork_checkpoint(tmp_path_factory, extra_0_tokenizer):
    return save_skywork_prm(tmp_path_factory.mktemp("skywork_prm"), extra_0_tokenizer, seed=6)


@pytest.fixture(scope="module")
def qwen_scorer(qwen_checkpoint):
    return load_scorer(qwen_checkpoint.directory, prm_style="qwen_prm", device="cpu", trust_remote_code=False)


@pytest.fixture(scope="module")
def skywork_scorer(skywork_checkpoint):
    return load_scorer(skywork_checkpoint.directory, prm_style="skywork_prm", device="cpu", trust_remote_code=False)


def _hidden(checkpoint, input_ids, positions):
    with torch.no_grad():
        return checkpoint.backbone(input_ids=torch.tensor([input_ids])).last_hidden_state[0, positions]


# --------------------------------------------------------------------------- qwen_prm


def test_qwen_input_is_the_model_card_conversation_read_at_each_extra_0(qwen_scorer, extra_0_tokenizer):
    assert isinstance(qwen_scorer, QwenPRMScorer)
    prm_input = qwen_scorer.build_input(PROBLEM, STEPS)
    # The model card's messages (its system turn, the problem, the steps joined and ended by <extra_0>) rendered by
    # this tokenizer's chat template, written out by hand.
    expected_text = (
        "<|bos|><|system|>\nPlease reason step by step, and put your final answer within \\boxed{}.<|end|>\n"
        "<|user|>\nWhat is 6 + 7?<|end|>\n<|assistant|>\n"
        "6 + 7 = 13.<extra_0>The answer is $\\boxed{13}$.<extra_0><|end|>\n"
    )
    assert extra_0_tokenizer.decode(list(prm_input.input_ids)) == expected_text
    assert list(prm_input.input_ids) == extra_0_tokenizer.encode(expected_text, add_special_tokens=False)
    assert prm_input.score_positions == (63, 74)  # counted by hand: 77 tokens, <extra_0> at 63 and 74
    extra_0 = extra_0_tokenizer.convert_tokens_to_ids("<extra_0>")
    assert [i for i, t in enumerate(prm_input.input_ids) if t == extra_0] == [63, 74]
    assert len(prm_input.input_ids) == 77


def test_qwen_scores_are_softmax_class_1_of_the_head_applied_by_hand(qwen_scorer, qwen_checkpoint):
    (result,) = qwen_scorer.score([PROBLEM], [STEPS])
    prm_input = qwen_scorer.build_input(PROBLEM, STEPS)
    hidden = _hidden(qwen_checkpoint, list(prm_input.input_ids), [63, 74])
    head = qwen_checkpoint.head
    inner = torch.relu(hidden @ head["score.0.weight"].T + head["score.0.bias"])
    logits = inner @ head["score.2.weight"].T + head["score.2.bias"]
    expected = torch.softmax(logits, dim=-1)[:, 1].tolist()
    assert result.step_scores == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert result.num_tokens == 77
    assert qwen_scorer.num_parameters == sum(p.numel() for p in qwen_checkpoint.backbone.parameters()) + sum(
        t.numel() for t in head.values())


def test_qwen_batched_scores_keep_order_and_match_scoring_alone(qwen_scorer):
    batched = qwen_scorer.score([p for p, _ in PAIRS], [s for _, s in PAIRS])
    assert [len(r.step_scores) for r in batched] == [2, 1, 3]
    for (problem, steps), result in zip(PAIRS, batched, strict=True):
        (alone,) = qwen_scorer.score([problem], [steps])
        assert result.step_scores == pytest.approx(alone.step_scores, rel=1e-4, abs=1e-6)


def test_qwen_step_containing_extra_0_is_an_error(qwen_scorer):
    with pytest.raises(ValueError, match=r"holds 3 <extra_0> tokens for 2 steps; the problem or a step contains"):
        qwen_scorer.score([PROBLEM], [["6 + 7<extra_0> = 13.", "13"]])


def test_qwen_checkpoint_missing_its_head_is_refused_by_name(tmp_path, extra_0_tokenizer):
    save_qwen_prm(tmp_path / "headless", extra_0_tokenizer, drop=("score.2.weight", "score.2.bias"))
    with pytest.raises(ValueError, match=r"headless: the safetensors weights hold no score.2.weight, score.2.bias, "
                                         r"the Qwen2.5-Math-PRM \(Qwen2ForProcessRewardModel\) head"):
        load_scorer(tmp_path / "headless", prm_style="qwen_prm", device="cpu")


def test_qwen_checkpoint_missing_a_backbone_weight_is_refused_by_name(tmp_path, extra_0_tokenizer):
    save_qwen_prm(tmp_path / "partial", extra_0_tokenizer, drop=("model.norm.weight",))
    with pytest.raises(ValueError, match=r"partial: the safetensors weights lack model.norm.weight, which a "
                                         r"Qwen2.5-Math-PRM"):
        load_scorer(tmp_path / "partial", prm_style="qwen_prm", device="cpu")


def test_qwen_tokenizer_without_extra_0_is_refused(tmp_path, qwen_checkpoint):
    directory = tmp_path / "plain_tokenizer"
    shutil.copytree(qwen_checkpoint.directory, directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (directory / name).unlink(missing_ok=True)
    build_tiny_tokenizer().save_pretrained(str(directory))
    with pytest.raises(ValueError, match=r"plain_tokenizer: the tokenizer has no <extra_0> token, which prm_style "
                                         r"'qwen_prm' writes after each step"):
        load_scorer(directory, prm_style="qwen_prm", device="cpu")


# --------------------------------------------------------------------------- skywork_prm


def test_skywork_input_is_bos_problem_newline_then_each_step_and_its_newline(skywork_scorer, extra_0_tokenizer):
    assert isinstance(skywork_scorer, SkyworkPRMScorer)
    prm_input = skywork_scorer.build_input(PROBLEM, STEPS)
    assert extra_0_tokenizer.decode(list(prm_input.input_ids)) == (
        "<|bos|>What is 6 + 7?\n6 + 7 = 13.\nThe answer is $\\boxed{13}$.\n")
    newline = extra_0_tokenizer.encode("\n", add_special_tokens=False)[-1]
    encode = extra_0_tokenizer.encode
    by_hand = ([extra_0_tokenizer.bos_token_id] + encode("What is 6 + 7?\n", add_special_tokens=False)
               + encode(STEPS[0], add_special_tokens=False) + [newline]
               + encode(STEPS[1], add_special_tokens=False) + [newline])
    assert list(prm_input.input_ids) == by_hand
    assert prm_input.score_positions == (19, 30)  # counted by hand: 31 tokens, the step newlines at 19 and 30
    assert [prm_input.input_ids[i] for i in (19, 30)] == [newline, newline]
    assert len(prm_input.input_ids) == 31


def test_skywork_scores_are_sigmoid_of_the_value_head_applied_by_hand(skywork_scorer, skywork_checkpoint):
    (result,) = skywork_scorer.score([PROBLEM], [STEPS])
    prm_input = skywork_scorer.build_input(PROBLEM, STEPS)
    hidden = _hidden(skywork_checkpoint, list(prm_input.input_ids), [19, 30])
    head = skywork_checkpoint.head
    value = hidden @ head["v_head.summary.weight"][0] + head["v_head.summary.bias"][0]
    assert result.step_scores == pytest.approx(torch.sigmoid(value).tolist(), rel=1e-4, abs=1e-6)
    assert result.num_tokens == 31


def test_skywork_batched_scores_keep_order_and_match_scoring_alone(skywork_scorer):
    batched = skywork_scorer.score([p for p, _ in PAIRS], [s for _, s in PAIRS])
    assert [len(r.step_scores) for r in batched] == [2, 1, 3]
    for (problem, steps), result in zip(PAIRS, batched, strict=True):
        (alone,) = skywork_scorer.score([problem], [steps])
        assert result.step_scores == pytest.approx(alone.step_scores, rel=1e-4, abs=1e-6)


def test_skywork_checkpoint_missing_its_value_head_is_refused_by_name(tmp_path, extra_0_tokenizer):
    save_skywork_prm(tmp_path / "no_v_head", extra_0_tokenizer, drop=("v_head.summary.weight",))
    with pytest.raises(ValueError, match=r"no_v_head: the safetensors weights hold no v_head.summary.weight, the "
                                         r"Skywork-o1-Open-PRM \(Qwen2ForPrmModel\) head, so it would be random"):
        load_scorer(tmp_path / "no_v_head", prm_style="skywork_prm", device="cpu")


# --------------------------------------------------------------------------- both: the checkpoints' code never runs


@pytest.mark.parametrize(("style", "num_tokens"), [("qwen_prm", 77), ("skywork_prm", 31)])
def test_loading_never_imports_the_checkpoint_code(style, num_tokens, qwen_checkpoint, skywork_checkpoint):
    # Each checkpoint ships modeling/configuration files that raise when imported (as the published code breaks on
    # current transformers): loading and scoring work, and no module of theirs was imported.
    import sys

    checkpoint = qwen_checkpoint if style == "qwen_prm" else skywork_checkpoint
    scorer = load_scorer(checkpoint.directory, prm_style=style, device="cpu")
    assert scorer.score([PROBLEM], [STEPS])[0].num_tokens == num_tokens
    assert [name for name in sys.modules if "qwen2_rm" in name] == []


# --------------------------------------------------------------------------- the wrong style or options


@pytest.mark.parametrize(("style", "not_what"), [
    ("skywork_prm", "Skywork-o1-Open-PRM"), ("chat_plus_minus", r"a \+/- chat PRM"),
    ("token_classification", "a token-classification PRM"),
])
def test_qwen_checkpoint_given_another_style_is_refused_naming_qwen_prm(qwen_checkpoint, style, not_what):
    with pytest.raises(ValueError, match=rf"is a Qwen2ForProcessRewardModel checkpoint, not {not_what} .*"
                                         r"use prm_style 'qwen_prm' for it"):
        load_scorer(qwen_checkpoint.directory, prm_style=style, device="cpu")


def test_skywork_checkpoint_given_another_style_is_refused_naming_skywork_prm(skywork_checkpoint):
    with pytest.raises(ValueError, match=r"is a Qwen2ForPrmModel checkpoint, not Qwen2.5-Math-PRM .*"
                                         r"prm_style 'qwen_prm' reads \*Qwen2ForProcessRewardModel checkpoints.*"
                                         r"use prm_style 'skywork_prm' for it"):
        load_scorer(skywork_checkpoint.directory, prm_style="qwen_prm", device="cpu")


def test_causal_lm_given_as_qwen_prm_is_refused(causal_lm_dir):
    with pytest.raises(ValueError, match=r"is a LlamaForCausalLM checkpoint, not Qwen2.5-Math-PRM .*"
                                         r"use prm_style 'chat_plus_minus' or 'step_tag' or 'likelihood_head' or 'implicit' for it"):
        load_scorer(causal_lm_dir, prm_style="qwen_prm", device="cpu")


def test_options_of_other_styles_are_refused(qwen_checkpoint, skywork_checkpoint):
    with pytest.raises(ValueError, match=r"good_token does not apply to prm_style 'qwen_prm' \(it takes no options\)"):
        load_scorer(qwen_checkpoint.directory, prm_style="qwen_prm", device="cpu", good_token="+")
    with pytest.raises(ValueError, match=r"step_tag, prefix_cache_bytes do not apply to prm_style 'skywork_prm'"):
        load_scorer(skywork_checkpoint.directory, prm_style="skywork_prm", device="cpu", step_tag="\n",
                    prefix_cache_bytes=0)
