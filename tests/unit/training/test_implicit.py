"""The implicit PRM style: the reward is beta * (log P_model - log P_reference) summed per step, by hand on a tiny
model; it starts at zero; outcome labels, and soft labels refused naming file and row before training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import training.prm as prm
from data_prep.labels import write_step_labels
from data_prep.prm_metadata import PRMMetadata
from data_prep.records import StepLabels
from data_prep.steps import SYSTEM_PROMPT
from data_prep.tokenizer import build_tiny_tokenizer
from training.config import DataArguments, ModelArguments, TtcPRMConfig
from training.generative import PRMInputError
from training.implicit import ImplicitPRMModel, outcome_label
from training.likelihood_head import LikelihoodHeadCollator, layout_row

PROBLEM = "Start with 2.\n(1) Add 3.\n(2) Add 1.\nWhat is the final number?"
STEPS = ["(1) Add 3: 2 + 3 = 5", "(2) Add 1: 5 + 1 = 6", "Therefore, the final answer is: $\\boxed{6}$."]
BETA = 0.1


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _lm(tokenizer, seed: int):
    return prm.build_random_model(ModelArguments(init_from_config="tiny"), tokenizer, seed=seed, causal_lm=True)


def _args(tmp_path: Path, **overrides) -> TtcPRMConfig:
    values = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                  report_to="none", per_device_train_batch_size=2, max_length=256, seed=0, prm_style="implicit")
    values.update(overrides)
    return TtcPRMConfig(**values)


def _batch(tokenizer) -> tuple[dict[str, torch.Tensor], list[int]]:
    row = layout_row(tokenizer, PROBLEM, STEPS, None, system_prompt=SYSTEM_PROMPT, max_length=None)
    batch = LikelihoodHeadCollator(tokenizer.pad_token_id)(
        [{"input_ids": row.input_ids, "step_index": row.step_index, "labels": [1.0]}])
    return batch, row.input_ids


def _hand_rewards(policy, reference, input_ids: list[int], step_index: list[int]) -> list[float]:
    """beta * sum over each step's tokens of log P_policy - log P_reference, token by token."""
    with torch.no_grad():
        lp = torch.log_softmax(policy(torch.tensor([input_ids])).logits[0].float(), dim=-1)
        lr = torch.log_softmax(reference(torch.tensor([input_ids])).logits[0].float(), dim=-1)
    rewards = [0.0] * (max(step_index) + 1)
    for t in range(1, len(input_ids)):
        if step_index[t] >= 0:
            rewards[step_index[t]] += BETA * (lp[t - 1, input_ids[t]] - lr[t - 1, input_ids[t]]).item()
    return rewards


def test_the_reward_is_beta_times_the_log_ratio_summed_per_step(tokenizer, tmp_path: Path) -> None:
    from inference.scoring import load_scorer

    policy, reference = _lm(tokenizer, 0), _lm(tokenizer, 1)
    model = ImplicitPRMModel(policy, reference, beta=BETA)
    batch, input_ids = _batch(tokenizer)
    expected = _hand_rewards(policy, reference, input_ids, batch["step_index"][0].tolist())
    with torch.no_grad():
        rewards = model.rewards(batch["input_ids"], batch["attention_mask"], batch["step_index"])
        outcome = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
    assert rewards[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert outcome.shape == (1, 1, 2) and outcome[0, 0].tolist() == pytest.approx([0.0, sum(expected)], abs=1e-5)
    # The scorer reads the same rewards from the saved checkpoint and its reference.
    policy.save_pretrained(tmp_path / "prm")
    reference.save_pretrained(tmp_path / "reference")
    tokenizer.save_pretrained(tmp_path / "prm")
    PRMMetadata(prm_style="implicit", system_prompt=SYSTEM_PROMPT, reference_model=str(tmp_path / "reference"),
                beta=BETA).save(tmp_path / "prm")
    (result,) = load_scorer(tmp_path / "prm", device="cpu").score([PROBLEM], [STEPS])
    assert result.step_scores == pytest.approx([1 / (1 + math.exp(-r)) for r in expected], abs=1e-5)


def test_an_untrained_implicit_prm_gives_every_step_reward_zero(tokenizer, tmp_path: Path) -> None:
    model, _ = prm.build_model(ModelArguments(init_from_config="tiny"), tokenizer, _args(tmp_path))
    batch, _ = _batch(tokenizer)
    with torch.no_grad():
        rewards = model.rewards(batch["input_ids"], batch["attention_mask"], batch["step_index"])
    assert rewards.abs().max().item() == 0.0
    assert not any(p.requires_grad for p in model.reference.parameters())
    assert all(not name.startswith("_reference") for name in model.state_dict())  # never saved with the PRM
    assert (tmp_path / "out" / prm.REFERENCE_SUBDIR / "config.json").is_file()  # a random start is kept on disk


def test_the_loss_is_the_outcome_cross_entropy_and_the_label_is_all_steps_right(tokenizer, tmp_path: Path) -> None:
    records = [StepLabels(PROBLEM, STEPS, [True, False, False])]
    args = _args(tmp_path)
    dataset = prm.build_dataset(records, tokenizer, args)
    assert dataset[0]["labels"] == [0.0]
    assert outcome_label([True, True], "f") == 1.0 and outcome_label([True, False], "f") == 0.0
    model = ImplicitPRMModel(_lm(tokenizer, 0), _lm(tokenizer, 2), beta=BETA)
    trainer = prm.SoftLabelPRMTrainer(model=model, args=args, data_collator=LikelihoodHeadCollator(tokenizer.pad_token_id),
                                      train_dataset=dataset, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    loss = trainer.compute_loss(trainer.model, batch).item()
    with torch.no_grad():
        total = model.rewards(batch["input_ids"], batch["attention_mask"], batch["step_index"]).sum().item()
    assert loss == pytest.approx(-math.log(1 - 1 / (1 + math.exp(-total))), rel=1e-5)


def test_soft_labels_are_refused_naming_file_and_row_before_training(tokenizer, tmp_path: Path) -> None:
    path = write_step_labels([StepLabels(PROBLEM, STEPS, [True, True, True]),
                              StepLabels(PROBLEM, STEPS, [True, 0.75, False])], tmp_path / "mc.jsonl")
    with pytest.raises(PRMInputError, match=rf"{path} row 2: labels\[1\] is the soft label 0.75; prm_style implicit "
                                            "trains on outcome labels"):
        prm.load_records(DataArguments(train_files=[str(path)]), _args(tmp_path), tokenizer)


def test_a_reference_that_is_missing_is_refused_by_the_loader(tokenizer, tmp_path: Path) -> None:
    from inference.scoring import load_scorer

    _lm(tokenizer, 0).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    PRMMetadata(prm_style="implicit", reference_model=str(tmp_path / "gone"), beta=BETA).save(tmp_path)
    with pytest.raises(FileNotFoundError, match="reference_model .*gone is not a checkpoint directory"):
        load_scorer(tmp_path, device="cpu")


def test_a_lora_implicit_prm_uses_the_lm_without_its_adapters_as_reference(tokenizer, tmp_path: Path) -> None:
    from inference.scoring import load_scorer

    base_lm = _lm(tokenizer, 5)
    base_lm.save_pretrained(tmp_path / "lm")
    model_args = ModelArguments(model_name_or_path=str(tmp_path / "lm"), use_peft=True, lora_r=4, lora_alpha=8,
                                lora_target_modules=["q_proj", "v_proj"])
    model, base = prm.build_model(model_args, tokenizer, _args(tmp_path, implicit_beta=BETA))
    assert model.reference is None and prm.reference_model_path(model_args, _args(tmp_path)) == base
    model.eval()  # LoRA dropout off: the scorer reads the model in eval mode
    batch, input_ids = _batch(tokenizer)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["step_index"])
    with torch.no_grad():
        assert model.rewards(*inputs).abs().max().item() == 0.0  # LoRA starts at B = 0: the reference itself
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(2))
        rewards = model.rewards(*inputs)[0].tolist()
    out = tmp_path / "prm"
    model.save_checkpoint(out)
    tokenizer.save_pretrained(out)
    PRMMetadata(prm_style="implicit", base_model=base, is_peft_adapter=True, system_prompt=SYSTEM_PROMPT,
                reference_model=base, beta=BETA).save(out)
    # By hand: the adapted LM (merged by the loader) against the base checkpoint, token by token.
    scorer = load_scorer(out, device="cpu")
    expected = _hand_rewards(scorer.model, base_lm, input_ids, batch["step_index"][0].tolist())
    assert rewards == pytest.approx(expected, abs=1e-5)
    (result,) = scorer.score([PROBLEM], [STEPS])
    assert result.step_scores == pytest.approx([1 / (1 + math.exp(-r)) for r in expected], abs=1e-5)


def _outcome_file(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_outcome_rows_train_the_implicit_prm_on_their_label(tokenizer, tmp_path: Path) -> None:
    # TRL's unpaired-preference layout: the whole solution and one label.
    path = _outcome_file(tmp_path / "outcome.jsonl", [
        {"prompt": PROBLEM, "completion": "\n\n".join(STEPS), "label": True},
        {"prompt": PROBLEM, "completion": "\n\n".join(STEPS[:2] + ["Therefore, the final answer is: $\\boxed{7}$."]),
         "label": False},
    ])
    records, _ = prm.load_records(DataArguments(train_files=[str(path)], data_format="outcome"), _args(tmp_path),
                                  tokenizer)
    assert [record.completions for record in records] == [STEPS, STEPS[:2] + [
        "Therefore, the final answer is: $\\boxed{7}$."]]
    dataset = prm.build_dataset(records, tokenizer, _args(tmp_path))
    assert [row["labels"] for row in dataset] == [[1.0], [0.0]]


@pytest.mark.parametrize("style", ["step_tag", "chat_plus_minus", "token_classification", "likelihood_head"])
def test_outcome_labels_for_a_step_style_are_refused_naming_file_and_field(tokenizer, tmp_path: Path,
                                                                            style: str) -> None:
    path = _outcome_file(tmp_path / "outcome.jsonl", [{"prompt": PROBLEM, "completion": "\n\n".join(STEPS),
                                                       "label": True}])
    with pytest.raises(PRMInputError, match=rf"{path}: data_format outcome has one label per solution \(field "
                                            rf"'label'\), but prm_style {style} trains on a label per step"):
        prm.load_records(DataArguments(train_files=[str(path)], data_format="outcome"),
                         _args(tmp_path, prm_style=style), tokenizer)
