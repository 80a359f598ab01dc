"""Token-classification scorer: TRL's input layout, per-step softmax scores, order under batching, token budget."""

from __future__ import annotations

import pytest
import torch

from data_prep.prm_metadata import PRMMetadata
from inference.scoring import load_scorer
from inference.scoring.token_classification import TokenClassificationScorer, build_prm_input_ids
from tests.unit.generation.tiny_models import save_token_classifier

PROBLEM = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.", "He buys 4 more: 3 + 4 = 7.", "Therefore, the final answer is: $\\boxed{7}$."]
PAIRS = [
    (PROBLEM, STEPS),
    ("What is 12 - 5?", ["12 - 5 = 7."]),
    (PROBLEM, STEPS[:2]),
    ("Compute 2 * 3 * 4.", ["2 * 3 = 6.", "6 * 4 = 24.", "Then 24 + 0 = 24.", "Therefore, the final answer is: $\\boxed{24}$."]),
]


@pytest.mark.parametrize("separator", ["\n\n", "\n"])
def test_input_layout_matches_trl_tokenize_row(tiny_tokenizer, separator, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.prm import PRMTrainer

    features = {"prompt": PROBLEM, "completions": STEPS, "labels": [True, False, True]}
    trl_row = PRMTrainer.tokenize_row(
        features, tiny_tokenizer, separator, max_length=None, max_completion_length=None,
        train_on_last_step_only=False, is_eval=False,
    )
    input_ids, positions = build_prm_input_ids(tiny_tokenizer, PROBLEM, STEPS, separator)
    assert input_ids == trl_row["input_ids"]
    assert positions == [index for index, label in enumerate(trl_row["labels"]) if label != -100]
    assert input_ids[0] == tiny_tokenizer.bos_token_id


@pytest.fixture(scope="module")
def scorer(token_classifier_dir):
    return load_scorer(token_classifier_dir, device="cpu")


def test_one_softmax_score_per_step_at_the_separator(scorer):
    assert isinstance(scorer, TokenClassificationScorer)
    (result,) = scorer.score([PROBLEM], [STEPS])
    input_ids, positions = build_prm_input_ids(scorer.tokenizer, PROBLEM, STEPS, "\n\n")
    with torch.no_grad():
        logits = scorer.model(torch.tensor([input_ids])).logits[0]
    expected = torch.softmax(logits[positions], dim=-1)[:, 1].tolist()
    assert result.step_scores == pytest.approx(expected, abs=1e-6)
    assert all(0.0 <= score <= 1.0 for score in result.step_scores)
    assert result.num_tokens == len(input_ids)


def test_batched_scores_keep_input_order_and_match_scoring_alone(scorer):
    batched = scorer.score([p for p, _ in PAIRS], [s for _, s in PAIRS])
    assert [len(result.step_scores) for result in batched] == [3, 1, 2, 4]
    for (problem, steps), result in zip(PAIRS, batched, strict=True):
        (alone,) = scorer.score([problem], [steps])
        assert result.step_scores == pytest.approx(alone.step_scores, abs=1e-5)
        assert result.num_tokens == alone.num_tokens


def test_token_budget_splits_into_several_forward_passes(token_classifier_dir):
    problems, step_lists = [p for p, _ in PAIRS], [s for _, s in PAIRS]
    tight = load_scorer(token_classifier_dir, device="cpu", max_tokens_per_batch=120)
    lengths = [result.num_tokens for result in tight.score(problems, step_lists)]
    tight.forward_passes = 0
    # Longest first; a batch holds rows while rows x longest <= 120.
    longest_first = sorted(lengths, reverse=True)
    assert longest_first[0] * 2 > 120  # the longest pair goes alone, so there are at least two passes
    expected_passes = 0
    index = 0
    while index < len(longest_first):
        rows = max(1, 120 // longest_first[index])
        index += rows
        expected_passes += 1
    tight_results = tight.score(problems, step_lists)
    assert tight.forward_passes == expected_passes >= 2
    roomy = load_scorer(token_classifier_dir, device="cpu", max_tokens_per_batch=100_000)
    roomy_results = roomy.score(problems, step_lists)
    assert roomy.forward_passes == 1
    for fine, wide in zip(tight_results, roomy_results, strict=True):
        assert fine.step_scores == pytest.approx(wide.step_scores, abs=1e-5)


def test_positive_label_picks_the_class(tmp_path, tiny_tokenizer):
    scores = []
    for label in (0, 1):
        metadata = PRMMetadata(prm_style="token_classification", positive_label=label)
        directory = save_token_classifier(tmp_path / f"label{label}", tiny_tokenizer, seed=2, metadata=metadata)
        scores.append(load_scorer(directory, device="cpu").score([PROBLEM], [STEPS])[0].step_scores)
    assert [a + b for a, b in zip(*scores, strict=True)] == pytest.approx([1.0] * 3, abs=1e-6)
    assert scores[0] != pytest.approx(scores[1], abs=1e-3)


def test_single_logit_head_uses_sigmoid(tmp_path, tiny_tokenizer):
    directory = save_token_classifier(
        tmp_path / "one_logit", tiny_tokenizer, num_labels=1, metadata=PRMMetadata(prm_style="token_classification")
    )
    scorer = load_scorer(directory, device="cpu")
    (result,) = scorer.score([PROBLEM], [STEPS])
    input_ids, positions = build_prm_input_ids(scorer.tokenizer, PROBLEM, STEPS, "\n\n")
    with torch.no_grad():
        logits = scorer.model(torch.tensor([input_ids])).logits[0, positions, 0]
    assert result.step_scores == pytest.approx(torch.sigmoid(logits).tolist(), abs=1e-6)


def test_bad_calls_are_errors(scorer):
    with pytest.raises(ValueError, match="2 problems but 1 step lists"):
        scorer.score([PROBLEM, PROBLEM], [STEPS])
    with pytest.raises(ValueError, match="pair 0 has no steps"):
        scorer.score([PROBLEM], [[]])
