"""The synthetic arithmetic-chain world: determinism, splits, levels and the exact step checker."""

import random

import pytest

from data_prep.synthetic import LEVELS, check_solution, generate_problems, gold_steps, parse_problem


def test_same_seed_same_problems():
    assert generate_problems("test", 5, seed=3) == generate_problems("test", 5, seed=3)
    assert generate_problems("test", 5, seed=3) != generate_problems("test", 5, seed=4)


def test_train_and_test_do_not_overlap():
    test = {p.problem for p in generate_problems("test", 200, seed=0)}
    train = {p.problem for p in generate_problems("train", 500, seed=0)}
    assert len(test) == 1000 and len(train) == 2500
    assert not test & train


def test_levels_grow_in_operations_and_ids_are_unique():
    problems = generate_problems("test", 10, seed=0)
    assert len({p.id for p in problems}) == len(problems)
    for problem in problems:
        assert problem.source == "synthetic"
        chain = parse_problem(problem)
        assert len(chain.operations) == LEVELS[problem.level].num_ops
        assert all(0 <= value <= 9999 for value in chain.values())
        assert str(chain.values()[-1]) == problem.answer
    ops_at_level_5 = {op.op for p in problems if p.level == 5 for op in parse_problem(p).operations}
    assert {"*", "/"} & ops_at_level_5


def test_gold_steps_restate_instructions_and_check_correct():
    for problem in generate_problems("test", 4, seed=1):
        steps = gold_steps(problem)
        assert steps[0].startswith("(1) ")
        assert steps[-1] == f"Therefore, the final answer is: $\\boxed{{{problem.answer}}}$."
        check = check_solution(problem, steps)
        assert check.first_wrong_step is None
        assert check.final_correct
        assert check.num_expected_steps == len(steps)


def _corrupt(step: str, rng: random.Random) -> str:
    """Change the last number of a step (its result) to a different value."""
    head, _, last = step.rpartition(" ")
    digits = "".join(c for c in last if c.isdigit())
    wrong = str(int(digits) + rng.randint(1, 9))
    return f"{head} {last.replace(digits, wrong, 1)}"


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_checker_finds_the_corrupted_step(level):
    rng = random.Random(level)
    for problem in generate_problems("test", 5, seed=2, levels=(level,)):
        steps = gold_steps(problem)
        for k in range(len(steps)):
            corrupted = list(steps)
            corrupted[k] = _corrupt(steps[k], rng)
            check = check_solution(problem, corrupted)
            assert check.first_wrong_step == k, (problem.problem, corrupted)
            assert check.final_correct is (k != len(steps) - 1)


def test_checker_judges_instruction_operand_and_extra_steps():
    problem = generate_problems("test", 1, seed=0, levels=(2,))[0]
    steps = gold_steps(problem)
    chain = parse_problem(problem)
    wrong_operand = steps[0].replace(f" {chain.operations[0].operand}:", f" {chain.operations[0].operand + 1}:", 1)
    assert check_solution(problem, [wrong_operand, *steps[1:]]).first_wrong_step == 0
    # Skipping an operation makes the next step wrong even if its own arithmetic is fine.
    assert check_solution(problem, [steps[1], *steps[2:]]).first_wrong_step == 0
    # Boxing early is wrong; anything after the final answer is wrong.
    assert check_solution(problem, [steps[0], steps[-1]]).first_wrong_step == 1
    assert check_solution(problem, [*steps, "extra"]).first_wrong_step == len(steps)
    # Unfinished but correct so far: no wrong step, final answer not reached.
    partial = check_solution(problem, steps[:2])
    assert partial.first_wrong_step is None and not partial.final_correct
    assert check_solution(problem, []).first_wrong_step is None


def test_checker_ignores_whitespace_variants():
    problem = generate_problems("test", 1, seed=0, levels=(1,))[0]
    steps = [s.replace(" = ", "=").replace(": ", ":") for s in gold_steps(problem)]
    assert check_solution(problem, steps).first_wrong_step is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        generate_problems("dev", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="levels"):
        generate_problems("test", 1, levels=(6,))
    with pytest.raises(ValueError, match="not a synthetic-world problem"):
        parse_problem("What is 1+1?")
