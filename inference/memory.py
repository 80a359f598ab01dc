"""Out-of-memory back-off for batched model calls: halve the batch and retry, and at the smallest batch one clear
error instead of a device allocator's traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

Result = TypeVar("Result")


class OutOfMemory(RuntimeError):
    """A model call ran out of memory at its smallest batch; the message names the knob to turn."""


def is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA, MPS, XPU) or the CPU allocator's failure (a plain RuntimeError)."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in str(error) or "out of memory" in str(error).lower()
    )


def _release_cached_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def halve_on_oom(attempt: Callable[[int], Result], size: int, *, smallest: int = 1, what: str, knob: str
                 ) -> tuple[Result, int]:
    """`(attempt(size), size)`, halving `size` after each out-of-memory error until `smallest`.

    Returns the size that fitted, so the caller keeps it for the batches that follow. Out of memory at `smallest`
    raises OutOfMemory naming `what` (the call) and `knob` (the setting to lower). Other errors pass unchanged.
    """
    if size < smallest:
        raise ValueError(f"{knob} must be >= {smallest}, got {size}")
    while True:
        try:
            return attempt(size), size
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            _release_cached_memory()
            if size <= smallest:
                raise OutOfMemory(
                    f"{what}: out of memory even at {knob}={size}; shorten the inputs (max_tokens) or use a device "
                    f"with more memory ({' '.join(str(error).split())[:200]})"
                ) from None
            smaller = max(smallest, size // 2)
            logger.warning("%s: out of memory at %s=%d; retrying at %d", what, knob, size, smaller)
            size = smaller
