"""Key/value-cache plumbing the policy backend and the PRM scorers share: the keyword a model takes its cache under,
the cache a forward returned, whether a plain cache reproduces the model's attention, room reserved for decoding, and
the keys and values of sequences already run, kept for later prompts that start with them."""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


def cache_keyword(model: Any) -> str | None:
    """Name under which `model.forward` takes a key/value cache (`cache` in newer transformers), or None."""
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    return None


def has_only_full_attention(config: Any) -> bool:
    """False for sliding-window or hybrid layers, whose caches a plain `DynamicCache` would not reproduce."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(kind != "full_attention" for kind in layer_types):
        return False
    window = getattr(config, "sliding_window", None)
    return not window or getattr(config, "use_sliding_window", True) is False


def returned_cache(output: Any) -> Any:
    """The key/value cache a forward with `use_cache=True` returned (`cache` in newer transformers)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def preallocate(cache: Any, positions: int) -> Any:
    """`cache` (a `DynamicCache` of full-attention layers) with room for `positions` more per layer, in place.

    A plain `DynamicCache` concatenates every layer's keys and values with the new ones at each decoding step, a copy
    of the whole cache per token; here each layer writes into one buffer and hands attention a view of its filled part.
    """
    from transformers.cache_utils import DynamicLayer

    buffered = _buffered_layer()
    for layer in cache.layers:
        if type(layer) is DynamicLayer and layer.is_initialized:
            layer.__class__ = buffered
            layer.reserve(positions)
    return cache


@functools.cache
def _buffered_layer() -> type:
    """The buffered layer class, built on first use so that importing this module does not import transformers."""
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        """A `DynamicLayer` whose keys and values are views into buffers with room to grow (see `preallocate`)."""

        def reserve(self, positions: int) -> None:
            import torch

            length = self.keys.shape[-2]
            shape = (*self.keys.shape[:-2], length + positions, self.keys.shape[-1])
            self.key_buffer = torch.empty(shape, dtype=self.keys.dtype, device=self.keys.device)
            self.value_buffer = torch.empty(shape, dtype=self.values.dtype, device=self.values.device)
            self.key_buffer[..., :length, :] = self.keys
            self.value_buffer[..., :length, :] = self.values
            self._view(length)

        def _view(self, length: int) -> None:
            self.keys = self.key_buffer[..., :length, :]
            self.values = self.value_buffer[..., :length, :]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            start, added = self.keys.shape[-2], key_states.shape[-2]
            if start + added > self.key_buffer.shape[-2]:  # past the reserve: double it
                self.reserve(max(added, self.key_buffer.shape[-2]))
            self.key_buffer[..., start : start + added, :] = key_states
            self.value_buffer[..., start : start + added, :] = value_states
            self._view(start + added)
            return self.keys, self.values

        def reorder_cache(self, beam_idx: Any) -> None:
            # Only the filled part is copied (the reserve may be much longer).
            length = self.keys.shape[-2]
            index = beam_idx.to(self.key_buffer.device)
            for name in ("key_buffer", "value_buffer"):
                buffer = getattr(self, name)
                taken = buffer.new_empty((len(index), *buffer.shape[1:]))
                taken[..., :length, :] = buffer[..., :length, :].index_select(0, index)
                setattr(self, name, taken)
            self._view(length)

    return BufferedLayer



class SequenceStore:
    """Keys and values of token sequences already run, least recently used dropped first past `max_bytes`.

    `longest_prefix` finds, for a new prompt, the stored sequence sharing the longest common token prefix with it
    (not an exact key: a prompt re-tokenized from text may diverge from the generated ids at a step boundary). Every
    stored sequence is indexed by the hash of each whole block of `BLOCK` first tokens, so a lookup walks the
    prompt's blocks while some sequence shares them and compares tokens only with the sequences of the deepest one.
    An entry is a list of segments, tensors of consecutive positions' keys then values per layer, [2 x layers,
    kv_heads, positions, head_dim]; entries may share segments (the rows of one prompt share the prompt's), and a
    shared segment counts once in `bytes`, while an entry holds it.
    """

    BLOCK = 16

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0 keeps nothing), got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[int, ...], list[Any]] = OrderedDict()
        self._blocks: dict[int, set[tuple[int, ...]]] = {}
        self._holders: dict[int, list[Any]] = {}  # id of a segment -> [segment, entries holding it]

    def __len__(self) -> int:
        return len(self._entries)

    def _block_hashes(self, tokens: Sequence[int]) -> list[int]:
        return [hash(tuple(tokens[:end])) for end in range(self.BLOCK, len(tokens) + 1, self.BLOCK)]

    def wants(self, tokens: Sequence[int]) -> bool:
        """Whether `add` would keep `tokens` (not too short, not stored already: a stored one becomes the most
        recently used), so a caller can skip copying its keys and values."""
        key = tuple(tokens)
        if key in self._entries:
            self._entries.move_to_end(key)
            return False
        return len(key) >= self.BLOCK

    def add(self, tokens: Sequence[int], segments: list[Any]) -> None:
        """Keep `segments` (tensors the store owns, their positions adding up to `tokens`) as the keys and values of
        `tokens`; drop the least recently used entries past the cap."""
        key = tuple(tokens)
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        if len(key) < self.BLOCK or sum(map(_size, segments)) > self.max_bytes:
            return
        if sum(segment.shape[-2] for segment in segments) != len(key):
            raise ValueError(f"{len(key)} tokens but keys and values of {[s.shape[-2] for s in segments]} positions")
        self._entries[key] = segments
        for segment in segments:
            held = self._holders.setdefault(id(segment), [segment, 0])
            held[1] += 1
            if held[1] == 1:
                self.bytes += _size(segment)
        for block in self._block_hashes(key):
            self._blocks.setdefault(block, set()).add(key)
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        for segment in self._entries.pop(key):
            held = self._holders[id(segment)]
            held[1] -= 1
            if held[1] == 0:
                del self._holders[id(segment)]
                self.bytes -= _size(segment)
        for block in self._block_hashes(key):
            holders = self._blocks.get(block)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._blocks[block]

    def longest_prefix(self, tokens: Sequence[int]) -> tuple[list[Any] | None, int]:
        """The stored keys and values sharing the longest common prefix with `tokens` and its length ((None, 0) for none);
        the entry becomes the most recently used."""
        tokens = tuple(tokens)
        candidates: set[tuple[int, ...]] | None = None
        shared = 0
        for end in range(self.BLOCK, len(tokens) + 1, self.BLOCK):
            holders = self._blocks.get(hash(tokens[:end]))
            if not holders:
                break
            candidates, shared = holders, end
        best, best_length = None, 0
        for key in candidates or ():
            if key[:shared] != tokens[:shared]:  # a hash collision
                continue
            length = shared
            limit = min(len(key), len(tokens))
            while length < limit and key[length] == tokens[length]:
                length += 1
            if length > best_length:
                best, best_length = key, length
        if best is None:
            return None, 0
        self._entries.move_to_end(best)
        return self._entries[best], best_length

    def clear(self) -> None:
        self._entries.clear()
        self._blocks.clear()
        self._holders.clear()
        self.bytes = 0


def _size(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()
