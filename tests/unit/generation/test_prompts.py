"""render_prompt: the chat template over build_messages, the assistant turn opened, then the prefix."""

from __future__ import annotations

import pytest

from data_prep.steps import SYSTEM_PROMPT
from inference.prompts import PROMPT_DATE, render_prompt
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


# The date logic of the public Llama-3.1/3.2 templates: today's date unless the caller passes `date_string`.
DATED_TEMPLATE = (
    "{%- if not date_string is defined %}{%- set date_string = strftime_now('%d %b %Y') %}{%- endif %}"
    "[date]{{ date_string }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}[a]{% endif %}"
)


def test_a_dated_template_gets_the_pinned_date_not_today(tiny_tokenizer):
    request = GenerationRequest(problem="P")
    rendered = render_prompt(tiny_tokenizer, request, None, chat_template=DATED_TEMPLATE)
    assert rendered == f"[date]{PROMPT_DATE}[user]P[a]"
    assert PROMPT_DATE == "26 Jul 2024"  # the templates' own fallback date
    other = render_prompt(tiny_tokenizer, request, None, chat_template=DATED_TEMPLATE, date="01 Jan 2030")
    assert other == "[date]01 Jan 2030[user]P[a]"


def test_the_policy_config_carries_the_date_to_the_backend():
    from inference.config import PolicyConfig

    assert PolicyConfig().generator_options(seed=0)["prompt_date"] == PROMPT_DATE
    assert PolicyConfig(prompt_date="01 Jan 2030").generator_options(seed=0)["prompt_date"] == "01 Jan 2030"
