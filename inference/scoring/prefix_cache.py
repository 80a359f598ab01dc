"""Incremental PRM scoring for causal PRMs: keep the key/value cache of scored solutions and score only new steps.

Tree search scores every candidate's whole solution again each iteration, though a candidate is its parent
plus one step. A decoder-only PRM reads each position from the positions before it alone, so the parent's
key/value cache and step scores hold for the child: only the child's new tokens need a forward pass. The
scores equal a full forward up to float rounding (`check_causal` verifies this on the model once).

Entries are keyed by token ids: a sequence's prefix through step k (ending at step k's score position) is a
hit when an earlier call scored exactly that token sequence.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inference.kv_cache import cache_keyword, has_only_full_attention

logger = logging.getLogger(__name__)

DEFAULT_PREFIX_CACHE_BYTES = 1 << 30
"""Keys and values of scored solutions kept for incremental scoring (1 GiB; 0 turns it off)."""


def probe_tolerance(dtype: Any) -> float:
    """Largest |logit difference| (relative to the largest |logit|, at least 1) between a full and a split forward
    for a model to count as causal: float32 rounding, or the coarser rounding of bfloat16/float16 matmuls."""
    import torch

    return 1e-4 if dtype in (torch.float32, torch.float64) else 5e-2


@dataclass(frozen=True)
class CachedSequence:
    """A scored token sequence: its per-step scores and per-layer keys and values (kv_heads x length x head_dim)."""

    input_ids: tuple[int, ...]
    score_positions: tuple[int, ...]
    step_scores: tuple[float, ...]
    """One score per score position."""
    keys: tuple[Any, ...]
    values: tuple[Any, ...]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class PrefixKVCache:
    """Least-recently-used store of `CachedSequence`s keyed by token ids, bounded by bytes of keys and values."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}; use 0 to turn prefix caching off")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[int, ...], CachedSequence] = OrderedDict()
        self.hits = 0
        """Sequences that reused a cached prefix (or were cached whole)."""
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (the hit and miss counts stay)."""
        self._entries.clear()
        self.bytes = 0

    def get(self, input_ids: tuple[int, ...]) -> CachedSequence | None:
        entry = self._entries.get(input_ids)
        if entry is not None:
            self._entries.move_to_end(input_ids)
        return entry

    def longest_prefix(self, input_ids: tuple[int, ...], score_positions: Sequence[int]) -> CachedSequence | None:
        """The cached sequence that is the longest step-aligned prefix of `input_ids` (the whole one included)."""
        for steps in range(len(score_positions), 0, -1):
            entry = self.get(input_ids[: score_positions[steps - 1] + 1])
            if entry is not None and entry.score_positions == tuple(score_positions[:steps]):
                self.hits += 1
                return entry
        self.misses += 1
        return None

    def put(self, entry: CachedSequence) -> None:
        size = entry.nbytes
        if size > self.max_bytes:
            return
        old = self._entries.pop(entry.input_ids, None)
        if old is not None:
            self.bytes -= old.nbytes
        self._entries[entry.input_ids] = entry
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.nbytes


def forward_with_prefixes(
    model: Any,
    keyword: str,
    pad_id: int,
    device: Any,
    rows: Sequence[tuple[tuple[int, ...], CachedSequence | None]],
) -> list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]]:
    """One forward over each row's tokens after its cached prefix (None: the whole row).

    Prefix caches are left-padded to a common length and the new tokens right-padded; the attention mask hides
    both paddings and position ids continue each row's own prefix. Returns, per row, the logits of its new
    tokens (new_tokens x labels, float32; a decoder's hidden states, new_tokens x hidden) and its whole sequence's
    keys and values per layer.
    """
    import torch
    from transformers import DynamicCache

    prefix_lengths = [len(entry.input_ids) if entry is not None else 0 for _, entry in rows]
    new_lengths = [len(ids) - p for (ids, _), p in zip(rows, prefix_lengths, strict=True)]
    longest_prefix, longest_new = max(prefix_lengths), max(new_lengths)
    batch = len(rows)
    input_ids = torch.full((batch, longest_new), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, longest_prefix + longest_new), dtype=torch.long)
    position_ids = torch.zeros((batch, longest_new), dtype=torch.long)
    for row, ((ids, _), prefix, new) in enumerate(zip(rows, prefix_lengths, new_lengths, strict=True)):
        input_ids[row, :new] = torch.tensor(ids[prefix:], dtype=torch.long)
        attention_mask[row, longest_prefix - prefix : longest_prefix + new] = 1
        position_ids[row] = torch.arange(prefix, prefix + longest_new)
    cache = DynamicCache()
    if longest_prefix:
        cached = [entry for _, entry in rows if entry is not None]
        num_layers = len(cached[0].keys)
        for layer in range(num_layers):
            template = cached[0].keys[layer]
            heads, dim = template.shape[0], template.shape[-1]
            keys = template.new_zeros((batch, heads, longest_prefix, dim))
            values = template.new_zeros((batch, heads, longest_prefix, dim))
            for row, (_, entry) in enumerate(rows):
                if entry is not None:
                    keys[row, :, longest_prefix - len(entry.input_ids) :] = entry.keys[layer]
                    values[row, :, longest_prefix - len(entry.input_ids) :] = entry.values[layer]
            cache.update(keys, values, layer)
    with torch.inference_mode():
        output = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            use_cache=True,
            **{keyword: cache},
        )
    # A causal LM or classifier gives logits; a bare decoder (`get_decoder()`) its last hidden states.
    logits = getattr(output, "logits", None)
    logits = (output.last_hidden_state if logits is None else logits).float()
    layers = [(layer.keys, layer.values) for layer in cache.layers]
    results = []
    for row, (prefix, new) in enumerate(zip(prefix_lengths, new_lengths, strict=True)):
        span = slice(longest_prefix - prefix, longest_prefix + new)
        results.append(
            (
                logits[row, :new],
                tuple(keys[row, :, span].clone() for keys, _ in layers),
                tuple(values[row, :, span].clone() for _, values in layers),
            )
        )
    return results


def check_causal(model: Any, keyword: str, pad_id: int, device: Any, input_ids: Sequence[int]) -> float:
    """Largest |logit difference| between one full forward of `input_ids` and its two halves through the cache,
    divided by the largest |logit| when that is above 1."""
    import torch

    ids = tuple(input_ids)
    half = max(1, len(ids) // 2)
    with torch.inference_mode():
        full = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
    ((first, keys, values),) = forward_with_prefixes(model, keyword, pad_id, device, [(ids[:half], None)])
    prefix = CachedSequence(ids[:half], (), (), keys, values)
    ((second, _, _),) = forward_with_prefixes(model, keyword, pad_id, device, [(ids, prefix)])
    split = torch.cat([first, second]) if len(ids) > half else first
    return float((full - split).abs().max()) / max(1.0, float(full.abs().max()))


class PrefixCachedScoring:
    """The incremental scoring a causal PRM scorer mixes in: the cache, the once-only causality check and the loop
    that runs only each solution's tokens after its longest cached prefix.

    The scorer (a `BatchedPRMScorer`) calls `_init_prefix_cache` and implements `_new_step_scores`; it may override
    `_cached_module` (the module run over the new tokens), `_cached_modules` (several, e.g. a model and its
    reference, each from its own keys and values) and `_prefix_usable`.
    """

    model: Any
    device: Any
    pad_id: int
    name: str

    def _init_prefix_cache(self, max_bytes: int) -> None:
        self.prefix_cache = PrefixKVCache(max_bytes)
        self._prefix_caching: bool | None = None if max_bytes > 0 else False
        """None until the first batch decides (see `_use_prefix_cache`)."""
        self._cache_keyword: str | None = None
        """The keyword under which `_cached_module()` takes the cache, found with that decision."""

    def forget_cached(self) -> None:
        """Drop every cached prefix (the runner calls it at each resume unit, so a chunk's forward-token counts do
        not depend on what ran before it in this process)."""
        self.prefix_cache.clear()

    def _cached_module(self) -> Any:
        """The module whose forward takes the cache and gives what `_new_step_scores` reads (the model itself)."""
        return self.model

    def _cached_modules(self) -> tuple[Any, ...]:
        """Every module run over the new tokens; with more than one, `_new_step_scores` gets a tuple of their
        outputs and a cached sequence holds their layers one module after the other."""
        return (self._cached_module(),)

    def _prefix_usable(self, prm_input: Any, prefix: CachedSequence) -> bool:
        """Whether the new tokens after `prefix` hold everything the new steps' scores read."""
        return True

    def _new_step_scores(self, prm_input: Any, start: int, outputs: Any) -> list[float]:
        """Scores of the steps not in the cached prefix, from `outputs` (one row per token from index `start`)."""
        raise NotImplementedError

    def _use_prefix_cache(self, probe: Any) -> bool:
        """Decided once: the model takes a cache, has only full attention, and scores a split sequence as a whole."""
        if self._prefix_caching is None:
            keyword = cache_keyword(self.model)
            self._cache_keyword = cache_keyword(self._cached_module())
            self._prefix_caching = False
            if keyword is None or self._cache_keyword is None or not has_only_full_attention(self.model.config):
                logger.info("%s: the model takes no key/value cache; every solution is scored whole", self.name)
            elif len(probe.input_ids) > 1:
                difference = check_causal(self.model, keyword, self.pad_id, self.device, probe.input_ids)
                self._prefix_caching = difference <= probe_tolerance(self.model.dtype)
                if not self._prefix_caching:
                    logger.info(
                        "%s: a split forward differs from a full one by %.2g (not a causal model); every solution "
                        "is scored whole", self.name, difference,
                    )
            else:
                self._prefix_caching = None  # decide on a longer sequence
        return bool(self._prefix_caching)

    def _incremental_probabilities(self, batch: Sequence[Any]) -> list[list[float]]:
        """Scores from the cache where the whole sequence was scored before, else one forward over new tokens."""
        known: dict[tuple[int, ...], tuple[float, ...]] = {}
        todo: dict[tuple[int, ...], tuple[Any, CachedSequence | None]] = {}
        for prm_input in batch:
            if prm_input.input_ids in known or prm_input.input_ids in todo:
                continue  # identical rows are scored once
            prefix = self.prefix_cache.longest_prefix(prm_input.input_ids, prm_input.score_positions)
            if prefix is not None and len(prefix.score_positions) == len(prm_input.score_positions):
                known[prm_input.input_ids] = prefix.step_scores
            else:
                if prefix is not None and not self._prefix_usable(prm_input, prefix):
                    prefix = None
                todo[prm_input.input_ids] = (prm_input, prefix)
        if todo:
            outputs = self._forward_modules([(ids, prefix) for ids, (_, prefix) in todo.items()])
            for (prm_input, prefix), (new_outputs, keys, values) in zip(todo.values(), outputs, strict=True):
                start = len(prefix.input_ids) if prefix is not None else 0
                earlier = prefix.step_scores if prefix is not None else ()
                step_scores = earlier + tuple(self._new_step_scores(prm_input, start, new_outputs))
                known[prm_input.input_ids] = step_scores
                # Kept through the last judged position: what follows it (a judge's answer and turn end) is not
                # part of a longer solution's prefix, whose next step starts there.
                end = prm_input.score_positions[-1] + 1
                self.prefix_cache.put(CachedSequence(
                    prm_input.input_ids[:end], prm_input.score_positions, step_scores,
                    tuple(layer[:, :end].contiguous() for layer in keys),
                    tuple(layer[:, :end].contiguous() for layer in values)))
        # Tokens run: each sequence's after its cached prefix, once; a repeat or a cached whole costs none.
        run = {ids: len(ids) - (len(prefix.input_ids) if prefix is not None else 0)
               for ids, (_, prefix) in todo.items()}
        self._batch_forward_tokens = [run.pop(prm_input.input_ids, 0) for prm_input in batch]
        return [list(known[prm_input.input_ids]) for prm_input in batch]

    def _forward_modules(self, rows: Sequence[tuple[tuple[int, ...], CachedSequence | None]]
                         ) -> list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]]:
        """`forward_with_prefixes` of every cached module, each from its own layers of the cached prefixes; per row
        the new tokens' outputs (a tuple of them with several modules) and all modules' layers, in module order."""
        modules = self._cached_modules()
        if len(modules) == 1:
            return forward_with_prefixes(modules[0], str(self._cache_keyword), self.pad_id, self.device, rows)
        per_module = []
        first_layer = 0
        for module in modules:
            layers = int(module.config.num_hidden_layers)
            views = [(ids, None if prefix is None else CachedSequence(
                prefix.input_ids, (), (), prefix.keys[first_layer:first_layer + layers],
                prefix.values[first_layer:first_layer + layers])) for ids, prefix in rows]
            per_module.append(forward_with_prefixes(module, str(cache_keyword(module)), self.pad_id, self.device,
                                                    views))
            first_layer += layers
        return [(tuple(result[0] for result in results),
                 tuple(layer for result in results for layer in result[1]),
                 tuple(layer for result in results for layer in result[2])) for results in zip(*per_module)]
