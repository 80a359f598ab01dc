"""Policy backend on plain transformers: left-padded batches decoded step by step, stop strings kept in the text.

Token accounting (the same rule as the vLLM backend, whose `num_tokens` is `len(output.token_ids)`):
`Completion.num_tokens` counts every token the model generated for that completion, up to and including
the token that completed the first stop string (finish "stop"; that token may run past the stop string,
whose overhang is cut from the text), the EOS token (finish "eos"), or the last token (finish "length").
Stop strings are matched in the generated text only, never across the prompt/prefix boundary.

Models whose layers all use full attention are decoded by `_decode_batch`, a loop over the model's forward with
`model.generate`'s logits warpers and softmax, whose draws come from each sample's own uniforms
(`inference.generation.sampling`: a sample depends on the call's seed, its prompt, the prompt's occurrence in the call
and its number, not on the batch), with less work per step than `generate`:
- rows with the same prompt (the n samples of a request, the children of one beam) are prefilled once: their keys
  and values are computed for one copy and repeated to every row;
- the keys and values of every row run (prompt and generated tokens) are kept, bounded (`kv_reuse_bytes`, least
  recently used dropped first), and a later prompt sharing a token prefix with one (the next step of a tree search
  extends the prompt and a step generated before) prefills only the rest on top of them;
- keys and values are written into buffers reserved after the prefill, not concatenated to the whole cache per token;
- finished rows leave the batch (their keys and values are dropped), so the last long samples run alone;
- stop strings are looked for only in rows whose new token can end one (a per-vocabulary table), instead of
  decoding every row every step.
Other models (sliding-window or hybrid attention) go through `model.generate` with a stop-string criterion, and
sample with its seeded `torch.multinomial`, whose draws do depend on the batch.
"""

from __future__ import annotations

import inspect
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
from inference.generation.sampling import draw_tokens, request_keys, row_uniforms
from inference.kv_cache import (
    SequenceStore,
    cache_keyword,
    has_only_full_attention,
    preallocate,
    returned_cache,
)
from inference.memory import halve_on_oom
from inference.prompts import PROMPT_DATE, PromptedBackend
from inference.types import Completion, FinishReason, GenerationRequest, SamplingParams

logger = logging.getLogger(__name__)


class _StopStringWatcher:
    """Finds, per row, the step at which its *generated* text first contains a stop string.

    It records, per row, how many tokens had been generated when the stop string completed, which is the
    exact `num_tokens` of a "stop" completion. Only rows whose newest token can end a stop string (`can_end`) are
    decoded, and only a short window of their newest tokens. As a StoppingCriteria it serves `model.generate`.
    """

    def __init__(
        self,
        tokenizer: Any,
        stop: Sequence[str],
        prompt_length: int,
        eos_ids: set[int],
        batch: int,
        can_end: Sequence[bool] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.prompt_length = prompt_length
        self.eos_ids = eos_ids
        # A stop string of b bytes spans at most b tokens plus one overhanging token on each side.
        self.window = max(len(item.encode("utf-8")) for item in self.stop) + 2
        self.stopped_at: list[int | None] = [None] * batch
        self.ended = [False] * batch
        self.can_end = can_end if can_end is not None else stop_enders(tokenizer, self.stop)

    def completes(self, tail: list[int]) -> bool:
        """Whether the decoded window `tail` (newest generated tokens) contains a stop string."""
        if not self.can_end[tail[-1]]:
            return False
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        return any(item in text for item in self.stop)

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
            if tail and self.completes(tail):
                self.ended[row] = True
                self.stopped_at[row] = generated
        return torch.tensor(self.ended, dtype=torch.bool, device=input_ids.device)


def stop_enders(tokenizer: Any, stop: Sequence[str], vocab_size: int = 0) -> list[bool]:
    """Per token id: whether generating it can complete one of `stop`, i.e. its text holds a stop string's last
    character, or its text alone may not be what it adds in context (empty, a partial UTF-8 byte).

    Any other token leaves the stop strings found in the decoded text as they were, so it needs no decode. A stop
    string ending in a space marks every token: tokenizers drop a token's leading space when it is decoded alone.
    Ids the tokenizer lacks up to `vocab_size` (a model's padded embedding) are marked too.
    """
    last_chars = {item[-1] for item in stop}
    known = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
    padding = [True] * max(0, vocab_size - known)
    if " " in last_chars:
        return [True] * known + padding
    texts = tokenizer.batch_decode([[token] for token in range(known)], skip_special_tokens=True)
    return [not text or "\ufffd" in text or any(char in text for char in last_chars) for text in texts] + padding


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
        kv_reuse_bytes: int = 512 * 2**20,
    ) -> None:
        """Load `model` (a local checkpoint directory or a cached hub id) and its tokenizer.

        batch_size: most sequences (requests x n) decoded together in one batch.
        seed: seeds the stream that gives each call a seed when `SamplingParams.seed` is None.
        chat_template: used instead of the tokenizer's own template (the tokenizer is not modified).
        prompt_date: the date a template that takes one writes into the prompt (`inference.prompts.PROMPT_DATE`).
        kv_reuse_bytes: most bytes of keys and values of sequences already run kept for later prompts that share a
            token prefix with them (full-attention models); 0 keeps none.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if kv_reuse_bytes < 0:
            raise ValueError(f"kv_reuse_bytes must be >= 0 (0 turns reuse off), got {kv_reuse_bytes}")
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
        """Batches decoded so far (each one decode loop or `model.generate` call), for tests and accounting."""
        self._cache_keyword = cache_keyword(self.model) if has_only_full_attention(self.model.config) else None
        """Under which keyword the model's forward takes a cache; None decodes with `model.generate`."""
        self._stop_enders: dict[tuple[str, ...], list[bool]] = {}
        """`stop_enders` per tuple of stop strings."""
        self.kv_store = SequenceStore(kv_reuse_bytes) if kv_reuse_bytes > 0 and self._cache_keyword else None
        """Keys and values of the rows run so far, for prompts that start with them; None when reuse is off."""
        self._last_logits_only = (
            {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {})

    def forget_cached(self) -> None:
        """Drop the kept keys and values (the runner calls it at each resume unit, so a chunk's forward-token counts
        do not depend on what ran before it in this process)."""
        if self.kv_store is not None:
            self.kv_store.clear()

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
        seed = self._seeds.next(params.seed)
        # Each sampled row draws from its own uniforms (`inference.generation.sampling`), made per batch.
        keys = request_keys(seed, prompt_ids) if params.temperature > 0 else None
        fork_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)  # what `model.generate` draws from (models the decode loop does not run)
            start = 0
            while start < len(order):
                def attempt(size: int, start: int = start) -> tuple[list[int], list[Completion]]:
                    chunk = order[start : start + size]
                    uniforms = None if keys is None else row_uniforms(
                        keys, [rows[row] for row in chunk], params.max_tokens)
                    return chunk, self._generate_batch([prompt_ids[rows[row][0]] for row in chunk], params, stop,
                                                       uniforms)

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

    def _left_padded(self, batch: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def _watcher(self, stop: list[str], prompt_length: int, batch: int) -> _StopStringWatcher:
        key = tuple(stop)
        if key not in self._stop_enders:
            self._stop_enders[key] = stop_enders(self.tokenizer, stop, int(self.model.config.vocab_size or 0))
        return _StopStringWatcher(self.tokenizer, stop, prompt_length, self.eos_ids, batch, self._stop_enders[key])

    def _generate_batch(self, batch: list[list[int]], params: SamplingParams, stop: list[str],
                        uniforms: Any) -> list[Completion]:
        """One batch's completions: token lists, then texts, finish reasons and counts by `_completion`.

        uniforms: each row's uniforms per step when sampling (`row_uniforms`), None when greedy.
        """
        reused = [0] * len(batch)
        if self._cache_keyword is not None:
            new_tokens, stopped_at, reused = self._decode_batch(batch, params, stop, uniforms)
            shared = True
        else:
            new_tokens, stopped_at = self._generate_with_generate(batch, params, stop)
            shared = False
        self.generate_calls += 1
        completions = []
        first_rows = set(prompt_copies(batch)[1])
        for row, (ids, tokens) in enumerate(zip(batch, new_tokens, strict=True)):
            completion = self._completion(tokens, stopped_at[row], stop)
            # Forward tokens: the prompt's prefill (all but its last token, whose forward gives the first new
            # token; once per distinct prompt when it was shared) and one per generated token. (The decode loop
            # runs the last prompt token in the prefill, once, and no generated token after the last: the same
            # total for a prompt's first row, one token fewer for each of its copies.) Positions whose keys and values
            # were reused from an earlier sequence did not run.
            prefill = len(ids) - 1 - reused[row] if row in first_rows or not shared else 0
            completions.append(replace(completion, forward_tokens=prefill + completion.num_tokens))
        return completions

    def _generate_with_generate(
        self, batch: list[list[int]], params: SamplingParams, stop: list[str]
    ) -> tuple[list[list[int]], list[int | None]]:
        """`model.generate` on the whole batch (every row prefilled, finished rows padded to the longest)."""
        import torch
        from transformers import StoppingCriteriaList

        input_ids, attention_mask = self._left_padded(batch)
        width = input_ids.shape[1]
        watcher = self._watcher(stop, width, len(batch)) if stop else None
        criteria = StoppingCriteriaList([watcher]) if watcher is not None else None
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=self._generation_config(params),
                stopping_criteria=criteria,
            )
        stopped_at = watcher.stopped_at if watcher else [None] * len(batch)
        return output[:, width:].tolist(), stopped_at

    def _decode_batch(
        self, batch: list[list[int]], params: SamplingParams, stop: list[str], uniforms: Any
    ) -> tuple[list[list[int]], list[int | None], list[int]]:
        """Each row's new tokens (through its EOS or stop-completing token), the step its stop string completed, and
        how many of its prompt's positions were reused from the store (not run).

        Sampling applies `generate`'s warpers and softmax, then draws each row's token from its own uniform of the
        step (`draw_tokens`), so a row's samples are the same whatever rows share its batch or leave it.
        """
        import torch

        rows, max_new = len(batch), params.max_tokens
        watcher = self._watcher(stop, max(map(len, batch)), rows) if stop else None
        can_end = torch.tensor(watcher.can_end, device=self.device) if watcher else None
        eos = torch.tensor(sorted(self.eos_ids), device=self.device)
        warpers = self._warpers(params)
        tokens = torch.full((rows, max_new), self.pad_id, dtype=torch.long, device=self.device)
        lengths = [max_new] * rows
        with torch.inference_mode():
            logits, cache, positions, attention_mask, reused = self._prefill(batch)
            width = attention_mask.shape[1]
            # The mask for every position decoding can reach, sliced per step (no concatenation per step).
            mask = torch.cat([attention_mask, attention_mask.new_ones((rows, max_new))], dim=1)
            preallocate(cache, min(max_new - 1, 64))  # a reserve that doubles when full: a step rarely needs 512
            live = torch.arange(rows, device=self.device)  # the batch row of each row still decoding
            live_rows = list(range(rows))
            kept_prompts: tuple[list[int], dict[int, Any]] = (prompt_copies(batch)[0], {})
            if warpers is not None:
                uniforms = uniforms.to(self.device)
            for step in range(max_new):
                if warpers is not None:
                    picked = draw_tokens(torch.softmax(warpers(None, logits), dim=-1), uniforms[live, step])
                else:
                    picked = logits.argmax(dim=-1)
                tokens[live, step] = picked
                done = torch.isin(picked, eos)
                if watcher is not None:
                    for position in can_end[picked].nonzero().flatten().tolist():
                        row = live_rows[position]
                        tail = tokens[row, max(0, step + 1 - watcher.window) : step + 1].tolist()
                        if not done[position] and watcher.completes(tail):
                            watcher.stopped_at[row] = step + 1
                            done[position] = True
                if step + 1 == max_new:
                    self._keep(batch, tokens, cache, mask, live_rows, range(len(live_rows)), width, step, kept_prompts)
                    break
                finished = done.nonzero().flatten().tolist()
                if finished:
                    self._keep(batch, tokens, cache, mask, live_rows, finished, width, step, kept_prompts)
                    for position in finished:
                        lengths[live_rows[position]] = step + 1
                    if len(finished) == len(live_rows):
                        break
                    keep = (~done).nonzero().flatten()
                    cache.reorder_cache(keep)
                    live, picked, positions, mask = live[keep], picked[keep], positions[keep], mask[keep]
                    live_rows = live.tolist()
                output = self.model(
                    input_ids=picked[:, None],
                    attention_mask=self._decode_mask(mask, width + step + 1),
                    position_ids=positions[:, None],
                    use_cache=True,
                    **{self._cache_keyword: cache},
                )
                positions = positions + 1
                logits = output.logits[:, -1].to(dtype=torch.float32)
        new_tokens = tokens.tolist()
        return [row[:length] for row, length in zip(new_tokens, lengths, strict=True)], (
            watcher.stopped_at if watcher else [None] * rows), reused

    def _keep(self, batch: list[list[int]], tokens: Any, cache: Any, mask: Any, live_rows: list[int],
              positions: Any, width: int, step: int, kept_prompts: tuple[list[int], dict[int, Any]]) -> None:
        """Store the keys and values of the batch positions `positions` (rows `live_rows[position]`) at decoding
        step `step`: the prompt and the `step` generated tokens run through the model so far, padding left out.

        A row's entry is two segments: its prompt's positions, copied once per distinct prompt and shared by the
        rows of that prompt (`kept_prompts`: each row's prompt number, and the segments copied so far by number), and
        its own generated positions.
        """
        if self.kv_store is None:
            return
        import torch

        positions = list(positions)
        rows = [live_rows[position] for position in positions]
        generated = tokens[rows, :step].tolist()
        sequences = [batch[row] + new for row, new in zip(rows, generated, strict=True)]
        wanted = [taken for taken, sequence in enumerate(sequences) if self.kv_store.wants(sequence)]
        if not wanted:
            return
        prompt_of, prompt_segments = kept_prompts

        def gathered(index: Any, columns: slice) -> Any:
            # [rows, 2 x layers, kv_heads, positions, head_dim]: one gather per layer for all the rows.
            return torch.stack([layer.keys[index, :, columns] for layer in cache.layers]
                               + [layer.values[index, :, columns] for layer in cache.layers], dim=1)

        new_prompts: dict[int, int] = {}  # prompt number -> batch position of a row holding it
        for taken in wanted:
            prompt = prompt_of[rows[taken]]
            if prompt not in prompt_segments:
                new_prompts.setdefault(prompt, positions[taken])
        if new_prompts:
            at = list(new_prompts.values())
            prompt_states = gathered(torch.tensor(at, device=mask.device), slice(0, width))
            real = mask[at, :width].bool()
            for number, (prompt, states) in enumerate(zip(new_prompts, prompt_states, strict=True)):
                prompt_segments[prompt] = states[:, :, real[number]]
        own = gathered(torch.tensor([positions[taken] for taken in wanted], device=mask.device),
                       slice(width, width + step))
        for row, taken in enumerate(wanted):
            self.kv_store.add(sequences[taken], [prompt_segments[prompt_of[rows[taken]]], own[row].clone()])

    def _decode_mask(self, mask: Any, length: int) -> Any:
        """The attention mask of one decoding step over `length` positions: for SDPA the [rows, 1, 1, length] boolean
        mask the model would build from the 2-D one (it takes a 4-D mask as given), which saves building it per step."""
        if getattr(self.model.config, "_attn_implementation", None) == "sdpa":
            return mask[:, None, None, :length].bool()
        return mask[:, :length]

    def _warpers(self, params: SamplingParams) -> Any:
        """The logits warpers `generate` applies for these settings (see `_generation_config`); None when greedy."""
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        if params.temperature <= 0:
            return None
        warpers = LogitsProcessorList()
        if params.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(params.temperature))
        if params.top_p < 1.0:
            warpers.append(TopPLogitsWarper(params.top_p))
        return warpers

    def _prefill(self, batch: list[list[int]]) -> tuple[Any, Any, Any, Any, list[int]]:
        """Every prompt through the model once per distinct prompt, repeated to its rows: the last position's float32
        logits, the key/value cache, the position the first new token takes, the 2-D attention mask over the cache,
        and how many positions of each row's prompt came from the store, per row.

        A distinct prompt whose first r tokens a stored sequence shares starts from that sequence's keys and values
        and runs only the rest (at least its last token, whose logits give the first new token). Prompts reusing
        different lengths go in one forward: row i's cache is [padding, r_i reused positions] and its new part
        [padding, rest_i], the 2-D mask marks both paddings, and the position ids count real tokens only.
        """
        import torch
        from transformers.cache_utils import DynamicCache

        index, first_rows = prompt_copies(batch)
        prompts = [batch[row] for row in first_rows]
        found = [self._stored_prefix(ids) for ids in prompts]
        reused = [length for _, length in found]
        past, width = max(reused), max(len(ids) - length for ids, length in zip(prompts, reused, strict=True))
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), past + width), dtype=torch.long)
        positions = torch.ones((len(prompts), width), dtype=torch.long)  # padding's position (masked out anyway)
        for row, (prompt, length) in enumerate(zip(prompts, reused, strict=True)):
            rest = len(prompt) - length
            ids[row, width - rest :] = torch.tensor(prompt[length:], dtype=torch.long)
            mask[row, past - length : past] = 1
            mask[row, past + width - rest :] = 1
            positions[row, width - rest :] = torch.arange(length, len(prompt))
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        extra: dict[str, Any] = {}
        if past:
            example = next(stored for stored, length in found if length)[0]
            states = example.new_zeros((len(prompts), *example.shape[:2], past, example.shape[-1]))
            for row, (stored, length) in enumerate(found):
                offset = 0  # the stored segments in order, up to the reused length
                for segment in stored if length else ():
                    taken = min(segment.shape[-2], length - offset)
                    start = past - length + offset
                    states[row, :, :, start : start + taken] = segment[:, :, :taken]
                    offset += taken
                    if offset == length:
                        break
            layers = len(example) // 2  # keys of every layer, then values
            extra[self._cache_keyword] = DynamicCache(
                ddp_cache_data=[(states[:, layer], states[:, layers + layer]) for layer in range(layers)])
        output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            **extra, **self._last_logits_only)
        cache = returned_cache(output)
        copies = torch.tensor(index, device=ids.device)
        if len(first_rows) < len(batch):
            cache.reorder_cache(copies)  # row r takes its prompt's copy
        logits = output.logits[:, -1].to(dtype=torch.float32)[copies]
        lengths = torch.tensor([len(prompt) for prompt in batch], device=ids.device)
        return logits, cache, lengths, mask[copies], [reused[prompt] for prompt in index]

    def _stored_prefix(self, prompt: list[int]) -> tuple[Any, int]:
        """The stored keys and values sharing the longest prefix with `prompt`, and how many of them to reuse (all
        but the prompt's last token at most: its forward gives the first new token)."""
        if self.kv_store is None:
            return None, 0
        layers, length = self.kv_store.longest_prefix(prompt)
        return layers, min(length, len(prompt) - 1)

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
