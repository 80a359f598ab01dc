"""Tests' access to the repository's scripts and benchmarks, which are files rather than installed modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_repo_file(relative_path: str, module_name: str) -> ModuleType:
    """Import `REPO/relative_path` as `module_name` (registered first: dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
