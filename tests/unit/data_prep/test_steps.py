"""The step format contract: split/join on the blank line, boxed-answer extraction, chat messages."""

import pytest

from data_prep.steps import STEP_SEPARATOR, SYSTEM_PROMPT, build_messages, extract_boxed_answer, join_steps, split_steps


def test_separator_is_blank_line():
    assert STEP_SEPARATOR == "\n\n"


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("a\n\nb\n\nc", ["a", "b", "c"]),
        ("a\nstill a\n\nb", ["a\nstill a", "b"]),
        ("a\n\n\n\nb\n\n", ["a", "b"]),
        ("a\r\n\r\nb", ["a", "b"]),
        ("  \n\n  a  \n \nb", ["a", "b"]),
        ("", []),
        ("\n\n", []),
    ],
)
def test_split_steps(text, steps):
    assert split_steps(text) == steps


def test_join_is_inverse_of_split():
    steps = ["(1) Add 5: 2 + 5 = 7", "Therefore, the final answer is: $\\boxed{7}$."]
    assert join_steps(steps) == "(1) Add 5: 2 + 5 = 7\n\nTherefore, the final answer is: $\\boxed{7}$."
    assert split_steps(join_steps(steps)) == steps


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so $\\boxed{5}$.", "5"),
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed 5", "5"),
        ("$\\boxed 12$.", "12"),
        ("\\fbox{7}", "7"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{1} and \\fbox{9}", "9"),
        ("\\fbox{9} and \\boxed{1}", "1"),
        ("\\boxed{ x = 3 }", "x = 3"),
        ("no box here", None),
        ("\\boxed{unbalanced", None),
        ("\\boxedfoo{3}", None),
    ],
)
def test_extract_boxed_answer(text, answer):
    assert extract_boxed_answer(text) == answer


def test_build_messages_uses_system_prompt():
    messages = build_messages("What is 1+1?")
    assert messages == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is 1+1?"},
    ]
    assert build_messages("q", system_prompt=None) == [{"role": "user", "content": "q"}]


def test_build_messages_rejects_empty_problem():
    with pytest.raises(ValueError, match="empty"):
        build_messages("   ")


def test_system_prompt_asks_for_the_format_the_parser_reads():
    assert "blank line" in SYSTEM_PROMPT
    assert "\\boxed{" in SYSTEM_PROMPT
