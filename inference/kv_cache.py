"""Key/value-cache plumbing the policy backend and the PRM scorers share: the keyword a model takes its cache under,
the cache a forward returned, whether a plain cache reproduces the model's attention, and room reserved for decoding."""

from __future__ import annotations

import functools
import inspect
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

