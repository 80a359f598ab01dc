"""load_scorer: style from metadata or prm_style, LoRA adapters, and a clear error for each wrong kind of checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from data_prep.prm_metadata import PRMMetadata
from inference.scoring import load_scorer
from inference.scoring.token_classification import TokenClassificationScorer, build_prm_input_ids

PROBLEM = "What is 6 + 7?"
STEPS = ["6 + 7 = 13.", "Therefore, the final answer is: $\\boxed{13}$."]


def test_style_comes_from_metadata(token_classifier_dir):
    scorer = load_scorer(token_classifier_dir, device="cpu")
    assert isinstance(scorer, TokenClassificationScorer)
    assert scorer.name == token_classifier_dir.name
    assert scorer.num_parameters == sum(p.numel() for p in scorer.model.parameters())


def test_causal_lm_given_as_token_classification_is_an_error(causal_lm_dir):
    with pytest.raises(ValueError, match=r"is a LlamaForCausalLM checkpoint, not a token-classification PRM .*"
                       r"use prm_style 'chat_plus_minus' or 'step_tag' or 'likelihood_head' or 'implicit' for it"):
        load_scorer(causal_lm_dir, prm_style="token_classification", device="cpu")


def test_token_classifier_given_as_chat_plus_minus_is_an_error(token_classifier_dir, tmp_path):
    with pytest.raises(ValueError, match=r"prm_style='chat_plus_minus' contradicts prm_style='token_classification'"):
        load_scorer(token_classifier_dir, prm_style="chat_plus_minus", device="cpu")
    no_metadata = tmp_path / "tc_without_metadata"
    shutil.copytree(token_classifier_dir, no_metadata)
    (no_metadata / "ttc_prm.json").unlink()
    with pytest.raises(ValueError, match=r"is a LlamaForTokenClassification checkpoint, not a \+/- chat PRM .*"
                       r"use prm_style 'token_classification' for it"):
        load_scorer(no_metadata, prm_style="chat_plus_minus", device="cpu")


def test_missing_metadata_and_no_style_is_an_error(causal_lm_dir):
    with pytest.raises(ValueError, match=r"has no ttc_prm.json and no prm_style was given"):
        load_scorer(causal_lm_dir, device="cpu")


def test_directory_without_config_is_an_error(tmp_path):
    PRMMetadata(prm_style="token_classification").save(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config.json not found: .* is not a transformers checkpoint"):
        load_scorer(tmp_path, device="cpu")


def test_path_that_is_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_scorer(tmp_path / "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data", prm_style="chat_plus_minus")


def test_unknown_style_and_misplaced_options_are_errors(causal_lm_dir, token_classifier_dir):
    with pytest.raises(ValueError, match=r"prm_style='orm' is not one of token_classification, chat_plus_minus, step_tag"):
        load_scorer(causal_lm_dir, prm_style="orm")
    with pytest.raises(ValueError, match=r"step_tag does not apply to prm_style 'token_classification' "
                       r"\(it takes prefix_cache_bytes\); remove it"):
        load_scorer(token_classifier_dir, step_tag="ки")
    with pytest.raises(ValueError, match=r"step_tag does not apply to prm_style 'chat_plus_minus' "
                       r"\(it takes good_token, bad_token, prefix_cache_bytes\)"):
        load_scorer(causal_lm_dir, prm_style="chat_plus_minus", step_tag="ки")


def test_prefix_cache_size_reaches_the_scorers_that_cache(causal_lm_dir, token_classifier_dir):
    assert load_scorer(token_classifier_dir, device="cpu", prefix_cache_bytes=12345).prefix_cache.max_bytes == 12345
    off = load_scorer(token_classifier_dir, device="cpu", prefix_cache_bytes=0)
    assert off.score([PROBLEM], [STEPS])[0].step_scores  # still scores, whole
    assert len(off.prefix_cache) == 0
    for style in ("chat_plus_minus", "step_tag"):
        assert load_scorer(causal_lm_dir, prm_style=style, device="cpu", prefix_cache_bytes=0)._prefix_caching is False
    with pytest.raises(ValueError, match=r"prefix_cache_bytes does not apply to prm_style 'qwen_prm'"):
        load_scorer(causal_lm_dir, prm_style="qwen_prm", prefix_cache_bytes=0)


def test_explicit_option_contradicting_metadata_is_an_error(causal_lm_dir, tmp_path):
    directory = tmp_path / "tagged"
    shutil.copytree(causal_lm_dir, directory)
    PRMMetadata(prm_style="step_tag", step_tag="<tag>").save(directory)
    assert load_scorer(directory, device="cpu").step_tag == "<tag>"
    with pytest.raises(ValueError, match=r"step_tag='ки' contradicts step_tag='<tag>'"):
        load_scorer(directory, device="cpu", step_tag="ки")


def _lora_token_classifier(base_dir, tokenizer, directory, *, with_head: bool):
    """A LoRA token-classification PRM on a causal-LM base, as train_prm.py writes it with use_peft."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(3)
    base = AutoModelForTokenClassification.from_pretrained(base_dir, num_labels=2)
    config = LoraConfig(task_type=TaskType.TOKEN_CLS, r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    if not with_head:
        model.peft_config["default"].modules_to_save = None
    model.save_pretrained(directory)
    if not with_head:
        config_path = directory / "adapter_config.json"
        raw = json.loads(config_path.read_text())
        raw["modules_to_save"] = None
        config_path.write_text(json.dumps(raw))
    tokenizer.save_pretrained(directory)
    PRMMetadata(prm_style="token_classification", base_model=str(base_dir), is_peft_adapter=True).save(directory)
    return model


def test_lora_adapter_loads_on_its_base_with_the_trained_head(causal_lm_dir, tiny_tokenizer, tmp_path):
    directory = tmp_path / "lora_prm"
    reference = _lora_token_classifier(causal_lm_dir, tiny_tokenizer, directory, with_head=True).eval()
    scorer = load_scorer(directory, device="cpu")
    (result,) = scorer.score([PROBLEM], [STEPS])
    input_ids, positions = build_prm_input_ids(tiny_tokenizer, PROBLEM, STEPS)
    with torch.no_grad():
        logits = reference(input_ids=torch.tensor([input_ids])).logits[0, positions]
    assert result.step_scores == pytest.approx(torch.softmax(logits, dim=-1)[:, 1].tolist(), abs=1e-5)


def test_lora_adapter_without_head_is_an_error(causal_lm_dir, tiny_tokenizer, tmp_path):
    directory = tmp_path / "headless"
    _lora_token_classifier(causal_lm_dir, tiny_tokenizer, directory, with_head=False)
    with pytest.raises(ValueError, match="the peft adapter holds no classification head"):
        load_scorer(directory, device="cpu")
