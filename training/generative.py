"""Generative PRM styles (+/- chat, step tag): the training input laid out as the scorers read it, and its checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.judgement import JudgementLayoutError, plus_minus_layout, step_tag_layout
from data_prep.labels import StepTokens

IGNORE_INDEX = -100
JUDGEMENT_STYLES: tuple[str, ...] = ("chat_plus_minus", "step_tag")
"""PRM styles that keep the causal LM head and read P(good) / (P(good) + P(bad)) of the next token."""

PROMPT_FORMATS = {
    "chat_plus_minus": "chat template; user turn 1 = problem + ' ' + step 1, later user turns one step each; every "
                       "assistant turn is the good token; judged at the position that predicts each assistant answer",
    "step_tag": "raw text [bos] problem + ' ' + step_1 + ' ' + tag + '\\n' + step_2 + ' ' + tag ...; judged at each "
                "tag's last token",
}


class PRMInputError(ValueError):
    """A tokenizer or label file that does not fit the chosen prm_style; the message is one line naming the culprit."""


# --------------------------------------------------------------------------------------------------------------------
# Checks before training
# --------------------------------------------------------------------------------------------------------------------


def single_token_id(tokenizer: Any, text: str, *, role: str, tokenizer_source: str) -> int:
    """The id of `text` when the tokenizer encodes it to exactly one token; else one clear error line."""
    ids = list(tokenizer.encode(text, add_special_tokens=False)) if text else []
    if len(ids) != 1:
        raise PRMInputError(
            f"tokenizer {tokenizer_source}: {role} {text!r} encodes to {len(ids)} tokens {ids}, not one; the PRM "
            f"judges with a single token, so set {role} to a token this tokenizer has (or use another tokenizer)"
        )
    return ids[0]


def judgement_token_ids(tokenizer: Any, style: str, *, good_token: str, bad_token: str, step_tag: str | None,
                        tokenizer_source: str) -> tuple[int, int]:
    """(good id, bad id) after checking the tokenizer can express the style: single tokens, a chat template, fast."""
    good_id = single_token_id(tokenizer, good_token, role="good_token", tokenizer_source=tokenizer_source)
    bad_id = single_token_id(tokenizer, bad_token, role="bad_token", tokenizer_source=tokenizer_source)
    if good_id == bad_id:
        raise PRMInputError(f"tokenizer {tokenizer_source}: good_token {good_token!r} and bad_token {bad_token!r} "
                            f"are the same token (id {good_id}); give two different tokens")
    if not getattr(tokenizer, "is_fast", False):
        # The layouts are located by character offsets, as the scorers do.
        raise PRMInputError(f"tokenizer {tokenizer_source} is a slow tokenizer; prm_style {style!r} needs a fast one "
                            "(tokenizer.json) for character offsets")
    if style == "chat_plus_minus" and not getattr(tokenizer, "chat_template", None):
        raise PRMInputError(f"tokenizer {tokenizer_source} has no chat template; prm_style 'chat_plus_minus' renders "
                            "each step as a user turn with it (use an instruct/chat tokenizer or prm_style step_tag)")
    if style == "step_tag":
        single_token_id(tokenizer, step_tag or "", role="step_tag", tokenizer_source=tokenizer_source)
    return good_id, bad_id


def check_texts_fit_style(records: Sequence[Any], path: str | Path, style: str, *, step_tag: str | None,
                          reserved: Sequence[str], rows_are_exact: bool = True) -> None:
    """Prompts and steps must not contain the step tag (step_tag: it would add judgement positions) or a special
    token of the tokenizer (chat_plus_minus: it would end a turn early); one error line names file, row and field.

    `rows_are_exact`: record i is row i of the file (a stepwise file read without skipping); else it is named
    "example i"."""
    for index, record in enumerate(records, start=1):
        where = f"{path} row {index}" if rows_are_exact else f"{path} example {index}"
        fields = [("prompt", record.prompt)] + [(f"completions[{step}]", text)
                                               for step, text in enumerate(record.completions)]
        for field_name, text in fields:
            if style == "step_tag" and step_tag and step_tag in text:
                raise PRMInputError(f"{where}: field {field_name} contains the step tag {step_tag!r}, "
                                    "which would add a judgement position; choose another step_tag or clean the text")
            found = next((token for token in reserved if token and token in text), None)
            if style == "chat_plus_minus" and found is not None:
                raise PRMInputError(f"{where}: field {field_name} contains the special token {found!r} "
                                    "of the tokenizer, which would break the chat layout; remove it from the text")


# --------------------------------------------------------------------------------------------------------------------
# The training input, the same text and positions the inference scorers build
# --------------------------------------------------------------------------------------------------------------------


def plus_minus_positions(tokenizer: Any, prompt: str, steps: Sequence[str], good_token: str, good_id: int
                         ) -> tuple[list[int], list[int]]:
    """The chat layout the +/- scorer reads (`data_prep.judgement.plus_minus_layout`).

    Every assistant answer is the good token, labels or not: the scorer fills them so at inference, and the
    position that predicts answer i sees answers 1..i-1, so training on any other filling would judge each step
    in a context the scorer never shows (and a soft label has no single token to fill in).
    """
    try:
        return plus_minus_layout(tokenizer, prompt, steps, good_token, good_id)
    except JudgementLayoutError as error:
        raise PRMInputError(str(error)) from None


def step_tag_positions(tokenizer: Any, prompt: str, steps: Sequence[str], step_tag: str) -> tuple[list[int], list[int]]:
    """The tagged layout the step-tag scorer reads (`data_prep.judgement.step_tag_layout`)."""
    try:
        return step_tag_layout(tokenizer, prompt, steps, step_tag)
    except JudgementLayoutError as error:
        raise PRMInputError(str(error)) from None


def judgement_tokens(
    tokenizer: Any,
    style: str,
    prompt: str,
    steps: Sequence[str],
    labels: Sequence[bool | float] | None = None,
    *,
    good_token: str,
    good_id: int,
    step_tag: str | None,
    max_length: int | None = None,
    train_on_last_step_only: bool = False,
) -> StepTokens:
    """One generative-PRM example: labels (P(good), float) at the judgement positions, -100 elsewhere.

    Truncation to `max_length` keeps the steps whose judgement position still fits.
    """
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"{len(labels)} labels for {len(steps)} steps; need one label per step")
    if style == "chat_plus_minus":
        input_ids, positions = plus_minus_positions(tokenizer, prompt, steps, good_token, good_id)
    elif style == "step_tag":
        input_ids, positions = step_tag_positions(tokenizer, prompt, steps, step_tag or "")
    else:
        raise ValueError(f"prm_style {style!r} is not a generative style {JUDGEMENT_STYLES}")
    if max_length is not None:
        input_ids = input_ids[:max_length]
        positions = [position for position in positions if position < max_length]
    token_labels = [float(IGNORE_INDEX)] * len(input_ids)
    if labels is not None:
        for step, position in enumerate(positions):
            if train_on_last_step_only and step != len(steps) - 1:
                continue
            token_labels[position] = float(labels[step])
    return StepTokens(input_ids=input_ids, labels=token_labels, step_positions=positions)


# --------------------------------------------------------------------------------------------------------------------
# The loss side: the good/bad logits at the judgement positions
# --------------------------------------------------------------------------------------------------------------------


def judgement_pair_logits(model: Any, model_inputs: dict[str, Any], labels: Any, *, good_id: int, bad_id: int,
                          can_select_logits: bool) -> tuple[Any, Any, Any]:
    """(pair logits `[bad, good]` at the labelled columns, their labels, the columns), from one forward pass.

    Only the columns holding a label in some row go through the LM head (`logits_to_keep`), so an 8B model with a
    128k vocabulary never materialises batch x length x vocab logits.
    """
    import torch

    columns = (labels != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    if columns.numel() == 0:
        columns = torch.zeros(1, dtype=torch.long, device=labels.device)
    if can_select_logits:
        logits = model(**model_inputs, logits_to_keep=columns).logits
    else:
        logits = model(**model_inputs).logits[:, columns]
    return logits[..., [bad_id, good_id]], labels[:, columns], columns
