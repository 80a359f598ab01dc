"""Key/value-cache plumbing the policy backend and the PRM scorers share: the keyword a model takes its cache under,
the cache a forward returned, and whether a plain cache reproduces the model's attention."""

from __future__ import annotations

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
