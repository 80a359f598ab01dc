"""Policy backend on plain transformers: left-padded batches through `model.generate`, stop strings kept in the text.

Token accounting (the same rule as the vLLM backend, whose `num_tokens` is `len(output.token_ids)`):
`Completion.num_tokens` counts every token the model generated for that completion, up to and including
the token that completed the first stop string (finish "stop"; that token may run past the stop string,
whose overhang is cut from the text), the EOS token (finish "eos"), or the last token (finish "length").
Stop strings are matched in the generated text only, never across the prompt/prefix boundary.

Rows of one batch with the same prompt (the n samples of a request, the children of one beam) are prefilled once:
their keys and values are computed for one copy and repeated to every row before decoding starts, which gives the
same completions as prefilling each row (a test checks it) for a fraction of the prefill compute.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_prep.steps import SYSTEM_PROMPT
from inference.generation.common import (
    SeedStream,
    check_generate_call,
    cut_after_first_stop,
    model_load_options,
    resolve_device,
    resolve_dtype,
)
from inference.kv_cache import cache_keyword, has_only_full_attention, returned_cache
from inference.memory import halve_on_oom
from inference.prompts import PROMPT_DATE, PromptedBackend
from inference.types import Completion, FinishReason, GenerationRequest, SamplingParams

logger = logging.getLogger(__name__)


class _StopStringWatcher:
    """StoppingCriteria-compatible callable: marks a row done when its *generated* text contains a stop string.

    It records, per row, how many tokens had been generated when the stop string completed, which is the
    exact `num_tokens` of a "stop" completion. Only a short window of the newest tokens is decoded per step.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_length: int, eos_ids: set[int], batch: int) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.prompt_length = prompt_length
        self.eos_ids = eos_ids
        # A stop string of b bytes spans at most b tokens plus one overhanging token on each side.
        self.window = max(len(item.encode("utf-8")) for item in self.stop) + 2
        self.stopped_at: list[int | None] = [None] * batch
        self.ended = [False] * batch

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        generated = input_ids.shape[1] - self.prompt_length
        start = max(self.prompt_length, input_ids.shape[1] - self.window)
        tails = input_ids[:, start:].tolist()
        for row, tail in enumerate(tails):
            if self.ended[row]:
                continue
            if tail and tail[-1] in self.eos_ids:
                self.ended[row] = True
                continue
            text = self.tokenizer.decode(tail, skip_special_tokens=True)
            if any(item in text for item in self.stop):
                self.ended[row] = True
                self.stopped_at[row] = generated
        return torch.tensor(self.ended, dtype=torch.bool, device=input_ids.device)


def prompt_copies(batch: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Which distinct prompt each row holds (numbered by first appearance), and the first row of each."""
    distinct: dict[tuple[int, ...], int] = {}
    index, first_rows = [], []
    for row, ids in enumerate(batch):
        key = tuple(ids)
        if key not in distinct:
            distinct[key] = len(distinct)
            first_rows.append(row)
        index.append(distinct[key])
    return index, first_rows


class TransformersGenerator(PromptedBackend):
    """A `Generator` on `AutoModelForCausalLM.generate`; engine settings here, sampling settings per call."""

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 16,
        seed: int = 0,
        system_prompt: str | None = SYSTEM_PROMPT,
        trust_remote_code: bool = False,
        chat_template: str | None = None,
        prompt_date: str = PROMPT_DATE,
    ) -> None:
        """Load `model` (a local checkpoint directory or a cached hub id) and its tokenizer.

        batch_size: most sequences (requests x n) per `model.generate` call.
        seed: seeds the stream that gives each call a seed when `SamplingParams.seed` is None.
        chat_template: used instead of the tokenizer's own template (the tokenizer is not modified).
        prompt_date: the date a template that takes one writes into the prompt (`inference.prompts.PROMPT_DATE`).
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(
            model, dtype=torch_dtype, **model_load_options(trust_remote_code, f"policy {model}")
        )
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.system_prompt = system_prompt
        self.chat_template = chat_template
        self.prompt_date = prompt_date
        self.name = Path(str(model).rstrip("/")).name
        self.num_parameters = int(self.model.num_parameters())
        self._seeds = SeedStream(seed)
        self.eos_ids = self._eos_ids()
        pad_id = self.tokenizer.pad_token_id
        # Left padding is masked out, so any id works; the EOS id is the usual stand-in when there is no pad.
        self.pad_id = pad_id if pad_id is not None else min(self.eos_ids)
        self.generate_calls = 0
        """`model.generate` calls made so far (batches), for tests and compute accounting."""
        self._cache_keyword = cache_keyword(self.model) if has_only_full_attention(self.model.config) else None
        """Under which keyword `generate` takes a prefilled cache; None prefills every row in `generate`."""

    def _eos_ids(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        if configured is None:
            configured = self.tokenizer.eos_token_id
        if configured is None:
            raise ValueError(f"{self.name}: neither the generation config nor the tokenizer defines an EOS token")
        return set(configured) if isinstance(configured, (list, tuple)) else {int(configured)}

    def generate(
        self,
        requests: list[GenerationRequest],
        *,
        n: int,
        params: SamplingParams,
        stop: list[str] | None = None,
    ) -> list[list[Completion]]:
        """n completions per request, in request order (see the module docstring for `num_tokens`)."""
        import torch

        stop = list(stop or [])
        check_generate_call(requests, n, params, stop)
        if not requests:
            return []
        prompt_ids = self.prompt_token_ids(requests)
        # Greedy samples are all the same: decode each request once and copy it n times.
        distinct = n if params.temperature > 0 else 1
        rows = [(index, sample) for index in range(len(requests)) for sample in range(distinct)]
        # Longest prompts first so each batch holds similar lengths (less padding); the sort is stable.
        order = sorted(range(len(rows)), key=lambda row: -len(prompt_ids[rows[row][0]]))
        results: list[list[Completion | None]] = [[None] * n for _ in requests]
        fork_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self._seeds.next(params.seed))
            start = 0
            while start < len(order):
                def attempt(size: int, start: int = start) -> tuple[list[int], list[Completion]]:
                    chunk = order[start : start + size]
                    return chunk, self._generate_batch([prompt_ids[rows[row][0]] for row in chunk], params, stop)

                # Out of memory halves the batch for this and every later batch (rows already done are kept).
                (chunk, completions), self.batch_size = halve_on_oom(
                    attempt, self.batch_size, what=f"policy {self.name}: generate", knob="policy.batch_size")
                for row, completion in zip(chunk, completions, strict=True):
                    index, sample = rows[row]
                    results[index][sample] = completion
                start += len(chunk)
        if distinct == 1:
            # The copies were not decoded: they ran no tokens.
            return [[per_request[0]] + [replace(per_request[0], forward_tokens=0)] * (n - 1) for per_request in results]
        return [[completion for completion in per_request if completion is not None] for per_request in results]

    def _generation_config(self, params: SamplingParams) -> Any:
        from transformers import GenerationConfig

        settings: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": params.temperature > 0,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids),
            "use_cache": True,
            # Neutral values so a checkpoint's generation_config.json cannot add processing the caller did not ask
            # for (transformers would otherwise also apply top_k=50 when sampling); vLLM applies none of these.
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
        }
        if params.temperature > 0:
            settings.update(temperature=params.temperature, top_p=params.top_p, top_k=0, typical_p=1.0)
            if self.model.generation_config.min_p is not None:
                settings["min_p"] = 0.0
        return GenerationConfig(**settings)

    def _generate_batch(self, batch: list[list[int]], params: SamplingParams, stop: list[str]) -> list[Completion]:
        import torch
        from transformers import StoppingCriteriaList

        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        with torch.inference_mode():
            prefilled = self._shared_prefill(batch, input_ids, attention_mask)
        watcher = _StopStringWatcher(self.tokenizer, stop, width, self.eos_ids, len(batch)) if stop else None
        criteria = StoppingCriteriaList([watcher]) if watcher is not None else None
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=self._generation_config(params),
                stopping_criteria=criteria,
                **prefilled,
            )
        self.generate_calls += 1
        new_tokens = output[:, width:].tolist()
        completions = []
        first_rows = set(prompt_copies(batch)[1])
        for row, (ids, tokens) in enumerate(zip(batch, new_tokens, strict=True)):
            completion = self._completion(tokens, watcher.stopped_at[row] if watcher else None, stop)
            # Forward tokens: the prompt's prefill (all but its last token, whose forward gives the first new
            # token; once per distinct prompt when it was shared) and one per generated token.
            prefill = len(ids) - 1 if row in first_rows or not prefilled else 0
            completions.append(replace(completion, forward_tokens=prefill + completion.num_tokens))
        return completions

    def _shared_prefill(self, batch: list[list[int]], input_ids: Any, attention_mask: Any) -> dict[str, Any]:
        """When rows repeat a prompt: the cache of every prompt token but the last, computed once per distinct
        prompt and repeated to its rows, as `generate`'s cache keyword (else no keyword: generate prefills all).

        The last token is left to `generate`, which needs one uncached token to start decoding from.
        """
        import torch

        index, first_rows = prompt_copies(batch)
        keyword = self._cache_keyword
        if keyword is None or len(first_rows) == len(batch) or input_ids.shape[1] < 2:
            return {}
        first = torch.tensor(first_rows, device=input_ids.device)
        ids, mask = input_ids[first, :-1], attention_mask[first, :-1]
        # The positions generate gives left-padded rows: count real tokens only.
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = returned_cache(output)
        cache.reorder_cache(torch.tensor(index, device=input_ids.device))  # row r takes its prompt's copy
        return {keyword: cache}

    def _completion(self, tokens: list[int], stopped_at: int | None, stop: list[str]) -> Completion:
        eos_at = next((position for position, token in enumerate(tokens) if token in self.eos_ids), None)
        if stopped_at is not None and (eos_at is None or stopped_at <= eos_at):
            decoded = self.tokenizer.decode(tokens[:stopped_at], skip_special_tokens=True)
            text = cut_after_first_stop(decoded, stop)
            if text is None:
                logger.warning("stop string seen in the decode window but not in the full decode: %r", decoded[-40:])
                text = decoded
            return Completion(text=text, num_tokens=stopped_at, finish_reason="stop")
        reason: FinishReason
        if eos_at is not None:
            kept, count, reason = tokens[:eos_at], eos_at + 1, "eos"
        else:
            kept, count, reason = tokens, len(tokens), "length"
        return Completion(text=self.tokenizer.decode(kept, skip_special_tokens=True), num_tokens=count, finish_reason=reason)
