"""Policy prompts as the generation backends feed them: `data_prep.judgement.render_policy_prompt` plus the prefix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.judgement import PROMPT_DATE, render_policy_prompt
from inference.types import GenerationRequest

__all__ = ["PROMPT_DATE", "PromptedBackend", "prompt_token_ids", "render_prompt"]


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
    `date` is the template's `date_string` (templates that take none ignore it; `data_prep.judgement.PROMPT_DATE`).
    The result already holds the template's special tokens (BOS and role markers): tokenize it with
    `add_special_tokens=False`.
    """
    return render_policy_prompt(tokenizer, request.problem, system_prompt, chat_template=chat_template,
                                date=date) + request.prefix


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
