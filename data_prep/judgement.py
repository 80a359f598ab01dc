"""The layouts PRMs read, one definition both arms use: the policy prompt, the text a +/- chat PRM (RLHFlow), a
step-tag PRM (Math-Shepherd) or a likelihood PRM reads, and the token positions of each step's judgement, so a PRM
trained by `train_prm.py` is scored at exactly the positions it learned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_prep.steps import STEP_SEPARATOR, build_messages

PROMPT_DATE = "26 Jul 2024"
"""The date a chat template that takes one writes into every prompt (Llama-3.1/3.2's `date_string`, whose own
fallback this is): pinned, because by default the template stamps today's date, so a run resumed on another day
would see other prompts."""


class JudgementLayoutError(ValueError):
    """A tokenizer or template under which a step's judgement position cannot be found; one line naming why."""


def token_index_at(offsets: Sequence[tuple[int, int]], char_index: int, *, last: bool = False) -> int | None:
    """Index of the first (or last) token whose character span covers `char_index`.

    A multi-byte character can be split over several byte-level tokens that all report its span; `last=True`
    gives the one that completes it. Special tokens (empty spans) never cover a character.
    """
    found = None
    for index, (start, end) in enumerate(offsets):
        if start <= char_index < end:
            if not last:
                return index
            found = index
        elif found is not None:
            break
    return found


def encode_with_offsets(tokenizer: Any, text: str, *, add_special_tokens: bool) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets; needs a fast (Rust) tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise JudgementLayoutError(
            f"{type(tokenizer).__name__} is a slow tokenizer; the causal-LM PRM styles locate steps by character "
            "offsets, which need a fast tokenizer (tokenizer.json in the checkpoint)"
        )
    encoded = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return list(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]]


def plus_minus_conversation(problem: str, steps: Sequence[str], answer: str) -> list[dict[str, str]]:
    """User turn 1 is `problem + " " + step 1`, each later user turn one more step; every assistant turn is `answer`."""
    conversation = []
    for index, step in enumerate(steps):
        conversation.append({"role": "user", "content": f"{problem} {step}" if index == 0 else step})
        conversation.append({"role": "assistant", "content": answer})
    return conversation


def plus_minus_layout(tokenizer: Any, problem: str, steps: Sequence[str], good_token: str, good_id: int
                      ) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation (every answer the good token) and, per step, the position whose
    logits predict its answer: all steps of a solution are read in one forward pass."""

    def render(conversation: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt)

    conversation = plus_minus_conversation(problem, steps, good_token)
    text = render(conversation, False)
    input_ids, offsets = encode_with_offsets(tokenizer, text, add_special_tokens=False)
    positions = []
    for index in range(len(steps)):
        # The conversation up to user turn i with the assistant turn opened ends where answer i begins.
        opened = render(conversation[: 2 * index + 1], True)
        if not (text.startswith(opened) and text[len(opened):].startswith(good_token)):
            raise JudgementLayoutError(
                f"the chat template does not render the answer to turn {index + 1} right after the generation "
                "prompt, so the +/- position cannot be found; use a template whose assistant turn is "
                "`<generation prompt><answer>`"
            )
        token = token_index_at(offsets, len(opened))
        if token is None or token == 0 or input_ids[token] != good_id:
            raise JudgementLayoutError(
                f"the answer {good_token!r} to turn {index + 1} is not tokenized as its own token (id {good_id}) in "
                "the rendered conversation; it merges with neighbouring text"
            )
        positions.append(token - 1)  # logits at the token before the answer predict the answer
    return input_ids, positions


def step_tag_text(problem: str, steps: Sequence[str], step_tag: str) -> tuple[str, list[int]]:
    """Math-Shepherd's `problem step_1 TAG\\nstep_2 TAG...`, and the character end of each tag."""
    text = f"{problem} "
    tag_ends = []
    for index, step in enumerate(steps):
        text += ("\n" if index else "") + f"{step} {step_tag}"
        tag_ends.append(len(text))
    return text, tag_ends


def step_tag_layout(tokenizer: Any, problem: str, steps: Sequence[str], step_tag: str) -> tuple[list[int], list[int]]:
    """Token ids of the tagged text (with the tokenizer's special tokens, e.g. BOS, as Math-Shepherd encodes it)
    and, per step, its tag's last token, whose next-token distribution is the judgement."""
    text, tag_ends = step_tag_text(problem, steps, step_tag)
    input_ids, offsets = encode_with_offsets(tokenizer, text, add_special_tokens=True)
    positions = []
    for index, end in enumerate(tag_ends):
        token = token_index_at(offsets, end - 1, last=True)
        if token is None:
            raise JudgementLayoutError(f"no token covers the step tag of step {index + 1}")
        positions.append(token)
    return input_ids, positions


def render_policy_prompt(tokenizer: Any, problem: str, system_prompt: str | None, *, chat_template: str | None = None,
                         date: str = PROMPT_DATE) -> str:
    """The policy's chat-templated prompt for `problem` with the assistant turn opened (the one rendering of it).

    `chat_template` overrides the tokenizer's own template for this call only; the tokenizer is never modified.
    The result already holds the template's special tokens: tokenize it with `add_special_tokens=False`.
    """
    template = chat_template if chat_template is not None else getattr(tokenizer, "chat_template", None)
    if not template:
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ValueError(
            f"tokenizer {name!r} has no chat template; use an instruct/chat checkpoint or pass chat_template"
        )
    rendered = tokenizer.apply_chat_template(
        build_messages(problem, system_prompt), tokenize=False, add_generation_prompt=True, chat_template=template,
        date_string=date,
    )
    if not isinstance(rendered, str):
        raise TypeError(f"apply_chat_template returned {type(rendered).__name__}, expected str")
    return rendered


def likelihood_layout(tokenizer: Any, problem: str, steps: Sequence[str], system_prompt: str | None
                      ) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of a solution after the policy prompt, and each step's (first, last) token index, both inclusive.

    What a likelihood verifier reads: the prompt and the solution are encoded apart, as a policy generates the
    solution after its prompt; the separators between steps belong to no step.
    """
    prompt = render_policy_prompt(tokenizer, problem, system_prompt)
    prompt_ids = list(tokenizer.encode(prompt, add_special_tokens=False))
    solution_ids, offsets = encode_with_offsets(tokenizer, STEP_SEPARATOR.join(steps), add_special_tokens=False)
    spans, start = [], 0
    for index, step in enumerate(steps):
        end = start + len(step)
        first = token_index_at(offsets, start) if step else None
        last = token_index_at(offsets, end - 1, last=True) if step else None
        if first is None or last is None:
            raise JudgementLayoutError(f"step {index + 1} ({step!r}) covers no token; a step needs text")
        spans.append((len(prompt_ids) + first, len(prompt_ids) + last))
        start = end + len(STEP_SEPARATOR)
    return prompt_ids + solution_ids, spans
