"""PRM scoring on vLLM's offline engine (`prm.backend: vllm`): the transformers scorers' layouts and arithmetic, the
forward passes vLLM's.

Two readings, by style:
- pooled (`token_classification`, `qwen_prm`): the engine runs as a pooling model (`runner="pooling"`) and
  `LLM.encode(..., pooling_task="token_classify")` returns the head's raw logits (`use_activation=False`) at every
  token (or at the step tokens alone, where vLLM's model pools STEP); the scorer's own softmax reads them.
- prompt log-probabilities (`chat_plus_minus`, `step_tag`, `lm_likelihood`, `implicit`): one `generate` with
  `SamplingParams(max_tokens=1, prompt_logprobs=k)` returns, at each prompt token, the log-probability of that token
  and of the k likeliest. The likelihood verifier needs only the former (k = 0). A judged position needs the good
  and bad tokens' log-probabilities, whose difference is the two logits' difference that the transformers scorer
  softmaxes. One not among the k is read from a second prompt: where vLLM takes `logprob_token_ids` (0.32), the
  prompt ending at that position, which returns exactly those two tokens' and whose prefix vLLM has cached (the
  same parameter on the first pass reads the last position); on an older vLLM, the prompt ending in that token, read
  by `prompt_logprobs=0`. So the scores are exact whatever k is; k only saves second prompts. An implicit PRM runs
  two engines, its own and its reference model's, each with k = 0: a step's reward is beta times the sum over its
  tokens of the two log-probabilities' difference, as in the transformers scorer.

Compute accounting: `num_tokens` is the sequence scored; `forward_tokens` is what vLLM ran for it (its tokens and
any second prompts', less the prompt tokens vLLM reports its prefix cache served), None where vLLM does not report.
An implicit PRM's `num_parameters` counts both models, whose engines both run every token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data_prep.prm_metadata import PRMMetadata
from inference.scoring.batching import PRMInput, checked_inputs
from inference.types import PRMScore

VLLM_READINGS = {
    "token_classification": "pooled",
    "qwen_prm": "pooled",
    "chat_plus_minus": "judge",
    "step_tag": "judge",
    "lm_likelihood": "likelihood",
    "implicit": "implicit",
}
"""The PRM styles vLLM can serve, and how their scores are read from it."""

JUDGE_TOP_LOGPROBS = 20
"""Log-probabilities per prompt token asked of vLLM for a judged position (vLLM's default `max_logprobs`)."""

Layout = Callable[[str, Sequence[str]], PRMInput]


def stored_parameter_count(directory: Path) -> int:
    """Parameters in a checkpoint's safetensors files, from their headers (no weights are read)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="np") as handle:
            names = handle.keys()  # safe_open lists its tensors with keys()
            total += sum(math.prod(handle.get_slice(name).get_shape()) for name in names)
    return total


def context_length(directory: Path, max_model_len: int | None) -> int | None:
    """The longest sequence the engine takes: `max_model_len`, else config.json's `max_position_embeddings`."""
    if max_model_len is not None:
        return max_model_len
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    return config.get("max_position_embeddings")


class VLLMPRMScorer:
    """A `PRMScorer` on a `vllm.LLM`: `layout` builds each pair's tokens and score positions, `_read` scores them."""

    def __init__(self, llm: Any, vllm: Any, *, path: str, layout: Layout, num_parameters: int,
                 max_length: int | None) -> None:
        self.llm = llm
        self._vllm = vllm
        self.layout = layout
        self.name = Path(str(path).rstrip("/")).name
        self.num_parameters = num_parameters
        self.max_length = max_length
        self.engine_calls = 0
        """`LLM.encode` / `LLM.generate` calls made so far."""
        self.forward_tokens = 0
        """Tokens vLLM ran for this scorer so far (prefix-cache hits excluded where vLLM reports them)."""

    def score(self, problems: list[str], step_lists: list[list[str]]) -> list[PRMScore]:
        """Per-step scores in [0, 1] for each (problem, steps) pair, in input order, from one engine call (two
        where a judged token needs its own prompt)."""
        inputs = checked_inputs(problems, step_lists, self.layout, self.max_length)
        if not inputs:
            return []
        scores, ran = self._read(inputs)
        results = []
        for prm_input, step_scores, tokens in zip(inputs, scores, ran, strict=True):
            if tokens is not None:
                self.forward_tokens += tokens
            results.append(PRMScore(step_scores=tuple(step_scores), num_tokens=len(prm_input.input_ids),
                                    forward_tokens=tokens))
        return results

    def _read(self, inputs: list[PRMInput]) -> tuple[list[list[float]], list[int | None]]:
        """Each input's step scores and the tokens vLLM ran for it (None where it does not say)."""
        raise NotImplementedError


def ran_tokens(output: Any, length: int) -> int | None:
    """Tokens vLLM ran for one prompt of `length` tokens: less what its prefix cache served; None if unreported."""
    cached = getattr(output, "num_cached_tokens", None)
    return None if cached is None else length - int(cached)


def _add(total: int | None, more: int | None) -> int | None:
    return None if total is None or more is None else total + more


class VLLMPooledScorer(VLLMPRMScorer):
    """Scores from a pooling model's per-token head logits; `probabilities` maps the step rows (steps x labels)
    to step scores, as the transformers scorer of the style does."""

    def __init__(self, llm: Any, vllm: Any, *, probabilities: Callable[[Any], list[float]],
                 pooling_options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """pooling_options: further `PoolingParams` (a STEP pooler's `step_tag_id`)."""
        super().__init__(llm, vllm, **kwargs)
        self.probabilities = probabilities
        self.pooling_options = dict(pooling_options or {})

    def _read(self, inputs: list[PRMInput]) -> tuple[list[list[float]], list[int | None]]:
        import torch

        prompts = [{"prompt_token_ids": list(x.input_ids)} for x in inputs]
        params = self._vllm.PoolingParams(use_activation=False, **self.pooling_options)
        outputs = self.llm.encode(prompts, params, pooling_task="token_classify", use_tqdm=False)
        self.engine_calls += 1
        if len(outputs) != len(inputs):
            raise RuntimeError(f"vLLM returned {len(outputs)} pooled outputs for {len(inputs)} prompts")
        scores, ran = [], []
        for index, (prm_input, output) in enumerate(zip(inputs, outputs, strict=True)):
            rows = torch.as_tensor(output.outputs.data).float()
            if rows.dim() == 1:
                rows = rows.unsqueeze(-1)
            if rows.shape[0] == len(prm_input.input_ids):
                rows = rows[list(prm_input.score_positions)]
            elif rows.shape[0] != len(prm_input.score_positions):
                # A STEP pooler returns the step-tag rows alone; any other count is not ours to read.
                raise RuntimeError(f"pair {index}: vLLM pooled {rows.shape[0]} rows for {len(prm_input.input_ids)} "
                                   f"tokens and {len(prm_input.score_positions)} steps")
            scores.append(self.probabilities(rows))
            ran.append(ran_tokens(output, len(prm_input.input_ids)))
        return scores, ran


def _sampled_entry(output: Any) -> Any:
    """The {token id: Logprob} entry of the one generated token: the distribution after the whole prompt."""
    samples = getattr(output, "outputs", None) or []
    logprobs = getattr(samples[0], "logprobs", None) if samples else None
    return logprobs[0] if logprobs else None


def _logprob(entry: Any, token_id: int) -> float | None:
    """The log-probability of `token_id` in one prompt position's {token id: Logprob} entry, None if absent."""
    if not entry or token_id not in entry:
        return None
    value = entry[token_id]
    return float(getattr(value, "logprob", value))


class VLLMPromptLogprobScorer(VLLMPRMScorer):
    """Scores from vLLM's prompt log-probabilities: the judged tokens' (`judge_ids`) or the prompt's own."""

    def __init__(self, llm: Any, vllm: Any, *, judge_ids: tuple[int, int] | None, **kwargs: Any) -> None:
        """judge_ids: (good, bad) token ids read at each score position; None reads the likelihood verifier's
        smallest token probability of each step (`LikelihoodInput.step_spans`)."""
        import inspect

        super().__init__(llm, vllm, **kwargs)
        self.judge_ids = judge_ids
        # vLLM with `logprob_token_ids` returns exactly the asked tokens' log-probabilities at the next position.
        self.named_logprobs = "logprob_token_ids" in inspect.signature(vllm.SamplingParams).parameters

    def _generate_one(self, prompts: list[list[int]], llm: Any = None, **params: Any) -> list[Any]:
        """One token after each prompt on `llm` (this scorer's engine by default), for its log-probabilities."""
        sampling = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, **params)
        engine = self.llm if llm is None else llm
        outputs = engine.generate([{"prompt_token_ids": ids} for ids in prompts], sampling, use_tqdm=False)
        self.engine_calls += 1
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
        return outputs

    def _read(self, inputs: list[PRMInput]) -> tuple[list[list[float]], list[int | None]]:
        prompts = [list(x.input_ids) for x in inputs]
        if self.judge_ids is None:
            outputs = self._generate_one(prompts, prompt_logprobs=0)
            ran = [ran_tokens(output, len(ids)) for ids, output in zip(prompts, outputs, strict=True)]
            return [self._likelihood_scores(x, output.prompt_logprobs) for x, output in zip(inputs, outputs)], ran
        named = {"logprob_token_ids": list(self.judge_ids)} if self.named_logprobs else {}
        outputs = self._generate_one(prompts, prompt_logprobs=JUDGE_TOP_LOGPROBS, **named)
        ran = [ran_tokens(output, len(ids)) for ids, output in zip(prompts, outputs, strict=True)]
        # (pair, position, token) -> log-probability; a missing one is read from a prompt that ends at its position.
        found: dict[tuple[int, int, int], float] = {}
        missing: dict[tuple[int, int], list[int]] = {}
        for pair, (prm_input, output) in enumerate(zip(inputs, outputs, strict=True)):
            entries = list(output.prompt_logprobs or [])
            if named:
                entries.append(_sampled_entry(output))  # the last position's, for the token after the prompt
            for position in prm_input.score_positions:
                entry = entries[position + 1] if position + 1 < len(entries) else None
                for token_id in self.judge_ids:
                    value = _logprob(entry, token_id)
                    if value is None:
                        missing.setdefault((pair, position), []).append(token_id)
                    else:
                        found[(pair, position, token_id)] = value
        if missing:
            self._read_missing(inputs, missing, found, ran)
        good, bad = self.judge_ids
        scores = []
        for pair, prm_input in enumerate(inputs):
            # softmax over (good, bad) logits = sigmoid of their difference = of their log-probabilities'.
            scores.append([1.0 / (1.0 + math.exp(found[(pair, p, bad)] - found[(pair, p, good)]))
                           for p in prm_input.score_positions])
        return scores, ran

    def _read_missing(self, inputs: list[PRMInput], missing: dict[tuple[int, int], list[int]],
                      found: dict[tuple[int, int, int], float], ran: list[int | None]) -> None:
        """Log-probabilities the first pass did not return. With `logprob_token_ids`: one prompt per position,
        ending there (its prefix is in vLLM's cache); without: one per token, ending in it, read by
        `prompt_logprobs=0`."""
        if self.named_logprobs:
            keys = list(missing)
            prompts = [list(inputs[pair].input_ids[: position + 1]) for pair, position in keys]
            outputs = self._generate_one(prompts, logprob_token_ids=list(self.judge_ids))
            entries = [_sampled_entry(output) for output in outputs]
            asked = [(key, tokens) for key, tokens in zip(keys, (missing[k] for k in keys), strict=True)]
        else:
            asked = [((pair, position), [token]) for (pair, position), tokens in missing.items() for token in tokens]
            prompts = [list(inputs[pair].input_ids[: position + 1]) + tokens for (pair, position), tokens in asked]
            outputs = self._generate_one(prompts, prompt_logprobs=0)
            entries = [(output.prompt_logprobs or [None])[-1] for output in outputs]
        for ((pair, position), tokens), ids, output, entry in zip(asked, prompts, outputs, entries, strict=True):
            for token_id in tokens:
                value = _logprob(entry, token_id)
                if value is None:
                    raise RuntimeError(f"vLLM returned no log-probability for token {token_id} at position "
                                       f"{position}")
                found[(pair, position, token_id)] = value
            ran[pair] = _add(ran[pair], ran_tokens(output, len(ids)))

    @staticmethod
    def _likelihood_scores(prm_input: Any, entries: Sequence[Any] | None) -> list[float]:
        """exp(min over a step's tokens t of log P(token t | tokens before t)); entry t holds that of token t."""
        return [math.exp(min(values)) for values in _step_token_logprobs(prm_input, entries)]


class VLLMImplicitScorer(VLLMPromptLogprobScorer):
    """An implicit PRM on two engines: the trained model's (`llm`) and its reference model's (`reference_llm`).

    Step score = sigmoid(beta x the sum over the step's tokens of log P_model(token) - log P_reference(token)),
    each log-probability read from its engine's prompt log-probabilities (`prompt_logprobs=0`).
    """

    def __init__(self, llm: Any, vllm: Any, *, reference_llm: Any, beta: float, **kwargs: Any) -> None:
        super().__init__(llm, vllm, judge_ids=None, **kwargs)
        if beta <= 0:
            raise ValueError(f"{self.name}: beta must be > 0, got {beta}")
        self.reference_llm = reference_llm
        self.beta = beta

    def _read(self, inputs: list[PRMInput]) -> tuple[list[list[float]], list[int | None]]:
        prompts = [list(x.input_ids) for x in inputs]
        trained = self._generate_one(prompts, prompt_logprobs=0)
        reference = self._generate_one(prompts, self.reference_llm, prompt_logprobs=0)
        scores, ran = [], []
        for prm_input, ids, mine, theirs in zip(inputs, prompts, trained, reference, strict=True):
            steps = zip(_step_token_logprobs(prm_input, mine.prompt_logprobs),
                        _step_token_logprobs(prm_input, theirs.prompt_logprobs), strict=True)
            scores.append([_sigmoid(self.beta * (sum(own) - sum(base))) for own, base in steps])
            ran.append(_add(ran_tokens(mine, len(ids)), ran_tokens(theirs, len(ids))))
        return scores, ran


def _step_token_logprobs(prm_input: Any, entries: Sequence[Any] | None) -> list[list[float]]:
    """Per step span (`LikelihoodInput.step_spans`), log P(token t | tokens before t) of each of its tokens t, from
    vLLM's prompt log-probabilities (entry t holds token t's)."""
    entries = entries or []
    ids = prm_input.input_ids
    steps = []
    for first, last in prm_input.step_spans:
        values = [_logprob(entries[t] if t < len(entries) else None, ids[t]) for t in range(first, last + 1)]
        if any(value is None for value in values):
            raise RuntimeError(f"vLLM returned no log-probability for a prompt token of span {first}..{last}")
        steps.append(values)
    return steps


def _sigmoid(value: float) -> float:
    """1 / (1 + e^-value) without overflow at large |value| (a long step's summed log-ratio can be hundreds)."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


# --------------------------------------------------------------------------- building one from a checkpoint


def _pooled_probabilities(num_labels: int, positive_label: int) -> Callable[[Any], list[float]]:
    """The token-classification scorer's reading: sigmoid of a one-logit head, else softmax[positive_label]."""
    import torch

    def probabilities(rows: Any) -> list[float]:
        if num_labels == 1:
            return torch.sigmoid(rows[:, 0]).tolist()
        return torch.softmax(rows, dim=-1)[:, positive_label].tolist()

    return probabilities


def load_vllm_scorer(
    style: str,
    directory: Path,
    metadata: PRMMetadata | None,
    options: dict[str, Any],
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    gpu_memory_utilization: float = 0.4,
    max_model_len: int | None = None,
    seed: int = 0,
) -> VLLMPRMScorer:
    """The vLLM scorer of `style` for a checked checkpoint directory (`inference.scoring.loader.load_scorer` with
    backend vllm): the same layout as the style's transformers scorer, the engine started once here (an implicit
    PRM's two engines, its own and its reference model's, take half of `gpu_memory_utilization` each)."""
    from inference.generation.common import DTYPES, check_choice
    from inference.generation.vllm_backend import check_engine_platform, import_vllm
    from inference.scoring.checkpoint import load_tokenizer
    from inference.scoring.styles import implicit_reference, resolve_option

    if style not in VLLM_READINGS:
        raise ValueError(f"prm_style {style!r} has no vLLM reading; prm.backend vllm serves "
                         f"{', '.join(VLLM_READINGS)}; use prm.backend transformers for it")
    if metadata is not None and metadata.is_peft_adapter:
        raise ValueError(f"{directory} is a peft adapter; vLLM loads full checkpoints (merge the adapter into its "
                         "base model first, or use prm.backend transformers)")
    if options.get("prefix_cache_bytes") is not None:
        raise ValueError("prefix_cache_bytes is the transformers scorer's cache; vLLM keeps its own prefix cache "
                         "(remove prm.prefix_cache_gib with prm.backend vllm)")
    check_choice("dtype", dtype, DTYPES)
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    # Checked before any engine starts: an implicit PRM without a usable reference model is refused by name.
    reference_dir = implicit_reference(directory, metadata) if style == "implicit" else None
    tokenizer = load_tokenizer(directory, None, trust_remote_code)
    reading = VLLM_READINGS[style]
    layout, extra = _layout(style, directory, metadata, options, tokenizer, resolve_option)
    check_engine_platform(str(directory), device)
    vllm = import_vllm()
    engine_args: dict[str, Any] = {
        "model": str(directory), "dtype": dtype, "gpu_memory_utilization": gpu_memory_utilization, "seed": seed,
        "trust_remote_code": trust_remote_code, "enable_prefix_caching": True,
        "load_format": "safetensors",  # never pickle weights
    }
    if max_model_len is not None:
        engine_args["max_model_len"] = max_model_len
    if reading == "pooled":
        engine_args["runner"] = "pooling"
    elif reading == "judge":
        engine_args["max_logprobs"] = JUDGE_TOP_LOGPROBS
    if reference_dir is not None:
        engine_args["gpu_memory_utilization"] = gpu_memory_utilization / 2
    llm = vllm.LLM(**engine_args)
    common = {"path": str(directory), "layout": layout, "num_parameters": stored_parameter_count(directory),
              "max_length": context_length(directory, max_model_len)}
    if reference_dir is not None:
        assert metadata is not None  # implicit_reference refused a PRM without its metadata
        reference_llm = vllm.LLM(**{**engine_args, "model": str(reference_dir)})
        common["num_parameters"] += stored_parameter_count(reference_dir)
        return VLLMImplicitScorer(llm, vllm, reference_llm=reference_llm, beta=metadata.beta, **common)
    if reading == "pooled":
        probabilities, pooling_options = extra
        return VLLMPooledScorer(llm, vllm, probabilities=probabilities, pooling_options=pooling_options, **common)
    return VLLMPromptLogprobScorer(llm, vllm, judge_ids=extra, **common)


def _layout(style: str, directory: Path, metadata: PRMMetadata | None, options: dict[str, Any], tokenizer: Any,
            resolve_option: Callable[..., Any]) -> tuple[Layout, Any]:
    """The style's layout function, and what its reading needs: the pooled head's probabilities and further
    PoolingParams, or the judged (good, bad) token ids (None for the likelihood verifier and the implicit PRM, which
    read the prompt's own tokens, after the system prompt of the transformers scorer)."""
    name = directory.name

    def judgement_tokens() -> tuple[str, int, int]:
        from inference.scoring.causal import label_token_id

        good = resolve_option("good_token", options.get("good_token"), metadata.good_token if metadata else None,
                              "+", metadata)
        bad = resolve_option("bad_token", options.get("bad_token"), metadata.bad_token if metadata else None,
                             "-", metadata)
        good_id = label_token_id(tokenizer, good, role="good_token")
        bad_id = label_token_id(tokenizer, bad, role="bad_token")
        if good_id == bad_id:
            raise ValueError(f"good_token {good!r} and bad_token {bad!r} map to the same token id {good_id}")
        return good, good_id, bad_id

    def checked(build: Callable[[], tuple[list[int], list[int]]]) -> PRMInput:
        from data_prep.judgement import JudgementLayoutError

        try:
            input_ids, positions = build()
        except JudgementLayoutError as error:
            raise ValueError(f"{name}: {error}") from None
        return PRMInput(input_ids=tuple(input_ids), score_positions=tuple(positions))

    if style == "token_classification":
        from inference.scoring.token_classification import build_prm_input_ids

        separator = metadata.step_separator if metadata else PRMMetadata.step_separator
        positive = metadata.positive_label if metadata else PRMMetadata.positive_label
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        num_labels = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
        if num_labels > 1 and not 0 <= positive < num_labels:
            raise ValueError(f"positive_label={positive} is not a class of this {num_labels}-label head; "
                             f"set positive_label in {directory}/ttc_prm.json to 0..{num_labels - 1}")

        def token_classification(problem: str, steps: Sequence[str]) -> PRMInput:
            ids, positions = build_prm_input_ids(tokenizer, problem, steps, separator)
            return PRMInput(input_ids=tuple(ids), score_positions=tuple(positions))

        return token_classification, (_pooled_probabilities(num_labels, positive), {})
    if style == "qwen_prm":
        from inference.scoring.qwen_prm import GOOD_CLASS, qwen_prm_input, step_token_id

        step_id = step_token_id(tokenizer, str(directory))
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{directory}: the tokenizer has no chat template; prm_style 'qwen_prm' renders the "
                             "model card's conversation with it (use the tokenizer shipped with Qwen2.5-Math-PRM)")
        # vLLM's Qwen2ForProcessRewardModel pools STEP at Qwen's own <extra_0> id unless told the tokenizer's.
        return (lambda problem, steps: qwen_prm_input(tokenizer, step_id, problem, steps, name),
                (_pooled_probabilities(2, GOOD_CLASS), {"step_tag_id": step_id}))
    if style == "chat_plus_minus":
        from data_prep.judgement import plus_minus_layout

        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{name}: prm_style 'chat_plus_minus' needs a tokenizer with a chat template; "
                             "this checkpoint has none (is it a step_tag or token_classification PRM?)")
        good, good_id, bad_id = judgement_tokens()
        return (lambda problem, steps: checked(lambda: plus_minus_layout(tokenizer, problem, steps, good, good_id)),
                (good_id, bad_id))
    if style == "step_tag":
        from data_prep.judgement import step_tag_layout
        from data_prep.labels import MATH_SHEPHERD_STEP_TAG

        tag = resolve_option("step_tag", options.get("step_tag"), metadata.step_tag if metadata else None,
                             MATH_SHEPHERD_STEP_TAG, metadata)
        if not tag:
            raise ValueError("step_tag is empty; Math-Shepherd uses 'ки'")
        _, good_id, bad_id = judgement_tokens()
        return (lambda problem, steps: checked(lambda: step_tag_layout(tokenizer, problem, steps, tag)),
                (good_id, bad_id))
    from data_prep.judgement import likelihood_layout
    from data_prep.steps import SYSTEM_PROMPT
    from inference.scoring.likelihood import LikelihoodInput

    # The implicit PRM reads the solution after the prompt it was trained with (its ttc_prm.json's).
    system_prompt = metadata.system_prompt if style == "implicit" and metadata is not None else SYSTEM_PROMPT

    def likelihood(problem: str, steps: Sequence[str]) -> PRMInput:
        from data_prep.judgement import JudgementLayoutError

        try:
            input_ids, spans = likelihood_layout(tokenizer, problem, steps, system_prompt)
        except JudgementLayoutError as error:
            raise ValueError(f"{name}: {error}") from None
        return LikelihoodInput(input_ids=tuple(input_ids), score_positions=tuple(last for _, last in spans),
                               step_spans=tuple(spans))

    return likelihood, None
