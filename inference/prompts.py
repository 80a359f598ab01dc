"""The one place a policy prompt is rendered: the tokenizer's chat template over `build_messages`, plus the prefix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.steps import build_messages
from inference.types import GenerationRequest

PROMPT_DATE = "26 Jul 2024"
"""The date a chat template that takes one writes into every prompt (Llama-3.1/3.2's `date_string`, whose own
fallback this is): pinned, because by default the template stamps today's date, so a run resumed on another day
would see other prompts."""


def render_prompt(
    tokenizer: Any,
    request: GenerationRequest,
    system_prompt: str | None,
    *,
    chat_template: str | None = None,
    date: str = PROMPT_DATE,
) -> str:
    """Chat-templated prompt for `request.problem` with the assistant turn opened, then `request.prefix`.

    `chat_template` overrides the tokenizer's own template for this call only; the tokenizer is never modified.
    `date` is the template's `date_string` (templates that take none ignore it).
    The result already holds the template's special tokens (BOS and role markers): tokenize it with
    `add_special_tokens=False`.
    """
    template = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None)
    if not template:
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ValueError(
            f"tokenizer {name!r} has no chat template; use an instruct/chat checkpoint or pass chat_template"
        )
    messages = build_messages(request.problem, system_prompt)
    rendered = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, chat_template=template, date_string=date
    )
    if not isinstance(rendered, str):
        raise TypeError(f"apply_chat_template returned {type(rendered).__name__}, expected str")
    return rendered + request.prefix


def prompt_token_ids(
    tokenizer: Any,
    requests: Sequence[GenerationRequest],
    system_prompt: str | None,
    *,
    chat_template: str | None = None,
    date: str = PROMPT_DATE,
) -> list[list[int]]:
    """Token ids of each rendered prompt; the template already holds BOS, so no special tokens are added."""
    prompts = [render_prompt(tokenizer, request, system_prompt, chat_template=chat_template, date=date)
               for request in requests]
    return [list(tokenizer.encode(prompt, add_special_tokens=False)) for prompt in prompts]


class PromptedBackend:
    """What both generation backends share: each request's prompt rendered from their `tokenizer`,
    `system_prompt`, `chat_template` and `prompt_date` attributes, and fed to the model as token ids (so no engine
    adds a second BOS)."""

    tokenizer: Any
    system_prompt: str | None
    chat_template: str | None
    prompt_date: str

    def prompt_token_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Token ids of each request's rendered prompt (chat template + prefix), as fed to the model."""
        return prompt_token_ids(
            self.tokenizer, requests, self.system_prompt, chat_template=self.chat_template, date=self.prompt_date
        )
