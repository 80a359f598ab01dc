"""Child processes that stop when the process that started them dies, so none runs on beside a rerun."""

from __future__ import annotations

import signal
import sys

PR_SET_PDEATHSIG = 1
"""prctl option (linux/prctl.h): the signal a process gets when its parent dies."""


def stop_with_parent() -> None:
    """`preexec_fn` of a child (Linux; elsewhere nothing): SIGTERM it when its parent dies (a killed pipeline, a
    dead Ray worker), so it stops at a chunk boundary instead of writing beside the rerun that resumes its work."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
