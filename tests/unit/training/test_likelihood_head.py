"""The likelihood-head PRM style: the layout is the likelihood verifier's token by token, the head starts at the
read-out, training and scoring compute the same score, first-error masking, soft targets, accumulation, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import training.prm as prm
from data_prep.judgement import render_policy_prompt
from data_prep.prm_metadata import LIKELIHOOD_HEAD_FILE
from data_prep.records import StepLabels
from data_prep.steps import SYSTEM_PROMPT
from data_prep.tokenizer import build_tiny_tokenizer
from training.config import ModelArguments, TtcPRMConfig
from training.generative import PRMInputError
from training.likelihood_head import NO_STEP, LikelihoodHeadCollator, LikelihoodHeadModel, layout_row

PROBLEM = "Start with 2.\n(1) Add 3.\n(2) Add 1.\nWhat is the final number?"
STEPS = ["(1) Add 3: 2 + 3 = 5", "(2) Add 1: 5 + 1 = 6", "Therefore, the final answer is: $\\boxed{6}$."]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _backbone(tokenizer, seed: int = 0):
    return prm.build_random_model(ModelArguments(init_from_config="tiny"), tokenizer, seed=seed, causal_lm=True)


def _args(tmp_path: Path, **overrides) -> TtcPRMConfig:
    values = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                  report_to="none", per_device_train_batch_size=2, max_length=256, seed=0,
                  prm_style="likelihood_head")
    values.update(overrides)
    return TtcPRMConfig(**values)


def _hand_min_log_probs(backbone, input_ids: list[int], spans: list[tuple[int, int]]) -> list[float]:
    """min over each step's tokens of log P(token | before), from the LM's own logits, without the head code."""
    with torch.no_grad():
        log_probs = torch.log_softmax(backbone(torch.tensor([input_ids])).logits[0].float(), dim=-1)
    return [min(log_probs[t - 1, input_ids[t]].item() for t in range(first, last + 1)) for first, last in spans]


def _spans(step_index: list[int]) -> list[tuple[int, int]]:
    steps = sorted({index for index in step_index if index != NO_STEP})
    return [(step_index.index(k), len(step_index) - 1 - step_index[::-1].index(k)) for k in steps]


# ---------------------------------------------------------------- the layout


def test_the_layout_is_the_likelihood_verifiers_token_by_token(tokenizer) -> None:
    from inference.scoring.likelihood import LikelihoodScorer

    row = layout_row(tokenizer, PROBLEM, STEPS, [True, 0.25, False], system_prompt=SYSTEM_PROMPT, max_length=None)
    prompt_ids = tokenizer.encode(render_policy_prompt(tokenizer, PROBLEM, SYSTEM_PROMPT), add_special_tokens=False)
    assert row.input_ids[: len(prompt_ids)] == prompt_ids
    assert set(row.step_index[: len(prompt_ids)]) == {NO_STEP}
    # Each step's tokens decode to exactly its text; the separators between steps belong to none.
    for index, (first, last) in enumerate(_spans(row.step_index)):
        assert tokenizer.decode(row.input_ids[first: last + 1]) == STEPS[index]
        assert set(row.step_index[first: last + 1]) == {index}
    assert row.step_labels == [1.0, 0.25, 0.0]
    scorer = LikelihoodScorer(_backbone(tokenizer), tokenizer, path="tiny", device=torch.device("cpu"),
                              max_tokens_per_batch=4096)
    reference = scorer.build_input(PROBLEM, STEPS)
    assert row.input_ids == list(reference.input_ids)
    assert _spans(row.step_index) == list(reference.step_spans)


def test_max_length_drops_the_steps_it_cuts_and_their_labels(tokenizer) -> None:
    full = layout_row(tokenizer, PROBLEM, STEPS, [True, True, True], system_prompt=SYSTEM_PROMPT, max_length=None)
    second_end = _spans(full.step_index)[1][1]
    cut = layout_row(tokenizer, PROBLEM, STEPS, [True, True, True], system_prompt=SYSTEM_PROMPT,
                     max_length=second_end + 2)
    assert cut.input_ids == full.input_ids[: second_end + 2]
    assert cut.step_labels == [1.0, 1.0] and max(cut.step_index) == 1


def test_a_tokenizer_without_a_chat_template_is_refused_before_any_model(tokenizer, tmp_path: Path) -> None:
    from data_prep.labels import write_step_labels
    from training.config import DataArguments

    plain = build_tiny_tokenizer()
    plain.chat_template = None
    path = write_step_labels([StepLabels(PROBLEM, STEPS, [True, True, True])], tmp_path / "labels.jsonl")
    built = []
    original = prm.build_model
    prm.build_model = lambda *a, **k: built.append(1) or original(*a, **k)
    original_tokenizer = prm.load_tokenizer
    prm.load_tokenizer = lambda model_args: plain
    try:
        with pytest.raises(PRMInputError, match="has no chat template; prm_style likelihood_head reads"):
            prm.train_prm(ModelArguments(init_from_config="tiny"), DataArguments(train_files=[str(path)]),
                          _args(tmp_path))
    finally:
        prm.build_model, prm.load_tokenizer = original, original_tokenizer
    assert built == []


def test_lora_needs_a_model_and_a_trainable_lm(tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="with use_peft needs model_name_or_path"):
        prm.build_model(ModelArguments(init_from_config="tiny", use_peft=True), tokenizer,
                        _args(tmp_path, freeze_backbone=False))
    _backbone(tokenizer).save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match="use_peft trains LoRA adapters of the LM, but freeze_backbone is true"):
        prm.build_model(ModelArguments(model_name_or_path=str(tmp_path / "lm"), use_peft=True), tokenizer,
                        _args(tmp_path))


def test_a_lora_likelihood_head_saves_its_adapter_and_scores_as_it_trained(tokenizer, tmp_path: Path) -> None:
    from data_prep.prm_metadata import PRMMetadata
    from inference.scoring import load_scorer

    _backbone(tokenizer, seed=4).save_pretrained(tmp_path / "lm")
    model_args = ModelArguments(model_name_or_path=str(tmp_path / "lm"), use_peft=True, lora_r=4, lora_alpha=8,
                                lora_target_modules=["q_proj", "v_proj"])
    model, base = prm.build_model(model_args, tokenizer, _args(tmp_path, freeze_backbone=False))
    assert base == str((tmp_path / "lm").resolve())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"likelihood_weight", "hidden_weight", "bias"} < trainable and all(
        "lora_" in n for n in trainable - {"likelihood_weight", "hidden_weight", "bias"})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        model.bias.fill_(0.3)
    model.eval()  # LoRA dropout off: the scorer reads the model in eval mode
    batch = _batch(tokenizer, [(STEPS, [1.0, 1.0, 1.0])])
    with torch.no_grad():
        logit = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"][0, :, 1]
    out = tmp_path / "prm"
    model.save_checkpoint(out)
    tokenizer.save_pretrained(out)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    PRMMetadata(prm_style="likelihood_head", base_model=base, is_peft_adapter=True,
                system_prompt=SYSTEM_PROMPT).save(out)
    (result,) = load_scorer(out, device="cpu").score([PROBLEM], [STEPS])
    assert result.step_scores == pytest.approx(torch.sigmoid(logit).tolist(), abs=1e-5)
    fresh, _ = prm.build_model(model_args, tokenizer, _args(tmp_path, freeze_backbone=False))
    fresh.load_checkpoint(out)
    fresh.eval()
    with torch.no_grad():
        again = fresh(**{k: v for k, v in batch.items() if k != "labels"})["logits"][0, :, 1]
    assert torch.allclose(again, logit, atol=1e-6)


# ---------------------------------------------------------------- the head


def _batch(tokenizer, records: list[tuple[list[str], list[float]]]) -> dict[str, torch.Tensor]:
    rows = [layout_row(tokenizer, PROBLEM, steps, labels, system_prompt=SYSTEM_PROMPT, max_length=None)
            for steps, labels in records]
    return LikelihoodHeadCollator(tokenizer.pad_token_id)(
        [{"input_ids": r.input_ids, "step_index": r.step_index, "labels": r.step_labels} for r in rows])


def test_the_untrained_head_is_the_read_out_itself(tokenizer) -> None:
    backbone = _backbone(tokenizer)
    model = LikelihoodHeadModel(backbone, freeze_backbone=True)
    short = STEPS[:1] + STEPS[2:]
    batch = _batch(tokenizer, [(STEPS, [1.0, 1.0, 1.0]), (short, [1.0, 0.0])])
    logits = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
    assert logits.shape == (2, 3, 2) and torch.all(logits[..., 0] == 0)
    for row, steps in enumerate((STEPS, short)):
        example = layout_row(tokenizer, PROBLEM, steps, None, system_prompt=SYSTEM_PROMPT, max_length=None)
        expected = _hand_min_log_probs(backbone, example.input_ids, _spans(example.step_index))
        assert logits[row, : len(steps), 1].tolist() == pytest.approx(expected, abs=1e-5)
    assert logits[1, 2].tolist() == [0.0, 0.0]  # the padding column of the shorter row
    assert all(not p.requires_grad for p in backbone.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"likelihood_weight", "hidden_weight", "bias"}


def test_training_and_scoring_compute_the_same_score(tokenizer, tmp_path: Path) -> None:
    from data_prep.prm_metadata import PRMMetadata
    from inference.scoring import load_scorer

    model = LikelihoodHeadModel(_backbone(tokenizer, seed=3), freeze_backbone=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.likelihood_weight.fill_(0.7)
        model.hidden_weight.copy_(torch.randn(model.hidden_weight.shape, generator=generator) * 0.3)
        model.bias.fill_(0.4)
    model.save_checkpoint(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    PRMMetadata(prm_style="likelihood_head", system_prompt=SYSTEM_PROMPT).save(tmp_path)
    assert (tmp_path / LIKELIHOOD_HEAD_FILE).is_file()
    batch = _batch(tokenizer, [(STEPS, [1.0, 1.0, 1.0])])
    with torch.no_grad():
        logit = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"][0, :, 1]
        # By hand: w * min log p + v . h(last token of the step) + b, h the decoder's (normed) last hidden state.
        hidden = model.backbone.get_decoder()(input_ids=batch["input_ids"]).last_hidden_state[0]
    spans = _spans(batch["step_index"][0].tolist())
    minimum = _hand_min_log_probs(model.backbone, batch["input_ids"][0].tolist(), spans)
    by_hand = [0.7 * m + float(hidden[last] @ model.hidden_weight.detach()) + 0.4 for m, (_, last) in zip(minimum, spans)]
    assert logit.tolist() == pytest.approx(by_hand, abs=1e-4)
    (result,) = load_scorer(tmp_path, device="cpu", prefix_cache_bytes=0).score([PROBLEM], [STEPS])
    assert result.step_scores == pytest.approx([1 / (1 + math.exp(-z)) for z in by_hand], abs=1e-5)
    # Scored step by step as a beam grows, from the cache of the shorter solutions: the same scores.
    cached = load_scorer(tmp_path, device="cpu")
    for depth in range(1, len(STEPS) + 1):
        (grown,) = cached.score([PROBLEM], [STEPS[:depth]])
        assert grown.step_scores == pytest.approx(result.step_scores[:depth], abs=1e-5)
    assert cached.prefix_cache.hits == len(STEPS) - 1


def test_a_checkpoint_round_trips_for_resuming(tokenizer, tmp_path: Path) -> None:
    model = LikelihoodHeadModel(_backbone(tokenizer, seed=1), freeze_backbone=True)
    with torch.no_grad():
        model.hidden_weight.fill_(0.05)
        model.bias.fill_(-1.5)
    model.save_checkpoint(tmp_path)
    fresh = LikelihoodHeadModel(_backbone(tokenizer, seed=2), freeze_backbone=True)
    fresh.load_checkpoint(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name


def test_a_head_of_the_wrong_shape_is_refused_naming_the_tensor(tokenizer, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from inference.scoring.likelihood_head import load_head

    with pytest.raises(FileNotFoundError, match=LIKELIHOOD_HEAD_FILE):
        load_head(tmp_path, 64)
    save_file({"likelihood_weight": torch.ones(1), "hidden_weight": torch.zeros(32), "bias": torch.zeros(1)},
              str(tmp_path / LIKELIHOOD_HEAD_FILE))
    with pytest.raises(ValueError, match=r"hidden_weight has shape \(32,\), expected \(64,\)"):
        load_head(tmp_path, 64)


# ---------------------------------------------------------------- labels and the loss


@pytest.mark.parametrize(("labels", "threshold", "kept"), [
    ([1.0, 1.0, 1.0], 0.0, 3), ([1.0, 0.0, 1.0, 0.0], 0.0, 2), ([0.0, 1.0], 0.0, 1), ([0.9, 0.4, 0.0], 0.5, 2),
    ([0.9, 0.5, 1.0], 0.5, 2), ([0.2, 1.0], 0.0, 2),
])
def test_masking_keeps_the_steps_through_the_first_bad_one(labels, threshold, kept) -> None:
    assert prm.labelled_through_first_error(labels, threshold) == kept


@pytest.mark.parametrize("style", ["likelihood_head", "token_classification", "chat_plus_minus"])
def test_steps_after_the_first_error_carry_no_label(tokenizer, tmp_path: Path, style: str) -> None:
    records = [StepLabels(PROBLEM, STEPS, [True, False, True])]
    masked = prm.build_dataset(records, tokenizer, _args(tmp_path, prm_style=style, mask_after_first_error=True),
                               good_id=tokenizer.convert_tokens_to_ids("+"))
    plain = prm.build_dataset(records, tokenizer, _args(tmp_path, prm_style=style),
                              good_id=tokenizer.convert_tokens_to_ids("+"))
    labelled = [[label for label in row if label != -100] for row in (masked[0]["labels"], plain[0]["labels"])]
    assert labelled == [[1.0, 0.0], [1.0, 0.0, 1.0]]
    assert masked[0]["input_ids"] == plain[0]["input_ids"]  # the text stays; only the loss is masked


def _trainer(tokenizer, tmp_path: Path, records, **overrides):
    args = _args(tmp_path, **overrides)
    model, _ = prm.build_model(ModelArguments(init_from_config="tiny"), tokenizer, args)
    dataset = prm.build_dataset(records, tokenizer, args)
    return prm.SoftLabelPRMTrainer(model=model, args=args, data_collator=LikelihoodHeadCollator(tokenizer.pad_token_id),
                                   train_dataset=dataset, processing_class=tokenizer)


def test_a_soft_label_reaches_the_loss_as_binary_cross_entropy(tokenizer, tmp_path: Path) -> None:
    trainer = _trainer(tokenizer, tmp_path, [StepLabels(PROBLEM, STEPS, [True, 0.3, False])],
                       per_device_train_batch_size=1)
    batch = next(iter(trainer.get_train_dataloader()))
    loss = trainer.compute_loss(trainer.model, batch).item()
    with torch.no_grad():
        z = trainer.model(**{k: v for k, v in batch.items() if k != "labels"})["logits"][0, :, 1]
    target = torch.tensor([1.0, 0.3, 0.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z, target).item()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_accumulating_4_batches_of_1_is_one_batch_of_4(tokenizer, tmp_path: Path) -> None:
    records = [StepLabels(PROBLEM, STEPS, [True, True, True]), StepLabels(PROBLEM, STEPS[:1] + STEPS[2:], [False, 0.2]),
               StepLabels(PROBLEM, STEPS, [True, 0.7, False]), StepLabels(PROBLEM, STEPS[2:], [True])]

    def head_after_one_step(batch: int, accumulation: int) -> dict[str, torch.Tensor]:
        trainer = _trainer(tokenizer, tmp_path / f"{batch}x{accumulation}", records, per_device_train_batch_size=batch,
                           gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=1.0,
                           lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
                           max_steps=1, save_strategy="no", logging_steps=1, disable_tqdm=True)
        trainer.train()
        return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}

    single, accumulated = head_after_one_step(4, 1), head_after_one_step(1, 4)
    assert single["likelihood_weight"].item() != 1.0  # the step moved the head
    for name, tensor in single.items():
        assert torch.allclose(accumulated[name], tensor, rtol=1e-4, atol=1e-6), name


def test_style_keys_of_another_style_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="freeze_backbone applies to prm_style likelihood_head, not step_tag"):
        _args(tmp_path, prm_style="step_tag", freeze_backbone=False)
    with pytest.raises(ValueError, match="implicit_beta applies to prm_style implicit, not likelihood_head"):
        _args(tmp_path, implicit_beta=0.5)
    with pytest.raises(ValueError, match="implicit_beta must be > 0, got 0.0"):
        _args(tmp_path, prm_style="implicit", implicit_beta=0.0)
