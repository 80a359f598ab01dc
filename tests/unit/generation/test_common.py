"""Shared backend helpers: stop cuts, per-call seeds, argument checks."""

from __future__ import annotations

import pytest

from inference.generation.common import SeedStream, check_generate_call, cut_after_first_stop, resolve_device, resolve_dtype
from inference.types import GenerationRequest, SamplingParams


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("step one\n\nstep two", ["\n\n"], "step one\n\n"),
        ("a.\n\n\nb", ["\n\n"], "a.\n\n"),
        ("x END y\n\n", ["\n\n", "END"], "x END"),
        ("abcdef", ["cd", "bcde"], "abcd"),
        ("no stop here", ["\n\n"], None),
        ("anything", [], None),
    ],
)
def test_cut_after_first_stop(text, stop, expected):
    assert cut_after_first_stop(text, stop) == expected


def test_seed_stream_uses_explicit_seed_else_a_reproducible_stream():
    first, second = SeedStream(7), SeedStream(7)
    assert first.next(123) == 123
    drawn = [first.next(None) for _ in range(3)]
    assert drawn == [second.next(None) for _ in range(3)]
    assert len(set(drawn)) == 3
    assert drawn != [SeedStream(8).next(None) for _ in range(3)]


@pytest.mark.parametrize(
    ("n", "stop", "message"),
    [(0, [], "n must be >= 1, got 0"), (1, [""], "stop strings must be non-empty"), (1, [None], "stop strings")],
)
def test_check_generate_call_rejects_bad_arguments(n, stop, message):
    with pytest.raises(ValueError, match=message):
        check_generate_call([GenerationRequest(problem="p")], n, SamplingParams(), stop)


def test_check_generate_call_rejects_plain_strings_as_requests():
    with pytest.raises(TypeError, match=r"requests\[0\] must be a GenerationRequest, got str"):
        check_generate_call(["what is 1+1?"], 1, SamplingParams(), [])


def test_device_and_dtype_choices():
    import torch

    cpu = resolve_device("cpu")
    assert cpu.type == "cpu"
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype='fp8' is not supported; use one of auto, bfloat16, float16, float32"):
        resolve_dtype("fp8", cpu)
    with pytest.raises(ValueError, match="device='tpu' is not supported"):
        resolve_device("tpu")
