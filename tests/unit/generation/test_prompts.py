"""render_prompt: the chat template over build_messages, the assistant turn opened, then the prefix."""

from __future__ import annotations

import pytest

from data_prep.steps import SYSTEM_PROMPT
from inference.prompts import render_prompt
from inference.types import GenerationRequest


def test_renders_system_user_and_open_assistant_turn_then_prefix(tiny_tokenizer):
    request = GenerationRequest(problem="What is 2+3?", prefix="Add 2 and 3.\n\n")
    rendered = render_prompt(tiny_tokenizer, request, SYSTEM_PROMPT)
    assert rendered == (
        f"<|bos|><|system|>\n{SYSTEM_PROMPT}<|end|>\n<|user|>\nWhat is 2+3?<|end|>\n<|assistant|>\nAdd 2 and 3.\n\n"
    )


def test_no_system_prompt_leaves_out_the_system_turn(tiny_tokenizer):
    rendered = render_prompt(tiny_tokenizer, GenerationRequest(problem="Compute 4*4."), None)
    assert rendered == "<|bos|><|user|>\nCompute 4*4.<|end|>\n<|assistant|>\n"


def test_chat_template_argument_is_used_without_touching_the_tokenizer(tiny_tokenizer):
    own_template = tiny_tokenizer.chat_template
    template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}[a]{% endif %}"
    rendered = render_prompt(tiny_tokenizer, GenerationRequest(problem="P", prefix="s1\n\n"), None, chat_template=template)
    assert rendered == "[user]P[a]s1\n\n"
    assert tiny_tokenizer.chat_template == own_template


def test_tokenizer_without_chat_template_is_an_error():
    class NoTemplate:
        chat_template = None
        name_or_path = "plain-base-model"

    with pytest.raises(ValueError, match="plain-base-model.*has no chat template"):
        render_prompt(NoTemplate(), GenerationRequest(problem="P"), None)
