"""Incremental PRM scoring: cached prefixes score as a full forward does, bidirectional models opt out, LRU bound."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from inference.scoring import load_scorer
from inference.scoring.prefix_cache import CachedSequence, PrefixKVCache, cache_keyword, check_causal
from inference.scoring.token_classification import TokenClassificationScorer, build_prm_input_ids

PROBLEM = "Compute 2 * 3 * 4."
STEPS = ["2 * 3 = 6.", "6 * 4 = 24.", "Then 24 + 0 = 24.", "Therefore, the final answer is: $\\boxed{24}$."]
OTHER = "What is 12 - 5?"


def full_forward_scores(scorer: TokenClassificationScorer, problem: str, steps: list[str]) -> list[float]:
    """The reference: one plain forward over the whole sequence, softmax at each step's position."""
    input_ids, positions = build_prm_input_ids(scorer.tokenizer, problem, steps)
    with torch.no_grad():
        logits = scorer.model(torch.tensor([input_ids])).logits[0].float()
    return torch.softmax(logits[positions], dim=-1)[:, 1].tolist()


def tree_rounds() -> list[tuple[list[str], list[list[str]]]]:
    """Score calls shaped like tree search: each round's candidates extend the previous round's."""
    rounds = []
    for depth in range(1, len(STEPS) + 1):
        problems = [PROBLEM, PROBLEM, OTHER]
        detour = STEPS[: depth - 1] + [f"A detour {depth}."]
        step_lists = [STEPS[:depth], detour, [f"12 - {depth} = {12 - depth}."] * depth]
        rounds.append((problems, step_lists))
    return rounds


def test_scores_through_cached_prefixes_equal_a_full_forward(token_classifier_dir):
    scorer = load_scorer(token_classifier_dir, device="cpu")
    assert isinstance(scorer, TokenClassificationScorer)
    for problems, step_lists in tree_rounds():
        results = scorer.score(problems, step_lists)
        for problem, steps, result in zip(problems, step_lists, results, strict=True):
            assert result.step_scores == pytest.approx(full_forward_scores(scorer, problem, steps), abs=1e-5)
            assert result.num_tokens == len(build_prm_input_ids(scorer.tokenizer, problem, steps)[0])
    assert scorer._prefix_caching is True
    # From round 2 on, the first candidate extends round 1's first candidate and the third its own predecessor.
    assert scorer.prefix_cache.hits >= 2 * (len(STEPS) - 1)
    assert len(scorer.prefix_cache) > 0


def test_forward_tokens_count_what_ran_after_the_cached_prefix(token_classifier_dir):
    cached = load_scorer(token_classifier_dir, device="cpu")
    whole = load_scorer(token_classifier_dir, device="cpu", prefix_cache_bytes=0)
    lengths = [len(build_prm_input_ids(cached.tokenizer, PROBLEM, STEPS[:depth])[0]) for depth in (1, 2)]
    (first,) = cached.score([PROBLEM], [STEPS[:1]])
    assert (first.num_tokens, first.forward_tokens) == (lengths[0], lengths[0])
    # One step further: only the new step's tokens ran; the same pair twice in one call runs once.
    child, repeat = cached.score([PROBLEM, PROBLEM], [STEPS[:2], STEPS[:2]])
    assert (child.num_tokens, child.forward_tokens, repeat.forward_tokens) == (lengths[1], lengths[1] - lengths[0], 0)
    (again,) = cached.score([PROBLEM], [STEPS[:2]])
    assert again.forward_tokens == 0  # answered from the cache
    assert cached.forward_tokens == lengths[1]
    assert [r.forward_tokens for r in whole.score([PROBLEM, PROBLEM], [STEPS[:2], STEPS[:2]])] == [lengths[1]] * 2


def test_turned_off_scores_the_same(token_classifier_dir):
    cached = load_scorer(token_classifier_dir, device="cpu")
    whole = TokenClassificationScorer(
        cached.model, cached.tokenizer, path=str(token_classifier_dir), device=cached.device,
        max_tokens_per_batch=cached.max_tokens_per_batch, prefix_cache_bytes=0,
    )
    for problems, step_lists in tree_rounds():
        for a, b in zip(cached.score(problems, step_lists), whole.score(problems, step_lists), strict=True):
            assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)
            assert a.num_tokens == b.num_tokens
    assert whole._prefix_caching is False
    assert len(whole.prefix_cache) == 0


def test_repeated_and_duplicate_pairs_are_answered_from_the_cache(token_classifier_dir):
    scorer = load_scorer(token_classifier_dir, device="cpu")
    first = scorer.score([PROBLEM, PROBLEM], [STEPS, STEPS])
    assert first[0] == first[1]
    entries = len(scorer.prefix_cache)
    again = scorer.score([PROBLEM], [STEPS])
    assert again[0] == first[0]
    assert len(scorer.prefix_cache) == entries


def test_a_bidirectional_model_is_scored_whole(tiny_tokenizer):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=512, num_labels=2, pad_token_id=tiny_tokenizer.pad_token_id,
    )
    model = BertForTokenClassification(config).eval()
    scorer = TokenClassificationScorer(model, tiny_tokenizer, path="bert-prm", device=torch.device("cpu"),
                                       max_tokens_per_batch=4096)
    (result,) = scorer.score([PROBLEM], [STEPS])
    assert scorer._prefix_caching is False
    assert len(scorer.prefix_cache) == 0
    assert result.step_scores == pytest.approx(full_forward_scores(scorer, PROBLEM, STEPS), abs=1e-6)


def test_check_causal_is_zero_for_a_llama_prm(token_classifier_dir):
    scorer = load_scorer(token_classifier_dir, device="cpu")
    input_ids, _ = build_prm_input_ids(scorer.tokenizer, PROBLEM, STEPS)
    keyword = cache_keyword(scorer.model)
    assert keyword in ("cache", "past_key_values")
    assert check_causal(scorer.model, keyword, scorer.pad_id, scorer.device, input_ids) < 1e-5


def entry(ids: tuple[int, ...], length: int) -> CachedSequence:
    tensor = torch.zeros((1, length, 4))  # 16 bytes per position, keys and values each
    return CachedSequence(ids, (len(ids) - 1,), (0.5,), (tensor,), (tensor.clone(),))


def test_lru_keeps_the_newest_within_the_byte_budget():
    cache = PrefixKVCache(max_bytes=3 * 2 * 16 * 10)  # room for three 10-position entries
    for first in range(4):
        cache.put(entry((first, 1, 2), 10))
    assert cache.get((0, 1, 2)) is None
    assert [cache.get((k, 1, 2)) is not None for k in (1, 2, 3)] == [True, True, True]
    assert cache.bytes == 3 * 2 * 16 * 10
    cache.put(entry((9,), 1000))  # larger than the whole budget: not kept, nothing evicted
    assert cache.get((9,)) is None and len(cache) == 3


def test_longest_prefix_is_step_aligned():
    cache = PrefixKVCache(max_bytes=1 << 20)
    cache.put(entry((7, 8, 9), 3))  # one step scored at position 2
    assert cache.longest_prefix((7, 8, 9, 10, 11), [2, 4]) is not None
    assert cache.longest_prefix((7, 8, 9, 10, 11), [3, 4]) is None  # another step boundary: no reuse
    assert (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        PrefixKVCache(-1)


@pytest.mark.parametrize("style", ["chat_plus_minus", "step_tag"])
def test_judge_styles_score_through_cached_prefixes_as_a_full_forward(causal_lm_dir, style):
    cached = load_scorer(causal_lm_dir, prm_style=style, device="cpu")
    whole = load_scorer(causal_lm_dir, prm_style=style, device="cpu", prefix_cache_bytes=0)
    for problems, step_lists in tree_rounds():
        for a, b in zip(cached.score(problems, step_lists), whole.score(problems, step_lists), strict=True):
            assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)
            assert a.num_tokens == b.num_tokens
    assert (cached._prefix_caching, whole._prefix_caching) == (True, False)
    # The +/- conversation of a parent ends with its last answer and turn end, which are not a prefix of its
    # child's: the cache keeps each solution only through its last judged position, so children still hit.
    assert cached.prefix_cache.hits >= 2 * (len(STEPS) - 1)
    for entry in cached.prefix_cache._entries.values():
        assert len(entry.input_ids) == entry.score_positions[-1] + 1
        assert all(layer.shape[1] == len(entry.input_ids) for layer in entry.keys)
