"""The vLLM PRM backend on the real engine (CPU build) with tiny random PRMs of head size 32: the same step scores as
the transformers scorers (an implicit PRM on two engines); device cpu taken; a head size the CPU kernels lack refused before an engine starts;
`ttc-infer processbench` on two engines in one job.

Needs the separate venv from scripts/vllm_cpu_env.sh:
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m pytest tests/vllm -m vllm -q
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip("vllm", reason="vllm is not installed here; build .venv-vllm with scripts/vllm_cpu_env.sh")

from data_prep.prm_metadata import PRMMetadata  # noqa: E402
from inference.config import PolicyConfig, PRMConfig  # noqa: E402
from inference.generation.vllm_backend import VLLMGenerator, vllm_cpu_build  # noqa: E402
from inference.scoring import load_scorer  # noqa: E402

PAIRS = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have?",
     ["Tom starts with 3 apples.", "He buys 4 more: 3 + 4 = 7.", "Therefore, the final answer is: $\\boxed{7}$."]),
    ("What is 12 - 5?", ["12 - 5 = 7."]),
    ("Compute 2 * 3.", ["2 * 3 = 6.", "So 6."]),
]
HEAD_32 = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1}
"""Head size 32: one vLLM's CPU attention supports (the unit tests' tiny models have 8)."""


@pytest.fixture(scope="module")
def tokenizer():
    from tests.unit.generation.tiny_models import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory, tokenizer):
    import torch
    from transformers import LlamaForCausalLM

    from tests.unit.generation.tiny_models import tiny_config

    directory = tmp_path_factory.mktemp("causal_prm")
    torch.manual_seed(1)
    LlamaForCausalLM(tiny_config(tokenizer, **HEAD_32)).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tokenizer):
    import torch
    from transformers import LlamaForTokenClassification

    from tests.unit.generation.tiny_models import tiny_config

    directory = tmp_path_factory.mktemp("tc_prm")
    torch.manual_seed(2)
    model = LlamaForTokenClassification(tiny_config(tokenizer, num_labels=2, **HEAD_32))
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    PRMMetadata(prm_style="token_classification", base_model="tiny-base").save(directory)
    return directory


def scores_of(scorer):
    return scorer.score([p for p, _ in PAIRS], [s for _, s in PAIRS])


def assert_same_scores(directory, style, **options):
    expected = scores_of(load_scorer(directory, prm_style=style, device="cpu", dtype="float32", **options))
    scorer = load_scorer(directory, prm_style=style, device="cpu", dtype="float32", backend="vllm",
                         gpu_memory_utilization=0.4)
    got = scores_of(scorer)
    assert [s.num_tokens for s in got] == [s.num_tokens for s in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.step_scores == pytest.approx(theirs.step_scores, abs=1e-4)
    # vLLM ran each pair's tokens (or fewer, where its prefix cache served some).
    print(style, "num_tokens / forward_tokens:", [(s.num_tokens, s.forward_tokens) for s in got])
    assert all(s.forward_tokens is not None and s.forward_tokens > 0 for s in got)
    return scorer, got


def test_device_cpu_is_taken_on_the_cpu_build(tmp_path):
    assert vllm_cpu_build() is not None
    assert PolicyConfig(backend="vllm", device="cpu").generator_options(0)["device"] == "cpu"
    assert PRMConfig(backend="vllm", device="cpu").backend_options()["backend"] == "vllm"


def test_shipped_policy_head_size_24_is_refused_before_an_engine_starts():
    with pytest.raises(ValueError, match=r"checkpoints/policy-small: head size 24 .* \(32, 64, 80"):
        VLLMGenerator("checkpoints/policy-small", device="cpu")


def test_token_classification_scores_match_transformers(classifier_dir):
    assert_same_scores(classifier_dir, "token_classification", prefix_cache_bytes=0)


@pytest.mark.parametrize("style", ["step_tag", "chat_plus_minus", "lm_likelihood"])
def test_prompt_logprob_styles_match_transformers(causal_dir, style):
    scorer, first = assert_same_scores(causal_dir, style, prefix_cache_bytes=0)
    for repeat, original in zip(scores_of(scorer), first, strict=True):
        assert repeat.step_scores == pytest.approx(original.step_scores, abs=1e-6)


def test_implicit_prm_scores_match_transformers_on_two_engines(tmp_path, tokenizer, causal_dir):
    import torch
    from transformers import LlamaForCausalLM

    from data_prep.steps import SYSTEM_PROMPT
    from tests.unit.generation.tiny_models import tiny_config

    trained = tmp_path / "implicit"
    torch.manual_seed(3)
    LlamaForCausalLM(tiny_config(tokenizer, **HEAD_32)).save_pretrained(trained, safe_serialization=True)
    tokenizer.save_pretrained(trained)
    PRMMetadata(prm_style="implicit", reference_model=str(causal_dir), beta=0.5,
                system_prompt=SYSTEM_PROMPT).save(trained)
    scorer, got = assert_same_scores(trained, "implicit", prefix_cache_bytes=0)
    assert scorer.engine_calls == 2  # one prompt-logprobs call on each model's engine
    assert not all(score == pytest.approx(0.5) for s in got for score in s.step_scores)


def test_qwen_prm_scores_match_transformers(tmp_path, monkeypatch):
    from tests.unit.scoring import public_checkpoints

    base = public_checkpoints.tiny_qwen2_config
    monkeypatch.setattr(public_checkpoints, "tiny_qwen2_config", lambda tokenizer: base(tokenizer).__class__(
        **{**base(tokenizer).to_dict(), **HEAD_32}))
    checkpoint = public_checkpoints.save_qwen_prm(tmp_path / "qwen", public_checkpoints.tokenizer_with_extra_0(), seed=5)
    assert_same_scores(checkpoint.directory, "qwen_prm")


def test_processbench_on_vllm_engines_reports_what_the_transformers_scorer_reports(tmp_path, classifier_dir):
    import json

    from inference.evaluation.processbench import ProcessBenchReport
    from inference.evaluation.processbench_job import ProcessBenchConfig, processbench

    data = tmp_path / "labels.jsonl"
    rows = [{"prompt": problem, "completions": steps, "labels": [index % 3 != k for k in range(len(steps))]}
            for index, (problem, steps) in enumerate(PAIRS * 3)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    reports = {}
    for backend in ("transformers", "vllm"):
        out = tmp_path / backend
        processbench(ProcessBenchConfig(prms={"a": str(classifier_dir), "b": str(classifier_dir)}, data=str(data),
                                        backend=backend, device="cpu", dtype="float32", output_dir=str(out)))
        reports[backend] = [ProcessBenchReport.load(out / f"processbench-{name}.json") for name in ("a", "b")]
    for mine, theirs in zip(reports["vllm"], reports["transformers"], strict=True):
        assert (mine.num_fit, mine.num_eval) == (theirs.num_fit, theirs.num_eval)
        assert mine.step_auroc == pytest.approx(theirs.step_auroc, abs=1e-6)


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-m", "vllm", "-q"]))
