"""training.prm: soft labels reach the loss as they are, the soft loss, collation, metrics, model config, metadata."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import training.prm as prm
from data_prep.records import StepLabels
from data_prep.steps import STEP_SEPARATOR
from data_prep.tokenizer import build_tiny_tokenizer
from training.config import DataArguments, ModelArguments, TtcPRMConfig


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _args(tmp_path: Path, **overrides) -> TtcPRMConfig:
    values = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                  report_to="none", per_device_train_batch_size=2, max_length=256, seed=0)
    values.update(overrides)
    return TtcPRMConfig(**values)


# ---------------------------------------------------------------- the loss


def test_soft_cross_entropy_matches_the_hand_computed_value() -> None:
    logits = torch.tensor([[[0.0, 0.0], [1.0, 3.0], [2.0, -1.0]]])
    labels = torch.tensor([[-100.0, 0.7, 0.0]])
    # Position 1: p(good) = e^3 / (e^1 + e^3); position 2: p(bad) = e^2 / (e^2 + e^-1).
    log_good_1 = 3.0 - math.log(math.exp(1.0) + math.exp(3.0))
    log_bad_1 = 1.0 - math.log(math.exp(1.0) + math.exp(3.0))
    log_bad_2 = 2.0 - math.log(math.exp(2.0) + math.exp(-1.0))
    expected = (-(0.7 * log_good_1 + 0.3 * log_bad_1) - log_bad_2) / 2
    assert prm.soft_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy_with_hard_labels_is_standard_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 2)
    hard = torch.tensor([[1, -100, 0, -100, 1], [-100, -100, 0, 1, -100]])
    expected = torch.nn.functional.cross_entropy(logits.view(-1, 2), hard.view(-1), ignore_index=-100)
    assert prm.soft_cross_entropy(logits, hard.float()).item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_cross_entropy_without_labels_is_zero_and_differentiable() -> None:
    logits = torch.randn(1, 3, 2, requires_grad=True)
    loss = prm.soft_cross_entropy(logits, torch.full((1, 3), -100.0))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros(1, 3, 2))


# ---------------------------------------------------------------- data path


def test_dataset_and_collator_keep_float_labels(tokenizer, tmp_path: Path) -> None:
    records = [StepLabels("Start with 2.", ["(1) Add 3: 2 + 3 = 5", "Done"], [True, 0.7]),
               StepLabels("Start with 4.", ["x"], [0.25])]
    dataset = prm.build_dataset(records, tokenizer, _args(tmp_path))
    assert dataset.features["labels"].feature.dtype == "float32"
    batch = prm.StepLabelCollator(tokenizer.pad_token_id)([dataset[0], dataset[1]])
    assert batch["labels"].dtype == torch.float32
    labelled = batch["labels"][batch["labels"] != -100]
    assert labelled.tolist() == pytest.approx([1.0, 0.7, 0.25])
    short = len(dataset[1]["input_ids"])
    assert batch["input_ids"][1, short:].tolist() == [tokenizer.pad_token_id] * (batch["input_ids"].shape[1] - short)
    assert batch["attention_mask"][1].sum().item() == short


def test_truncated_examples_keep_the_labels_that_fit_and_are_counted(tokenizer, tmp_path: Path, caplog) -> None:
    records = [StepLabels("Start with 2.", ["(1) Add 3: 2 + 3 = 5", "Therefore 5"], [True, 0.7])]
    full = prm.build_dataset(records, tokenizer, _args(tmp_path))[0]
    first_step_end = [i for i, label in enumerate(full["labels"]) if label != -100][0]
    cut = prm.build_dataset(records, tokenizer, _args(tmp_path, max_length=first_step_end + 2))[0]
    assert len(cut["input_ids"]) == first_step_end + 2
    assert [label for label in cut["labels"] if label != -100] == [1.0]
    assert "1 of 1 examples lost steps to max_length" in caplog.text


def test_a_0_7_label_reaches_the_trainer_loss_as_0_7(tokenizer, tmp_path: Path, monkeypatch) -> None:
    records = [StepLabels("Start with 2.", ["(1) Add 3: 2 + 3 = 5", "Therefore 5"], [True, 0.7])]
    model_args = ModelArguments(init_from_config="tiny")
    args = _args(tmp_path, per_device_train_batch_size=1)
    model, base = prm.build_model(model_args, tokenizer, args)
    assert base is None
    trainer = prm.SoftLabelPRMTrainer(
        model=model, args=args, data_collator=prm.StepLabelCollator(tokenizer.pad_token_id),
        train_dataset=prm.build_dataset(records, tokenizer, args), processing_class=tokenizer,
    )
    captured = {}
    real_loss = prm.soft_cross_entropy_sum

    def spy(logits, labels):
        captured["logits"], captured["labels"] = logits.detach(), labels.detach()
        return real_loss(logits, labels)

    monkeypatch.setattr(prm, "soft_cross_entropy_sum", spy)
    batch = next(iter(trainer.get_train_dataloader()))
    loss = trainer.compute_loss(trainer.model, batch)
    labels, logits = captured["labels"][0], captured["logits"][0]
    positions = (labels != -100).nonzero().flatten().tolist()
    assert labels[positions].tolist() == pytest.approx([1.0, 0.7])
    log_probs = torch.log_softmax(logits[positions], dim=-1)
    expected = (-log_probs[0, 1] - (0.7 * log_probs[1, 1] + 0.3 * log_probs[1, 0])) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # The positions are the last separator token of each step.
    separator_last = tokenizer.encode(STEP_SEPARATOR, add_special_tokens=False)[-1]
    assert batch["input_ids"][0, positions].tolist() == [separator_last, separator_last]


def test_harden_labels_thresholds_floats_and_keeps_bools(caplog) -> None:
    records = [StepLabels("q", ["a", "b", "c"], [True, 0.7, 0.0])]
    assert prm.harden_labels(records, 0.0)[0].labels == [True, True, False]
    assert prm.harden_labels(records, 0.8)[0].labels == [True, False, False]
    assert "2 float labels turned into bools" in caplog.text


def test_compute_step_metrics_counts_only_labelled_tokens() -> None:
    logits = np.array([[[0.0, 2.0], [9.0, -9.0], [0.0, -2.0]]])
    labels = np.array([[1.0, -100.0, 0.3]])
    metrics = prm.compute_step_metrics(SimpleNamespace(predictions=logits, label_ids=labels))
    p1, p2 = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))
    assert metrics["step_accuracy"] == 1.0
    assert metrics["step_brier"] == pytest.approx(((p1 - 1.0) ** 2 + (p2 - 0.3) ** 2) / 2)


# ---------------------------------------------------------------- model config, resume, metadata


def test_tiny_shape_takes_the_vocabulary_from_the_tokenizer(tokenizer) -> None:
    config = prm.build_model_config(ModelArguments(init_from_config="tiny"), tokenizer)
    assert config.vocab_size == len(tokenizer)
    assert (config.hidden_size, config.num_hidden_layers) == (32, 2)
    assert config.id2label == {0: "bad", 1: "good"}
    assert config.pad_token_id == tokenizer.pad_token_id


def test_llama31_8b_shape_cut_to_two_layers(tokenizer) -> None:
    config = prm.build_model_config(ModelArguments(init_from_config="llama31_8b", num_hidden_layers=2), tokenizer)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (128256, 4096, 2)
    assert (config.num_attention_heads, config.num_key_value_heads, config.intermediate_size) == (32, 8, 14336)
    assert config.num_labels == 2


def test_unknown_shape_and_too_small_vocabulary_are_errors(tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a named shape"):
        prm.build_model_config(ModelArguments(init_from_config="llama99"), tokenizer)
    config = prm.build_model_config(ModelArguments(init_from_config="tiny"), tokenizer)
    config.vocab_size = 10
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vocab_size=10"):
        prm.build_model_config(ModelArguments(init_from_config=str(tmp_path)), tokenizer)


def test_only_the_tiny_shape_has_a_builtin_tokenizer() -> None:
    with pytest.raises(ValueError, match="needs tokenizer_name_or_path"):
        prm.load_tokenizer(ModelArguments(init_from_config="llama31_8b"))


def test_resume_without_a_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint-\\* directory"):
        prm.resolve_resume(_args(tmp_path, resume=True))
    (tmp_path / "out" / "checkpoint-3").mkdir(parents=True)
    assert prm.resolve_resume(_args(tmp_path, resume=True)) == str(tmp_path / "out" / "checkpoint-3")
    assert prm.resolve_resume(_args(tmp_path)) is None


def test_local_base_resolves_to_an_absolute_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    assert prm.resolve_local_base("base") == str(tmp_path / "base")


def test_metadata_records_style_separator_and_training(tmp_path: Path) -> None:
    model_args = ModelArguments(init_from_config="tiny", use_peft=True, lora_r=4)
    data_args = DataArguments(train_files=["runs/x/labels/train.jsonl"], label_source="mc_soft")
    metadata = prm.build_metadata(model_args, data_args, _args(tmp_path), "/abs/base", "tiny", 20)
    assert metadata.prm_style == "token_classification"
    assert metadata.step_separator == "\n\n"
    assert (metadata.base_model, metadata.is_peft_adapter, metadata.positive_label) == ("/abs/base", True, 1)
    assert metadata.system_prompt is None
    assert metadata.train_config["label_source"] == "mc_soft"
    assert metadata.train_config["num_train_examples"] == 20
    assert metadata.train_config["lora_r"] == 4
    assert prm.label_source_name(DataArguments(train_files=["runs/x/labels/train.jsonl"])) == "stepwise-train"
