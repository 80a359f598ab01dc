"""Out of memory halves the batch and retries (the policy's generate batches, the PRM's token budget), keeps the
smaller size for later batches, and at the smallest size ends in one clear error."""

from __future__ import annotations

import pytest
import torch

from inference.generation.transformers_backend import TransformersGenerator
from inference.memory import OutOfMemory, halve_on_oom, is_out_of_memory
from inference.scoring.batching import BatchedPRMScorer, PRMInput
from inference.types import GenerationRequest, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=6)


def oom_above(limit: int, calls: list[int]):
    """An attempt that records its size and runs out of memory above `limit`."""
    def attempt(size: int) -> str:
        calls.append(size)
        if size > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} GiB")
        return f"done at {size}"
    return attempt


def test_halves_until_it_fits_and_returns_the_size_that_did():
    calls: list[int] = []
    assert halve_on_oom(oom_above(5, calls), 16, what="generate", knob="batch_size") == ("done at 4", 4)
    assert calls == [16, 8, 4]


def test_out_of_memory_at_the_smallest_size_is_one_clear_error():
    calls: list[int] = []
    with pytest.raises(OutOfMemory, match=r"^policy p: generate: out of memory even at policy.batch_size=1; "
                                          r"shorten the inputs \(max_tokens\)") as error:
        halve_on_oom(oom_above(0, calls), 6, what="policy p: generate", knob="policy.batch_size")
    assert calls == [6, 3, 1] and "\n" not in str(error.value)


def test_other_errors_pass_unchanged_and_the_cpu_allocator_counts_as_out_of_memory():
    def broken(size: int) -> None:
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug, not memory"):
        halve_on_oom(broken, 8, what="x", knob="k")
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 30720313344 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_the_generator_halves_its_batch_on_oom_and_returns_every_completion(tiny_policy_dir, monkeypatch):
    requests = [GenerationRequest(problem=f"What is {i}+3?") for i in range(5)]
    reference = TransformersGenerator(str(tiny_policy_dir), device="cpu", batch_size=8).generate(
        requests, n=1, params=GREEDY)
    generator = TransformersGenerator(str(tiny_policy_dir), device="cpu", batch_size=8)
    real_batch = generator._generate_batch
    sizes: list[int] = []

    def fake_device(batch, params, stop, uniforms=None):  # a device that holds 2 sequences at a time
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_batch(batch, params, stop, uniforms)

    monkeypatch.setattr(generator, "_generate_batch", fake_device)
    assert generator.generate(requests, n=1, params=GREEDY) == reference  # greedy: the same text whatever the batch
    assert sizes == [5, 4, 2, 2, 1] and generator.batch_size == 2  # 8 -> 4 -> 2, then kept
    # Samples do not depend on the batch either: the halved batches draw what one batch of 8 draws.
    sampled = SamplingParams(temperature=1.0, max_tokens=12, seed=3)
    whole = TransformersGenerator(str(tiny_policy_dir), device="cpu", batch_size=8, kv_reuse_bytes=0)
    generator.batch_size, generator.kv_store, sizes[:] = 8, None, []
    texts = [[c.text for c in per] for per in generator.generate(requests, n=2, params=sampled)]
    assert sizes[:2] == [8, 4] and texts == [[c.text for c in per] for per in whole.generate(requests, n=2,
                                                                                             params=sampled)]
    with pytest.raises(OutOfMemory, match="out of memory even at policy.batch_size=1"):
        monkeypatch.setattr(generator, "_generate_batch", lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError()))
        generator.generate(requests, n=1, params=GREEDY)


class _FakeModel:
    config = type("Config", (), {"max_position_embeddings": None})()

    def to(self, device):
        return self

    def eval(self):
        return self

    def num_parameters(self):
        return 1


class _TokensPerPassScorer(BatchedPRMScorer):
    """A PRM whose device holds `capacity` padded tokens per pass; each step scores 1 / (its index + 1)."""

    def __init__(self, capacity: int, budget: int) -> None:
        tokenizer = type("Tokenizer", (), {"pad_token_id": 0, "eos_token_id": 0})()
        super().__init__(_FakeModel(), tokenizer, path="fake-prm", device="cpu", max_tokens_per_batch=budget)
        self.capacity = capacity
        self.passes: list[int] = []

    def build_input(self, problem, steps):
        return PRMInput(input_ids=tuple(range(10 * len(steps))), score_positions=tuple(range(len(steps))))

    def step_probabilities(self, model_inputs, batch):
        padded = model_inputs["input_ids"].numel()
        self.passes.append(padded)
        if padded > self.capacity:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return [[1 / (k + 1) for k in range(len(x.score_positions))] for x in batch]


def test_the_prm_halves_its_token_budget_on_oom_and_scores_every_pair():
    scorer = _TokensPerPassScorer(capacity=40, budget=160)
    steps = [["a", "b"]] * 8  # 8 inputs of 20 tokens: one pass of 160 tokens at the configured budget
    scores = scorer.score(["p"] * 8, steps)
    assert [s.step_scores for s in scores] == [(1.0, 0.5)] * 8
    assert scorer.max_tokens_per_batch == 40 and scorer.passes == [160, 80, 40, 40, 40, 40]
    with pytest.raises(OutOfMemory, match=r"PRM fake-prm: score: out of memory even at prm.max_tokens_per_batch=20"):
        _TokensPerPassScorer(capacity=10, budget=160).score(["p"] * 2, steps[:2])
