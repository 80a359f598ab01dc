"""The step format both arms share: system prompt, chat messages, step split/join and final-answer extraction."""

from __future__ import annotations

import re

STEP_SEPARATOR = "\n\n"
"""Steps are paragraphs: the policy writes one step per paragraph and PRMs score at each blank line."""

SYSTEM_PROMPT = (
    "Solve the following math problem efficiently and clearly. "
    "Write one step per paragraph and separate steps with a blank line. "
    "End with the final step: Therefore, the final answer is: $\\boxed{ANSWER}$."
)
"""The default system prompt. It asks for exactly the format `split_steps` and `extract_boxed_answer` read."""

FINAL_ANSWER_TEMPLATE = "Therefore, the final answer is: $\\boxed{{{answer}}}$."
"""The last step of a gold solution written by ttc (synthetic world, converters)."""


def build_messages(problem: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Chat messages for one problem; the tokenizer's own chat template renders them."""
    if not problem.strip():
        raise ValueError("problem text is empty")
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": problem})
    return messages


def split_steps(text: str, separator: str = STEP_SEPARATOR) -> list[str]:
    """Split a completion into steps on the blank line; whitespace-only paragraphs are not steps."""
    # Normalise Windows line endings and runs of blank lines so that "\n\n\n" is one boundary.
    text = text.replace("\r\n", "\n")
    if separator == STEP_SEPARATOR:
        parts = re.split(r"\n\s*\n", text)
    else:
        parts = text.split(separator)
    return [part.strip() for part in parts if part.strip()]


def join_steps(steps: list[str], separator: str = STEP_SEPARATOR) -> str:
    """Inverse of `split_steps` for stripped, non-empty steps."""
    return separator.join(step.strip() for step in steps)


_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _read_braced(text: str, open_index: int) -> str | None:
    """Content of the brace group opening at `open_index`, honouring nesting; None when unbalanced."""
    depth = 0
    for index in range(open_index, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
    return None


def extract_boxed_answer(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5` in `text`, or None when there is none."""
    best_start = -1
    best: str | None = None
    for command in _BOX_COMMANDS:
        search_from = 0
        while True:
            start = text.find(command, search_from)
            if start < 0:
                break
            search_from = start + len(command)
            after = start + len(command)
            if after < len(text) and text[after] == "{":
                content = _read_braced(text, after)
            elif after < len(text) and text[after] == " ":
                # `\boxed 5`: the argument is the next whitespace-free run, up to `$` or end.
                match = re.match(r"\s+([^\s$]+)", text[after:])
                content = match.group(1) if match else None
            else:
                # A longer command name (e.g. `\boxedfoo`) is not a box.
                content = None
            if content is not None and start > best_start:
                best_start, best = start, content.strip()
    return best
