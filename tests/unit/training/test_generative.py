"""Generative PRM training: the layout matches the scorers token by token, checks, soft targets in the loss, and
gradient accumulation giving the gradient of one large batch for every style."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import training.prm as prm
from data_prep.labels import write_step_labels
from data_prep.records import StepLabels
from data_prep.tokenizer import build_tiny_tokenizer
from training.config import DataArguments, ModelArguments, TtcPRMConfig
from training.generative import PRMInputError, judgement_token_ids, judgement_tokens

TAG = "#"  # one token in the tiny tokenizer (Math-Shepherd's `ки` is four byte tokens there)
PROBLEM = "Start with 2."
STEPS = ["(1) Add 3: 2 + 3 = 5", "(2) Add 1: 5 + 1 = 6", "Therefore, the final answer is: $\\boxed{6}$."]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def causal_model(tokenizer):
    return prm.build_random_model(ModelArguments(init_from_config="tiny"), tokenizer, seed=0, causal_lm=True)


def _args(tmp_path: Path, **overrides) -> TtcPRMConfig:
    values = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                  report_to="none", per_device_train_batch_size=2, max_length=256, seed=0, step_tag=TAG)
    values.update(overrides)
    return TtcPRMConfig(**values)


def _ids(tokenizer, style: str) -> tuple[int, int]:
    return judgement_token_ids(tokenizer, style, good_token="+", bad_token="-", step_tag=TAG, tokenizer_source="tiny")


# ---------------------------------------------------------------- the layout is the scorers' layout


def test_plus_minus_layout_is_the_scorers_token_by_token(tokenizer, causal_model) -> None:
    from inference.scoring.chat_plus_minus import ChatPlusMinusScorer

    good_id, _ = _ids(tokenizer, "chat_plus_minus")
    tokens = judgement_tokens(tokenizer, "chat_plus_minus", PROBLEM, STEPS, [1.0, 0.4, False],
                              good_token="+", good_id=good_id, step_tag=None)
    scorer = ChatPlusMinusScorer(causal_model, tokenizer, path="tiny", device=torch.device("cpu"),
                                 max_tokens_per_batch=4096)
    reference = scorer.build_input(PROBLEM, STEPS)
    assert tokens.input_ids == list(reference.input_ids)
    assert tokens.step_positions == list(reference.score_positions)
    assert [index for index, label in enumerate(tokens.labels) if label != -100] == tokens.step_positions
    assert [tokens.labels[position] for position in tokens.step_positions] == pytest.approx([1.0, 0.4, 0.0])
    # By hand: each judgement position is the newline after `<|assistant|>`, and the next token is the `+` answer.
    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert [tokens.input_ids[position - 1] for position in tokens.step_positions] == [assistant] * 3
    assert [tokens.input_ids[position + 1] for position in tokens.step_positions] == [good_id] * 3
    first = tokenizer.decode(tokens.input_ids[: tokens.step_positions[0] + 1])
    assert first == f"<|bos|><|user|>\n{PROBLEM} {STEPS[0]}<|end|>\n<|assistant|>\n"


def test_step_tag_layout_is_the_scorers_token_by_token(tokenizer, causal_model) -> None:
    from inference.scoring.step_tag import StepTagScorer

    good_id, _ = _ids(tokenizer, "step_tag")
    tokens = judgement_tokens(tokenizer, "step_tag", PROBLEM, STEPS, [True, 0.25, False],
                              good_token="+", good_id=good_id, step_tag=TAG)
    scorer = StepTagScorer(causal_model, tokenizer, step_tag=TAG, path="tiny", device=torch.device("cpu"),
                           max_tokens_per_batch=4096)
    reference = scorer.build_input(PROBLEM, STEPS)
    assert tokens.input_ids == list(reference.input_ids)
    assert tokens.step_positions == list(reference.score_positions)
    tag_id = tokenizer.convert_tokens_to_ids(TAG)
    # By hand: Math-Shepherd's text, encoded with the special tokens, and the judgement on each tag token.
    text = f"{PROBLEM} {STEPS[0]} {TAG}\n{STEPS[1]} {TAG}\n{STEPS[2]} {TAG}"
    assert tokens.input_ids == tokenizer(text, add_special_tokens=True)["input_ids"]
    assert [index for index, token in enumerate(tokens.input_ids) if token == tag_id] == tokens.step_positions
    assert [tokens.labels[position] for position in tokens.step_positions] == pytest.approx([1.0, 0.25, 0.0])


def test_truncation_keeps_the_judgements_that_fit(tokenizer) -> None:
    good_id, _ = _ids(tokenizer, "chat_plus_minus")
    full = judgement_tokens(tokenizer, "chat_plus_minus", PROBLEM, STEPS, [1.0, 1.0, 0.0], good_token="+",
                            good_id=good_id, step_tag=None)
    cut = judgement_tokens(tokenizer, "chat_plus_minus", PROBLEM, STEPS, [1.0, 1.0, 0.0], good_token="+",
                           good_id=good_id, step_tag=None, max_length=full.step_positions[1] + 1)
    assert cut.step_positions == full.step_positions[:2]
    assert len(cut.input_ids) == full.step_positions[1] + 1


# ---------------------------------------------------------------- checks before training


def test_tokenizer_checks_name_the_token_and_the_tokenizer(tokenizer) -> None:
    with pytest.raises(PRMInputError, match=r"tokenizer tiny: step_tag 'ки' encodes to 4 tokens"):
        judgement_token_ids(tokenizer, "step_tag", good_token="+", bad_token="-", step_tag="ки",
                            tokenizer_source="tiny")
    with pytest.raises(PRMInputError, match=r"tokenizer tiny: good_token 'good' encodes to \d+ tokens"):
        judgement_token_ids(tokenizer, "chat_plus_minus", good_token="good", bad_token="-", step_tag=None,
                            tokenizer_source="tiny")
    with pytest.raises(PRMInputError, match="are the same token"):
        judgement_token_ids(tokenizer, "chat_plus_minus", good_token="+", bad_token="+", step_tag=None,
                            tokenizer_source="tiny")
    plain = build_tiny_tokenizer()
    plain.chat_template = None
    with pytest.raises(PRMInputError, match="tokenizer tiny has no chat template"):
        judgement_token_ids(plain, "chat_plus_minus", good_token="+", bad_token="-", step_tag=None,
                            tokenizer_source="tiny")


def test_a_step_with_the_step_tag_is_refused_naming_file_row_and_field(tokenizer, tmp_path: Path) -> None:
    path = write_step_labels([StepLabels("Start with 1.", ["1 + 1 = 2"], [True]),
                              StepLabels("Start with 2.", ["ok", "tagged # here"], [True, 0.5])],
                             tmp_path / "labels.jsonl")
    args = _args(tmp_path, prm_style="step_tag")
    with pytest.raises(PRMInputError, match=rf"{path} row 2: field completions\[1\] contains the step tag '#'"):
        prm.load_records(DataArguments(train_files=[str(path)]), args, tokenizer)
    chat = _args(tmp_path, prm_style="chat_plus_minus")
    bad = write_step_labels([StepLabels("Start <|end|> with 1.", ["1 + 1 = 2"], [True])], tmp_path / "chat.jsonl")
    with pytest.raises(PRMInputError, match=rf"{bad} row 1: field prompt contains the special token '<\|end\|>'"):
        prm.load_records(DataArguments(train_files=[str(bad)]), chat, tokenizer)


@pytest.fixture
def restored_process_state():
    """main() sets up root logging handlers and environment defaults; put both back for the tests after this one."""
    import logging
    import os

    root = logging.getLogger()
    handlers, environ = list(root.handlers), dict(os.environ)
    yield
    for handler in [handler for handler in root.handlers if handler not in handlers]:
        root.removeHandler(handler)
        handler.close()
    os.environ.clear()
    os.environ.update(environ)


def test_cli_prints_one_error_line_before_training(tmp_path: Path, capsys, restored_process_state) -> None:
    from training.train_prm import main

    path = write_step_labels([StepLabels("Start with 1.", ["1 + 1 = 2"], [True])], tmp_path / "labels.jsonl")
    code = main(["--config", str(Path(__file__).resolve().parents[3] / "configs/prm/tiny.yaml"),
                 "--model_name_or_path", "none", "--init_from_config", "tiny", "--prm_style", "step_tag",
                 "--train_files", str(path), "--output_dir", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert error[-1].startswith("train_prm.py: error: tokenizer the built-in tiny tokenizer: step_tag 'ки' encodes")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_generative_config_rejects_unknown_style_and_completion_length(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prm_style must be one of"):
        _args(tmp_path, prm_style="pairwise")
    with pytest.raises(ValueError, match="max_completion_length applies to prm_style token_classification"):
        _args(tmp_path, prm_style="step_tag", max_completion_length=64)


# ---------------------------------------------------------------- the loss


def _trainer(tokenizer, tmp_path: Path, style: str, records, **overrides):
    args = _args(tmp_path, prm_style=style, **overrides)
    model, _ = prm.build_model(ModelArguments(init_from_config="tiny"), tokenizer, args)
    judgement = _ids(tokenizer, style) if style != "token_classification" else None
    dataset = prm.build_dataset(records, tokenizer, args, good_id=judgement[0] if judgement else None)
    return prm.SoftLabelPRMTrainer(model=model, args=args, data_collator=prm.StepLabelCollator(tokenizer.pad_token_id),
                                   train_dataset=dataset, processing_class=tokenizer, judgement_ids=judgement)


@pytest.mark.parametrize("style", ["chat_plus_minus", "step_tag"])
def test_a_soft_label_moves_the_loss_as_the_formula_says(tokenizer, tmp_path: Path, style: str) -> None:
    good_id, bad_id = _ids(tokenizer, style)

    def loss_and_pair(label: float) -> tuple[float, torch.Tensor]:
        trainer = _trainer(tokenizer, tmp_path, style, [StepLabels(PROBLEM, STEPS, [True, label, False])],
                           per_device_train_batch_size=1)
        batch = next(iter(trainer.get_train_dataloader()))
        loss = trainer.compute_loss(trainer.model, batch).item()
        positions = (batch["labels"][0] != -100).nonzero().flatten()
        with torch.no_grad():
            logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return loss, torch.log_softmax(logits[0, positions][:, [good_id, bad_id]].float(), dim=-1)

    low, log_pair = loss_and_pair(0.2)
    high, same_pair = loss_and_pair(0.9)
    assert torch.allclose(log_pair, same_pair)  # the same seed: the same model, only the label differs
    # By hand: loss = mean over the 3 steps of -(p log q_good + (1 - p) log q_bad).
    expected_low = -(log_pair[0, 0] + 0.2 * log_pair[1, 0] + 0.8 * log_pair[1, 1] + log_pair[2, 1]).item() / 3
    assert low == pytest.approx(expected_low, rel=1e-5)
    assert high - low == pytest.approx(-(0.9 - 0.2) * (log_pair[1, 0] - log_pair[1, 1]).item() / 3, rel=1e-4)


def _records_with_different_step_counts() -> list[StepLabels]:
    """Four examples with 1, 2, 3 and 5 labelled steps: the mean of per-example means is not the step mean."""
    return [
        StepLabels("Start with 1.", ["1 + 1 = 2"], [True]),
        StepLabels("Start with 2.", ["2 + 2 = 5", "So 5."], [False, 0.3]),
        StepLabels("Start with 3.", ["3 * 2 = 6", "6 - 1 = 5", "So 5."], [True, 0.8, True]),
        StepLabels("Start with 4.", ["4 + 1 = 5", "5 + 1 = 6", "6 + 1 = 8", "8 - 2 = 6", "So 6."],
                   [True, True, False, 0.1, False]),
    ]


def _weights_after_one_sgd_step(tokenizer, tmp_path: Path, style: str, batch: int, accumulation: int) -> dict:
    trainer = _trainer(tokenizer, tmp_path / f"{style}-{batch}x{accumulation}", style,
                       _records_with_different_step_counts(), per_device_train_batch_size=batch,
                       gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=1.0,
                       lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
                       max_steps=1, save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer.train()
    return {name: tensor.detach().clone() for name, tensor in trainer.model.state_dict().items()}


@pytest.mark.parametrize("style", ["token_classification", "chat_plus_minus", "step_tag"])
def test_accumulating_4_batches_of_1_is_one_batch_of_4(tokenizer, tmp_path: Path, style: str) -> None:
    initial = prm.build_random_model(ModelArguments(init_from_config="tiny"), tokenizer, seed=0,
                                     causal_lm=style != "token_classification").state_dict()
    accumulated = _weights_after_one_sgd_step(tokenizer, tmp_path, style, batch=1, accumulation=4)
    single = _weights_after_one_sgd_step(tokenizer, tmp_path, style, batch=4, accumulation=1)
    moved = [name for name in single if not torch.equal(single[name], initial[name])]
    assert moved  # lr 1: the step changed the weights
    for name in single:
        update_single = single[name] - initial[name]
        update_accumulated = accumulated[name] - initial[name]
        assert torch.allclose(update_accumulated, update_single, rtol=1e-4, atol=1e-6), name


def test_the_loss_is_the_step_mean_over_the_accumulated_batch(tokenizer, tmp_path: Path) -> None:
    # With the Trainer's item count given, one micro-batch contributes its summed loss over all accumulated steps.
    trainer = _trainer(tokenizer, tmp_path, "chat_plus_minus", _records_with_different_step_counts()[:1],
                       per_device_train_batch_size=1)
    batch = next(iter(trainer.get_train_dataloader()))
    mean = trainer.compute_loss(trainer.model, batch).item()
    share = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(11)).item()
    assert share == pytest.approx(mean * 1 / 11, rel=1e-6)
    assert math.isfinite(mean) and mean > 0


@pytest.mark.parametrize("style", ["token_classification", "chat_plus_minus"])
def test_a_batch_with_no_labelled_step_has_loss_zero_not_nan(tokenizer, tmp_path: Path, style: str) -> None:
    # Rows cut by max_length before their first label leave a batch that counts no step (the Trainer passes 0):
    # 0/0 would be a NaN, and DeepSpeed skips the optimizer step on it.
    trainer = _trainer(tokenizer, tmp_path, style, _records_with_different_step_counts()[:1],
                       per_device_train_batch_size=1)
    batch = next(iter(trainer.get_train_dataloader()))
    batch["labels"] = torch.full_like(batch["labels"], -100)
    for items in (torch.tensor(0), 0):
        loss = trainer.compute_loss(trainer.model, batch, num_items_in_batch=items)
        assert loss.item() == 0.0 and loss.requires_grad
