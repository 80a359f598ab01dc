"""Hand-labelled solutions of two synthetic problems that the likelihood-reading PRM trainings in tests learn from."""

from __future__ import annotations

from data_prep.records import StepLabels

PROBLEM = "Start with 7.\n(1) Add 2.\n(2) Multiply by 3.\nWhat is the final number?"
STEPS = ["(1) Add 2: 7 + 2 = 9", "(2) Multiply by 3: 9 * 3 = 27", "Therefore, the final answer is: $\\boxed{27}$."]


def labelled_rows(*, soft: bool) -> list[StepLabels]:
    """Right, wrong at step 2, wrong at step 1 (its second label 0.5 when `soft`, else False), and a right
    two-step solution of another problem."""
    return [
        StepLabels(PROBLEM, STEPS, [True, True, True]),
        StepLabels(PROBLEM, ["(1) Add 2: 7 + 2 = 9", "(2) Multiply by 3: 9 * 3 = 28",
                             "Therefore, the final answer is: $\\boxed{28}$."], [True, False, False]),
        StepLabels(PROBLEM, ["(1) Add 2: 7 + 2 = 8", "(2) Multiply by 3: 8 * 3 = 24",
                             "Therefore, the final answer is: $\\boxed{24}$."], [False, 0.5 if soft else False, False]),
        StepLabels("Start with 4.\n(1) Subtract 1.\nWhat is the final number?",
                   ["(1) Subtract 1: 4 - 1 = 3", "Therefore, the final answer is: $\\boxed{3}$."], [True, True]),
    ]
