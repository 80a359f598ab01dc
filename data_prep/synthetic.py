"""The synthetic arithmetic-chain world: seeded problems with levels 1-5, gold step solutions and an exact step checker."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

from data_prep.records import Problem, StepLabels
from data_prep.steps import FINAL_ANSWER_TEMPLATE, extract_boxed_answer

Split = Literal["train", "test"]
SOURCE = "synthetic"
MAX_VALUE = 9999
"""Every running value stays in [0, MAX_VALUE], so answers are non-negative integers of at most four digits."""


@dataclass(frozen=True)
class LevelSpec:
    """How hard a level is: more operations, bigger numbers, more kinds of operator."""

    num_ops: int
    start_range: tuple[int, int]
    addend_range: tuple[int, int]
    factor_range: tuple[int, int] | None
    """Multiplier range, or None when the level has no multiplication."""
    allow_divide: bool


LEVELS: dict[int, LevelSpec] = {
    1: LevelSpec(num_ops=2, start_range=(1, 20), addend_range=(1, 9), factor_range=None, allow_divide=False),
    2: LevelSpec(num_ops=3, start_range=(10, 49), addend_range=(2, 29), factor_range=None, allow_divide=False),
    3: LevelSpec(num_ops=4, start_range=(2, 30), addend_range=(2, 49), factor_range=(2, 5), allow_divide=False),
    4: LevelSpec(num_ops=5, start_range=(10, 99), addend_range=(10, 99), factor_range=(2, 9), allow_divide=False),
    5: LevelSpec(num_ops=6, start_range=(20, 199), addend_range=(10, 199), factor_range=(3, 12), allow_divide=True),
}

_VERBS = {"+": "Add", "-": "Subtract", "*": "Multiply by", "/": "Divide by"}
_OPS_BY_VERB = {verb: op for op, verb in _VERBS.items()}


@dataclass(frozen=True)
class Operation:
    op: Literal["+", "-", "*", "/"]
    operand: int

    def apply(self, value: int) -> int:
        if self.op == "+":
            return value + self.operand
        if self.op == "-":
            return value - self.operand
        if self.op == "*":
            return value * self.operand
        return value // self.operand

    @property
    def instruction(self) -> str:
        return f"{_VERBS[self.op]} {self.operand}"


@dataclass(frozen=True)
class Chain:
    """A parsed problem: the start value and the operations in order."""

    start: int
    operations: tuple[Operation, ...]

    def values(self) -> list[int]:
        """Running values: values[0] is the start, values[k] the value after operation k."""
        values = [self.start]
        for operation in self.operations:
            values.append(operation.apply(values[-1]))
        return values


def _draw_operation(rng: random.Random, spec: LevelSpec, value: int) -> Operation:
    """Draw one operation whose result stays in [0, MAX_VALUE] (exact when dividing)."""
    while True:
        kinds = ["+", "-"]
        if spec.factor_range is not None:
            kinds.append("*")
        if spec.allow_divide:
            kinds.append("/")
        op = rng.choice(kinds)
        if op in "+-":
            operand = rng.randint(*spec.addend_range)
        elif op == "*":
            operand = rng.randint(*spec.factor_range)  # type: ignore[misc]
        else:
            divisors = [d for d in range(2, 13) if value % d == 0 and value // d > 0]
            if not divisors:
                continue
            operand = rng.choice(divisors)
        result = Operation(op, operand).apply(value)
        if 0 <= result <= MAX_VALUE:
            return Operation(op, operand)


def _draw_chain(rng: random.Random, level: int) -> Chain:
    spec = LEVELS[level]
    start = rng.randint(*spec.start_range)
    operations = []
    value = start
    for _ in range(spec.num_ops):
        operation = _draw_operation(rng, spec, value)
        operations.append(operation)
        value = operation.apply(value)
    return Chain(start, tuple(operations))


def render_problem(chain: Chain) -> str:
    lines = [f"Start with {chain.start}."]
    lines += [f"({index}) {operation.instruction}." for index, operation in enumerate(chain.operations, start=1)]
    lines.append("What is the final number?")
    return "\n".join(lines)


_PROBLEM_START = re.compile(r"^Start with (\d+)\.$")
_PROBLEM_OP = re.compile(r"^\((\d+)\) (Add|Subtract|Multiply by|Divide by) (\d+)\.$")


def parse_problem(problem: Problem | str) -> Chain:
    """Recover the chain from a synthetic problem's text; raises ValueError for any other text."""
    text = problem.problem if isinstance(problem, Problem) else problem
    lines = text.strip().split("\n")
    start_match = _PROBLEM_START.match(lines[0]) if lines else None
    if start_match is None or lines[-1] != "What is the final number?":
        raise ValueError(f"not a synthetic-world problem: {text[:60]!r}")
    operations = []
    for expected_index, line in enumerate(lines[1:-1], start=1):
        match = _PROBLEM_OP.match(line)
        if match is None or int(match.group(1)) != expected_index:
            raise ValueError(f"not a synthetic-world problem line: {line!r}")
        operations.append(Operation(_OPS_BY_VERB[match.group(2)], int(match.group(3))))  # type: ignore[arg-type]
    return Chain(int(start_match.group(1)), tuple(operations))


def _level_of(chain: Chain) -> int | None:
    return next((level for level, spec in LEVELS.items() if spec.num_ops == len(chain.operations)), None)


def format_step(index: int, operation: Operation, before: int, after: int) -> str:
    """One gold step: it restates instruction `index` before doing the arithmetic (what makes it learnable)."""
    return f"({index}) {operation.instruction}: {before} {operation.op} {operation.operand} = {after}"


def gold_steps(problem: Problem | str) -> list[str]:
    """The gold solution: one step per operation, then the final-answer step."""
    chain = parse_problem(problem)
    values = chain.values()
    steps = [
        format_step(index, operation, values[index - 1], values[index])
        for index, operation in enumerate(chain.operations, start=1)
    ]
    steps.append(FINAL_ANSWER_TEMPLATE.format(answer=values[-1]))
    return steps


def generate_problems(
    split: Split, num_per_level: int, seed: int = 0, levels: tuple[int, ...] = (1, 2, 3, 4, 5)
) -> list[Problem]:
    """`num_per_level` distinct problems per level; the train split never contains a test problem's text.

    The test split is drawn from its own seeded stream; train is drawn from another and skips any problem
    text that the test split of the same seed (at `TEST_SIZE_FOR_EXCLUSION` per level) contains.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num_per_level < 1:
        raise ValueError(f"num_per_level must be >= 1, got {num_per_level}")
    unknown = [level for level in levels if level not in LEVELS]
    if unknown:
        raise ValueError(f"unknown levels {unknown}; levels are 1-5")
    excluded: set[str] = set()
    if split == "train":
        excluded = {p.problem for p in generate_problems("test", TEST_SIZE_FOR_EXCLUSION, seed, levels)}
    problems = []
    for level in levels:
        problems += _generate_level(split, level, num_per_level, seed, excluded)
    return problems


TEST_SIZE_FOR_EXCLUSION = 500
"""Train splits exclude the first this-many test problems per level, more than any test split ttc uses."""


def _generate_level(split: Split, level: int, count: int, seed: int, excluded: set[str]) -> list[Problem]:
    # String seeds are hashed with SHA-512 by `random`, so streams are stable across runs and platforms.
    rng = random.Random(f"ttc-synthetic/{seed}/{split}/{level}")
    seen: set[str] = set()
    problems = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise ValueError(f"level {level}: cannot draw {count} distinct problems; ask for fewer")
        chain = _draw_chain(rng, level)
        text = render_problem(chain)
        if text in seen or text in excluded:
            continue
        seen.add(text)
        problems.append(
            Problem(
                id=f"synthetic/{split}/L{level}/{len(problems)}",
                problem=text,
                answer=str(chain.values()[-1]),
                level=level,
                source=SOURCE,
            )
        )
    return problems


@dataclass(frozen=True)
class StepCheck:
    """The oracle's verdict on a candidate solution."""

    first_wrong_step: int | None
    """0-based index of the first wrong step; None when every step is right (the solution may be unfinished)."""
    final_correct: bool
    """The solution's boxed answer equals the gold answer."""
    num_expected_steps: int
    """Steps in the gold solution (operations + the final-answer step)."""


_STEP = re.compile(
    r"^\((\d+)\)\s*(Add|Subtract|Multiply by|Divide by)\s+(\d+)\s*:\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*$"
)


def _operation_step_is_right(step: str, index: int, operation: Operation, before: int, after: int) -> bool:
    match = _STEP.match(step.strip())
    if match is None:
        return False
    number, verb, operand, left, op, right, result = match.groups()
    return (
        int(number) == index
        and _OPS_BY_VERB[verb] == operation.op
        and int(operand) == operation.operand
        and int(left) == before
        and op == operation.op
        and int(right) == operation.operand
        and int(result) == after
    )


def check_solution(problem: Problem | str, steps: list[str]) -> StepCheck:
    """Exact step checker: step k is right when it carries out instruction k on the right running value.

    The final-answer step (any step with a box) is right only after all operations and with the gold value;
    any step after it is wrong.
    """
    chain = parse_problem(problem)
    values = chain.values()
    num_ops = len(chain.operations)
    first_wrong: int | None = None
    for index, step in enumerate(steps):
        if index < num_ops and extract_boxed_answer(step) is None:
            right = _operation_step_is_right(step, index + 1, chain.operations[index], values[index], values[index + 1])
        elif index == num_ops:
            right = _boxed_integer(step) == values[-1]
        else:
            right = False
        if not right:
            first_wrong = index
            break
    final_answer = _boxed_integer(steps[-1]) if steps else None
    return StepCheck(
        first_wrong_step=first_wrong,
        final_correct=final_answer == values[-1],
        num_expected_steps=num_ops + 1,
    )


def _boxed_integer(text: str) -> int | None:
    boxed = extract_boxed_answer(text)
    if boxed is None:
        return None
    try:
        return int(boxed.strip().replace(",", ""))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------------------------
# Corrupted solutions: free, exact step labels for PRM training
# --------------------------------------------------------------------------------------------------------------------

_SMALL_SLIPS = (-1, 1)
_MEDIUM_SLIPS = (-3, -2, 2, 3)
_CARRY_SLIPS = (-11, -10, -9, 9, 10, 11)


def corrupt_result(value: int, rng: random.Random) -> int:
    """A wrong, non-negative result shaped like the tiny policies' own slips.

    On policy-small's sampled solutions the first wrong step is nearly always a wrong result with the right operands;
    it is most often off by 1, then by 2-3 or by 9-11 (a tens-digit or carry slip), the rest one digit replaced.
    """
    draw = rng.random()
    if draw < 0.35:
        wrong = value + rng.choice(_SMALL_SLIPS)
    elif draw < 0.5:
        wrong = value + rng.choice(_MEDIUM_SLIPS)
    elif draw < 0.65:
        wrong = value + rng.choice(_CARRY_SLIPS)
    else:
        digits = str(value)
        position = rng.randrange(len(digits))
        replacement = rng.choice([digit for digit in "0123456789" if digit != digits[position]])
        wrong = int(digits[:position] + replacement + digits[position + 1:])
    if wrong < 0 or wrong == value:
        # A slip below zero (or a leading zero replaced by zero) is not a wrong result; step up instead.
        wrong = value + rng.randint(1, 9)
    return wrong


def corrupted_steps(problem: Problem | str, wrong_step: int, rng: random.Random) -> list[str]:
    """A solution whose first mistake is a wrong result at step `wrong_step` (0-based).

    Later operations are carried out correctly from the wrong running value, as a policy that copies its own result
    does; `wrong_step` equal to the number of operations leaves every operation right and boxes a wrong answer.
    """
    chain = parse_problem(problem)
    num_ops = len(chain.operations)
    if not 0 <= wrong_step <= num_ops:
        raise ValueError(f"wrong_step={wrong_step} is outside 0..{num_ops} for a {num_ops}-operation problem")
    steps = []
    value = chain.start
    for index, operation in enumerate(chain.operations):
        after = operation.apply(value)
        if index == wrong_step:
            after = corrupt_result(after, rng)
        steps.append(format_step(index + 1, operation, value, after))
        value = max(after, 0)
    answer = corrupt_result(value, rng) if wrong_step == num_ops else value
    steps.append(FINAL_ANSWER_TEMPLATE.format(answer=answer))
    return steps


def corrupted_step_labels(
    problems: list[Problem], corrupted_per_problem: int, seed: int = 0, final_answer_fraction: float = 0.1
) -> list[StepLabels]:
    """Stepwise-supervision rows from the checker alone: per problem its gold solution and corrupted ones.

    A corrupted solution's wrong step is drawn uniformly from the operations, or with `final_answer_fraction` it is
    the final-answer step. Labels are the oracle's: True before the first wrong step, False from it on.
    """
    if corrupted_per_problem < 0:
        raise ValueError(f"corrupted_per_problem must be >= 0, got {corrupted_per_problem}")
    if not 0.0 <= final_answer_fraction <= 1.0:
        raise ValueError(f"final_answer_fraction must be in [0, 1], got {final_answer_fraction}")
    rng = random.Random(f"ttc-synthetic-corrupted/{seed}")
    records = []
    for problem in problems:
        num_ops = len(parse_problem(problem).operations)
        solutions = [(None, gold_steps(problem))]
        for _ in range(corrupted_per_problem):
            wrong_step = num_ops if rng.random() < final_answer_fraction else rng.randrange(num_ops)
            solutions.append((wrong_step, corrupted_steps(problem, wrong_step, rng)))
        for wrong_step, steps in solutions:
            first_wrong = check_solution(problem, steps).first_wrong_step
            labels = [first_wrong is None or index < first_wrong for index in range(len(steps))]
            meta = {"problem_id": problem.id, "labeller": "corrupted", "wrong_step": wrong_step}
            records.append(StepLabels(prompt=problem.problem, completions=steps, labels=labels, meta=meta))
    return records
