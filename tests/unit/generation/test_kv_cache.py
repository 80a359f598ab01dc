"""The reserved key/value buffers of `inference.kv_cache.preallocate` against a plain cache on a tiny Llama, and the
store of sequences already run (`SequenceStore`): longest-common-prefix lookup and its byte cap."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from inference.kv_cache import SequenceStore, preallocate, returned_cache


def test_reserved_buffers_give_the_plain_cache_s_logits_through_growth_and_reordering(tiny_policy_dir):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_policy_dir)).eval()
    prompt = torch.tensor([[1, 7, 8, 9, 10], [1, 11, 12, 13, 14]])
    steps = torch.tensor([[20, 21], [22, 23], [24, 25], [26, 27], [28, 29]])  # more steps than the reserve of 2
    runs = []
    for reserve in (None, 2):
        with torch.inference_mode():
            cache = returned_cache(model(input_ids=prompt, use_cache=True))
            if reserve is not None:
                preallocate(cache, reserve)
                assert {type(layer).__name__ for layer in cache.layers} == {"BufferedLayer"}
            logits = []
            for index, step in enumerate(steps):
                if index == 3:  # rows swap, then only the second row goes on
                    cache.reorder_cache(torch.tensor([1, 0]))
                    step = step.flip(0)
                if index == 4:
                    cache.reorder_cache(torch.tensor([1]))
                    step = step[1:]
                rows = step.shape[0]
                position = torch.full((rows, 1), prompt.shape[1] + index)
                output = model(input_ids=step[:, None], position_ids=position, cache=cache, use_cache=True)
                logits.append(output.logits[:, -1])
            runs.append((logits, cache.get_seq_length()))
    (plain, plain_length), (reserved, reserved_length) = runs
    assert reserved_length == plain_length == prompt.shape[1] + len(steps)
    for expected, actual in zip(plain, reserved, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def layers_of(length: int, value: float = 0.0) -> torch.Tensor:
    """Keys and values of two layers, [4, 1 head, length, 2] (32 bytes a position)."""
    return torch.full((4, 1, length, 2), value)


def test_sequence_store_finds_the_longest_common_prefix_not_only_exact_keys():
    store = SequenceStore(max_bytes=10**6)
    base = list(range(100, 140))  # 40 tokens: two whole blocks of 16
    store.add(base, [layers_of(40, 1.0)])
    store.add(base[:20] + [7] * 20, [layers_of(40, 2.0)])
    store.add([5] * 10, [layers_of(10)])  # shorter than a block: not kept
    assert len(store) == 2
    layers, length = store.longest_prefix(base[:35] + [9, 9])  # diverges at 35 from the first
    assert length == 35 and layers[0][0, 0, 0, 0].item() == 1.0
    layers, length = store.longest_prefix(base[:20] + [7] * 5)  # a prefix of the second, shorter than it
    assert length == 25 and layers[0][0, 0, 0, 0].item() == 2.0
    assert store.longest_prefix(base[:18] + [3] * 30)[1] == 18
    assert store.longest_prefix([1] + base)[1] == 0  # the first block differs: nothing shared
    assert store.longest_prefix(base[:10]) == (None, 0)  # shorter than a block


def test_sequence_store_drops_the_least_recently_used_past_its_byte_cap():
    store = SequenceStore(max_bytes=3 * 32 * 20)  # three sequences of 20 positions (32 bytes each, 2 layers)
    sequences = [[start] * 20 for start in range(4)]
    for sequence in sequences[:3]:
        store.add(sequence, [layers_of(20)])
    store.longest_prefix(sequences[0])  # the first is now the most recently used
    store.add(sequences[3], [layers_of(20)])
    assert store.bytes == 3 * 32 * 20 and len(store) == 3
    assert store.longest_prefix(sequences[1]) == (None, 0)  # dropped
    assert store.longest_prefix(sequences[0])[1] == 20 and store.longest_prefix(sequences[3])[1] == 20
    store.add(list(range(200)), [layers_of(200)])  # larger than the whole cap: not kept, nothing dropped
    assert len(store) == 3
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        SequenceStore(max_bytes=-1)


def test_sequence_store_counts_a_shared_segment_once_while_an_entry_holds_it():
    store = SequenceStore(max_bytes=10**6)
    prompt = layers_of(20, 1.0)  # 640 bytes, the prompt of two rows
    store.add(list(range(20)) + [1, 2], [prompt, layers_of(2, 2.0)])
    store.add(list(range(20)) + [3, 4, 5], [prompt, layers_of(3, 3.0)])
    assert store.bytes == 32 * (20 + 2 + 3)
    segments, length = store.longest_prefix(list(range(20)) + [3, 4, 9])
    assert length == 22 and segments[0] is prompt and segments[1][0, 0, 0, 0].item() == 3.0
    store._drop(tuple(range(20)) + (1, 2))
    assert store.bytes == 32 * (20 + 3)  # the prompt is still held by the other row
    store._drop(tuple(range(20)) + (3, 4, 5))
    assert store.bytes == 0 and len(store) == 0
    with pytest.raises(ValueError, match="22 tokens but keys and values of"):
        store.add(list(range(22)), [layers_of(20)])
