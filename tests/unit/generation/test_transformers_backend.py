"""TransformersGenerator on a tiny random Llama: order, stop strings, finish reasons, token counts, seeding, batching."""

from __future__ import annotations

import itertools
from dataclasses import replace
import shutil
import string
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from inference.generation.common import cut_after_first_stop
from inference.generation.transformers_backend import (
    TransformersGenerator,
    _StopStringWatcher,
)
from inference.types import GenerationRequest, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=16)
REQUESTS = [
    GenerationRequest(problem="What is 2+3?"),
    GenerationRequest(problem="Compute 7*8 then add 1.", prefix="First, 7*8 = 56.\n\n"),
    GenerationRequest(problem="Find 9-4."),
]


def raw_greedy_tokens(generator: TransformersGenerator, request: GenerationRequest, max_tokens: int) -> list[int]:
    """The reference: the same prompt through model.generate alone, greedy, no stop strings, EOS ignored."""
    ids = torch.tensor([generator.prompt_token_ids([request])[0]])
    with torch.inference_mode():
        output = generator.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
            pad_token_id=generator.pad_id,
        )
    return output[0, ids.shape[1] :].tolist()


def tokens_to_first_stop(tokenizer, tokens: list[int], stop: list[str]) -> int:
    """The documented rule: the smallest k whose decoded first k tokens contain a stop string."""
    for k in range(1, len(tokens) + 1):
        if cut_after_first_stop(tokenizer.decode(tokens[:k], skip_special_tokens=True), stop) is not None:
            return k
    raise AssertionError("no stop string in the reference tokens")


def clean_piece(tokenizer, tokens: list[int], start: int, next_chars: int = 1) -> int:
    """Index >= start of a token whose text and the next token's (>= next_chars long) are printable ASCII."""
    for index in range(start, len(tokens) - 1):
        text = tokenizer.decode(tokens[index : index + 2])
        following = tokenizer.decode(tokens[index + 1 : index + 2])
        if text.isascii() and text.isprintable() and len(text.strip()) >= 2 and len(following) >= next_chars:
            return index
    raise AssertionError("no clean piece in the greedy output")


def test_identity_and_parameter_count(tiny_generator, tiny_policy_dir):
    assert tiny_generator.name == tiny_policy_dir.name
    assert tiny_generator.num_parameters == sum(p.numel() for p in tiny_generator.model.parameters())


def test_n_completions_per_request_in_request_order(tiny_generator):
    batched = tiny_generator.generate(REQUESTS, n=2, params=GREEDY)
    assert [len(completions) for completions in batched] == [2, 2, 2]
    for request, completions in zip(REQUESTS, batched, strict=True):
        alone = tiny_generator.generate([request], n=1, params=GREEDY)[0][0]
        assert completions[0] == alone
        assert completions[1] == alone  # greedy: every sample is the same


def test_length_finish_counts_every_token(tiny_generator):
    reference = raw_greedy_tokens(tiny_generator, REQUESTS[0], 16)
    (completion,) = tiny_generator.generate(REQUESTS[:1], n=1, params=GREEDY)[0]
    assert completion.finish_reason == "length"
    assert completion.num_tokens == 16
    assert completion.text == tiny_generator.tokenizer.decode(reference, skip_special_tokens=True)


@pytest.mark.parametrize("overhang", [False, True], ids=["whole-tokens", "stop-ends-inside-a-token"])
def test_stop_string_is_kept_and_counted_to_the_completing_token(tiny_generator, overhang):
    tokenizer = tiny_generator.tokenizer
    overhangs = 0
    for request in REQUESTS:
        reference = raw_greedy_tokens(tiny_generator, request, 16)
        index = clean_piece(tokenizer, reference, 2, next_chars=2 if overhang else 1)
        if overhang:
            # Last character of one token + first character of the next: the completing token runs past the stop.
            stop = tokenizer.decode(reference[index : index + 1])[-1] + tokenizer.decode(reference[index + 1 : index + 2])[0]
        else:
            stop = tokenizer.decode(reference[index : index + 2])
        expected_tokens = tokens_to_first_stop(tokenizer, reference, [stop])
        expected_text = cut_after_first_stop(tokenizer.decode(reference[:expected_tokens], skip_special_tokens=True), [stop])

        (completion,) = tiny_generator.generate([request], n=1, params=GREEDY, stop=[stop])[0]
        assert completion.finish_reason == "stop"
        assert completion.text == expected_text
        assert completion.text.endswith(stop)
        assert completion.num_tokens == expected_tokens
        overhangs += len(tokenizer.decode(reference[:expected_tokens], skip_special_tokens=True)) > len(completion.text)
    assert (overhangs > 0) == overhang


def test_stop_strings_are_matched_in_generated_text_only(tiny_tokenizer):
    newline = tiny_tokenizer.encode("\n", add_special_tokens=False)
    prompt = tiny_tokenizer.encode("Step 1.\n", add_special_tokens=False)
    watcher = _StopStringWatcher(tiny_tokenizer, ["\n\n"], len(prompt), eos_ids={tiny_tokenizer.eos_token_id}, batch=1)
    first = watcher(torch.tensor([prompt + newline]), None)
    assert first.tolist() == [False]  # "\n" + generated "\n" spans the boundary: not a stop
    second = watcher(torch.tensor([prompt + newline + newline]), None)
    assert second.tolist() == [True]
    assert watcher.stopped_at == [2]


def test_eos_finish_cuts_before_eos_and_counts_it(tiny_generator, tiny_policy_dir, tmp_path):
    reference = raw_greedy_tokens(tiny_generator, REQUESTS[0], 16)
    # Declare the 4th greedy token the EOS of a copy of the checkpoint; the backend reads generation_config.
    eos_at = next(i for i in range(3, 16) if reference[i] not in reference[:i])
    copy = tmp_path / "eos_policy"
    shutil.copytree(tiny_policy_dir, copy)
    model = AutoModelForCausalLM.from_pretrained(copy)
    model.generation_config.eos_token_id = reference[eos_at]
    model.generation_config.save_pretrained(copy)
    generator = TransformersGenerator(str(copy), device="cpu")
    (completion,) = generator.generate(REQUESTS[:1], n=1, params=GREEDY, stop=["\n\n\n\n\n"])[0]
    assert completion.finish_reason == "eos"
    assert completion.num_tokens == eos_at + 1
    assert completion.text == generator.tokenizer.decode(reference[:eos_at], skip_special_tokens=True)


def test_greedy_is_deterministic(tiny_generator):
    assert tiny_generator.generate(REQUESTS, n=1, params=GREEDY) == tiny_generator.generate(REQUESTS, n=1, params=GREEDY)


def test_same_seed_same_samples_other_seed_other_samples(tiny_generator):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=12, seed=11)
    first = tiny_generator.generate(REQUESTS, n=3, params=params)
    again = tiny_generator.generate(REQUESTS, n=3, params=params)
    other = tiny_generator.generate(REQUESTS, n=3, params=SamplingParams(temperature=1.0, top_p=0.95, max_tokens=12, seed=12))
    assert first == again
    assert first != other
    texts = [completion.text for completion in first[0]]
    assert len(set(texts)) == 3  # n samples of one request differ


def test_unseeded_calls_draw_from_the_backend_seed(tiny_policy_dir):
    params = SamplingParams(temperature=1.0, max_tokens=10, seed=None)
    one = TransformersGenerator(str(tiny_policy_dir), device="cpu", seed=5)
    two = TransformersGenerator(str(tiny_policy_dir), device="cpu", seed=5)
    first_calls = [one.generate(REQUESTS[:1], n=2, params=params) for _ in range(2)]
    assert first_calls == [two.generate(REQUESTS[:1], n=2, params=params) for _ in range(2)]
    assert first_calls[0] != first_calls[1]


def test_batch_size_splits_into_generate_calls_with_the_same_greedy_result(tiny_policy_dir, tiny_generator):
    small = TransformersGenerator(str(tiny_policy_dir), device="cpu", batch_size=2)
    result = small.generate(REQUESTS, n=1, params=GREEDY)
    assert small.generate_calls == 2  # 3 sequences, 2 per call
    assert result == tiny_generator.generate(REQUESTS, n=1, params=GREEDY)
    small.generate(REQUESTS, n=2, params=SamplingParams(temperature=1.0, max_tokens=4, seed=0))
    assert small.generate_calls == 2 + 3  # 6 sampled sequences, 2 per call


def test_greedy_decodes_each_request_once_whatever_n(tiny_policy_dir):
    one_per_call = TransformersGenerator(str(tiny_policy_dir), device="cpu", batch_size=1)
    (completions,) = one_per_call.generate(REQUESTS[:1], n=3, params=GREEDY)
    assert one_per_call.generate_calls == 1
    assert len(completions) == 3 and completions[0] == completions[1] == completions[2]


def test_rows_repeating_a_prompt_prefill_it_once_and_complete_as_without():
    # The shipped policy (a trained model, so its completions depend on every position) on synthetic problems.
    from data_prep.synthetic import generate_problems, gold_steps

    policy = str(Path(__file__).resolve().parents[3] / "checkpoints" / "policy-small")
    # Reuse across calls off: this checks the sharing within a call (the second call would reuse the first's).
    shared = TransformersGenerator(policy, device="cpu", seed=0, kv_reuse_bytes=0)
    # One row per batch: every row prefills its own prompt (samples do not depend on the batch).
    alone = TransformersGenerator(policy, device="cpu", seed=0, kv_reuse_bytes=0, batch_size=1)
    plain = TransformersGenerator(policy, device="cpu", seed=0)
    plain._cache_keyword = None  # greedy reference: model.generate
    prefills = []  # (rows, positions) of every forward over more than one position: the prefills
    shared.model.register_forward_pre_hook(
        lambda module, args, kwargs: prefills.append(tuple(kwargs["input_ids"].shape))
        if kwargs["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    problems = generate_problems("test", 1, seed=3)[1:4]  # prompts of different lengths: left padding
    requests = [GenerationRequest(problem.problem) for problem in problems]
    # A beam one step in, twice (two children of one parent), beside fresh requests.
    beam = GenerationRequest(problems[2].problem, prefix=gold_steps(problems[2])[0] + "\n\n")
    requests += [beam, beam]
    sampled = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=40, seed=4)
    with_sharing = shared.generate(requests, n=3, params=sampled, stop=["\n\n"])
    without = alone.generate(requests, n=3, params=sampled, stop=["\n\n"])
    assert [[(c.text, c.num_tokens, c.finish_reason) for c in per] for per in with_sharing] == [
        [(c.text, c.num_tokens, c.finish_reason) for c in per] for per in without]
    greedy = SamplingParams(temperature=0.0, max_tokens=40)
    assert shared.generate(requests, n=1, params=greedy) == plain.generate(requests, n=1, params=greedy)
    # Both calls prefilled the 4 distinct prompts once (the 15 and 5 rows took copies of their keys and values).
    width = max(map(len, shared.prompt_token_ids(requests)))
    assert prefills == [(4, width), (4, width)]
    # Forward tokens: each distinct prompt prefilled once (all but the token whose forward gives the first new
    # one), against once per row without sharing; one per generated token either way.
    prompts = [len(ids) - 1 for ids in shared.prompt_token_ids(requests)]
    generated = sum(c.num_tokens for per in with_sharing for c in per)
    assert sum(c.forward_tokens for per in with_sharing for c in per) == generated + sum(prompts[:4])
    assert sum(c.forward_tokens for per in without for c in per) == generated + 3 * sum(prompts)
    # Greedy n > 1 decodes once: the copies ran nothing.
    (copies,) = shared.generate(requests[:1], n=3, params=greedy)
    assert [c.forward_tokens for c in copies] == [prompts[0] + copies[0].num_tokens, 0, 0]
    assert prefills[2:] == [(1, prompts[0] + 1)]


def test_prefix_is_appended_after_the_open_assistant_turn(tiny_generator):
    ids = tiny_generator.prompt_token_ids(REQUESTS[1:2])[0]
    text = tiny_generator.tokenizer.decode(ids)
    assert text.endswith("<|assistant|>\nFirst, 7*8 = 56.\n\n")
    assert ids.count(tiny_generator.tokenizer.bos_token_id) == 1


def test_empty_request_list_and_bad_batch_size(tiny_generator, tiny_policy_dir):
    assert tiny_generator.generate([], n=2, params=GREEDY) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        TransformersGenerator(str(tiny_policy_dir), device="cpu", batch_size=0)


def shipped_policy() -> TransformersGenerator:
    return TransformersGenerator(str(Path(__file__).resolve().parents[3] / "checkpoints" / "policy-small"),
                                 device="cpu", batch_size=64, seed=0)


def tree_step_requests() -> list[GenerationRequest]:
    """Prefixes of 1-3 gold steps of three synthetic problems: prompts of different lengths, one step each."""
    from data_prep.synthetic import generate_problems, gold_steps

    problems = [p for p in generate_problems("test", 2, seed=0) if p.level >= 3][:3]
    return [GenerationRequest(p.problem, "\n\n".join(gold_steps(p)[:k]) + "\n\n") for p in problems for k in (1, 2, 3)]


def test_decode_loop_equals_plain_generate_per_prompt_on_greedy_decoding():
    # The plain path: each prompt alone through model.generate (no padding, no batch), with transformers' own
    # stop-string criterion; the loop decodes all rows in one left-padded batch that rows leave as they finish.
    generator = shipped_policy()
    requests = tree_step_requests()
    decode_rows = []
    generator.model.register_forward_pre_hook(
        lambda module, args, kwargs: decode_rows.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[1] == 1 else None, with_kwargs=True)
    for stop in (["\n\n"], None):
        params = SamplingParams(temperature=0.0, max_tokens=48)
        completions = generator.generate(requests, n=1, params=params, stop=stop)
        for request, (completion,) in zip(requests, completions, strict=True):
            ids = torch.tensor([generator.prompt_token_ids([request])[0]])
            with torch.inference_mode():
                output = generator.model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=48,
                    pad_token_id=generator.pad_id, stop_strings=stop, tokenizer=generator.tokenizer)
            tokens = output[0, ids.shape[1]:].tolist()
            assert completion.num_tokens == len(tokens)  # generate ends a row at its stop, EOS or max_new_tokens
            text = generator.tokenizer.decode(tokens, skip_special_tokens=True)
            if completion.finish_reason == "stop":
                assert text.endswith("\n\n") and completion.text == cut_after_first_stop(text, stop)
            else:
                assert completion.text == text
        assert ("stop" in {c.finish_reason for (c,) in completions}) == bool(stop)
    # Rows left the batch as they finished: the decode forwards shrank from all 9 rows.
    assert decode_rows[0] == len(requests) and min(decode_rows) < len(requests)
    assert all(later <= earlier for earlier, later in itertools.pairwise(decode_rows) if later != len(requests))


def test_seeded_samples_do_not_depend_on_the_batch_although_rows_leave_it():
    # Each sample draws from its own uniforms (call seed, prompt, occurrence, sample number): the batch size, the
    # other requests of the call, their order and which rows left the batch first do not change it.
    one_batch, small_batches = shipped_policy(), shipped_policy()
    small_batches.batch_size = 5
    requests = tree_step_requests()
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=40, seed=7)
    from inference.kv_cache import _buffered_layer

    layer = _buffered_layer()
    original = layer.reorder_cache
    compactions: list[int] = []

    def recording(self, beam_idx):
        compactions.append(len(beam_idx))
        original(self, beam_idx)

    layer.reorder_cache = recording
    try:
        completions = one_batch.generate(requests, n=3, params=params, stop=["\n\n"])
    finally:
        layer.reorder_cache = original
    assert compactions and min(compactions) < len(requests) * 3  # rows did leave the batch
    texts = [[c.text for c in per] for per in completions]

    def sampled_texts(generator, asked, seed=7):
        generator.forget_cached()  # no keys and values reused from the calls before (float-level differences)
        return [[c.text for c in per]
                for per in generator.generate(asked, n=3, params=replace(params, seed=seed), stop=["\n\n"])]

    assert sampled_texts(small_batches, requests) == texts
    assert sampled_texts(one_batch, requests[::-1])[::-1] == texts
    assert sampled_texts(one_batch, requests[:1]) == texts[:1]
    assert len({text for per in texts for text in per}) > len(requests)  # samples, not copies
    # A prompt asked twice in one call gets two different sets of samples (its occurrence), the first as alone.
    varied = max(range(len(requests)), key=lambda index: len(set(texts[index])))  # the least confident request
    twice = sampled_texts(one_batch, [requests[varied]] * 2)
    assert twice[0] == texts[varied] and twice[1] != texts[varied]
    # Another seed, other samples.
    assert sampled_texts(one_batch, requests, seed=8) != texts


def test_stop_strings_are_checked_only_where_the_new_token_can_end_one(tiny_tokenizer):
    from inference.generation.transformers_backend import stop_enders

    table = stop_enders(tiny_tokenizer, ["\n\n"])
    newline = tiny_tokenizer.encode("\n", add_special_tokens=False)
    letter = tiny_tokenizer.encode("a", add_special_tokens=False)
    assert all(table[token] for token in newline) and not any(table[token] for token in letter)
    assert table[tiny_tokenizer.eos_token_id]  # decodes to nothing on its own: checked, to be safe
    # No ASCII text token without a newline can end "\n\n" (a lone high byte can: it decodes to U+FFFD alone).
    ascii_tokens = {token for char in string.printable for token in tiny_tokenizer.encode(char, add_special_tokens=False)}
    assert {token for token in ascii_tokens if table[token]} == set(newline)
    # Ids past the tokenizer's (a padded embedding) are checked; a stop string ending in a space marks every token.
    assert stop_enders(tiny_tokenizer, ["\n\n"], vocab_size=len(table) + 3)[len(table):] == [True] * 3
    assert all(stop_enders(tiny_tokenizer, ["Step "]))
    # The decode loop decodes only such rows: far fewer decodes than rows x steps.
    generator = shipped_policy()
    decodes = []
    decode = generator.tokenizer.decode
    generator.tokenizer.decode = lambda *args, **kwargs: decodes.append(1) or decode(*args, **kwargs)
    try:
        completions = generator.generate(tree_step_requests(), n=4, params=SamplingParams(0.8, 1.0, 40, seed=0),
                                         stop=["\n\n"])
    finally:
        generator.tokenizer.decode = decode
    generated = sum(c.num_tokens for per in completions for c in per)
    final_decodes = sum(len(per) for per in completions)
    assert len(decodes) - final_decodes < generated / 4


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_tree_search_calls_reuse_earlier_keys_and_values_and_complete_as_without():
    # Beam-search-shaped calls: a prompt, then prefixes extending its output by whole generated steps, and one
    # prefix cut inside a generated token (its re-tokenization diverges from the generated ids there).
    reusing, fresh = shipped_policy(), shipped_policy()
    fresh.kv_store = None
    assert reusing.kv_store is not None and len(reusing.kv_store) == 0
    params = SamplingParams(temperature=0.0, max_tokens=48)
    problems = [request.problem for request in tree_step_requests()[::3]]
    run: list[tuple[list[int], list[int]]] = []  # (prompt ids, generated ids fed back) of every row run so far
    prefixes = [""] * len(problems)
    previous: list[tuple[str, list[int]]] = []  # (prefix, generated ids fed back) of the last call's requests
    diverged = False
    for call in range(4):
        if call == 3:  # the last step cut inside its first multi-character token instead
            prefixes = []
            for prefix, step_ids in previous:
                index = next(i for i, t in enumerate(step_ids) if len(reusing.tokenizer.decode([t])) > 1)
                prefixes.append(prefix + reusing.tokenizer.decode(step_ids[: index + 1], skip_special_tokens=True)[:-1])
        requests = [GenerationRequest(problem, prefix) for problem, prefix in zip(problems, prefixes, strict=True)]
        completions = reusing.generate(requests, n=2, params=params, stop=["\n\n"])
        assert completions == fresh.generate(requests, n=2, params=params, stop=["\n\n"])
        stored = [prompt + generated for prompt, generated in run]  # before this call (its rows share one prefill)
        for request, (completion, copy) in zip(requests, completions, strict=True):
            ids = reusing.prompt_token_ids([request])[0]
            # The store finds a sequence sharing at least one whole block of first tokens, and the longest such.
            longest = max((common_prefix(ids, sequence) for sequence in stored), default=0)
            reused = min(longest, len(ids) - 1) if longest >= reusing.kv_store.BLOCK else 0
            if call > 0:
                assert reused > len(reusing.prompt_token_ids([GenerationRequest(request.problem)])[0]) - 1
            if call == 3:
                closest = max(stored, key=lambda sequence: common_prefix(ids, sequence))
                diverged |= common_prefix(ids, closest) < min(len(ids), len(closest))
            assert completion.forward_tokens == len(ids) - 1 - reused + completion.num_tokens
            assert copy.forward_tokens == 0
            generated = raw_greedy_tokens(reusing, request, completion.num_tokens)
            run.append((ids, generated[: completion.num_tokens - 1]))  # the last token is never fed back
        previous = [(prefix, generated) for prefix, (_, generated) in zip(prefixes, run[-len(problems):], strict=True)]
        prefixes = [prefix + per[0].text for prefix, per in zip(prefixes, completions, strict=True)]
    assert diverged
    assert len(reusing.kv_store) == len(run)  # one sequence per distinct row (greedy copies are not decoded)


def test_kv_reuse_bytes_bounds_the_store_and_zero_turns_it_off(tiny_policy_dir):
    off = TransformersGenerator(str(tiny_policy_dir), device="cpu", kv_reuse_bytes=0)
    assert off.kv_store is None
    small = TransformersGenerator(str(tiny_policy_dir), device="cpu", kv_reuse_bytes=60_000)
    small.generate(REQUESTS, n=4, params=SamplingParams(temperature=1.0, max_tokens=16, seed=0))
    assert 0 < len(small.kv_store) < 12 and small.kv_store.bytes <= 60_000
    with pytest.raises(ValueError, match="kv_reuse_bytes must be >= 0 "):
        TransformersGenerator(str(tiny_policy_dir), device="cpu", kv_reuse_bytes=-1)
