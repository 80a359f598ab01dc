"""The reserved key/value buffers of `inference.kv_cache.preallocate` against a plain cache on a tiny Llama."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from inference.kv_cache import preallocate, returned_cache


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
