"""The synthetic arithmetic-chain world: determinism, splits, levels and the exact step checker."""

import random

import pytest

from data_prep.synthetic import (
    LEVELS,
    check_solution,
    corrupt_result,
    corrupted_step_labels,
    corrupted_steps,
    generate_problems,
    gold_steps,
    parse_problem,
)


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


def test_corrupt_result_is_a_wrong_non_negative_number_and_mostly_a_small_slip():
    rng = random.Random(0)
    slips = []
    for value in (0, 1, 9, 10, 42, 99, 100, 1234, 9999):
        for _ in range(200):
            wrong = corrupt_result(value, rng)
            assert wrong != value and wrong >= 0
            slips.append(abs(wrong - value))
    # The policies' commonest slips (off by one, by a tens digit) dominate; other digits are replaced too.
    assert sum(slip == 1 for slip in slips) / len(slips) > 0.25
    assert sum(slip in (9, 10, 11) for slip in slips) / len(slips) > 0.1
    assert max(slips) >= 1000


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_corrupted_steps_put_the_first_mistake_where_asked(level):
    rng = random.Random(level)
    for problem in generate_problems("test", 4, seed=1, levels=(level,)):
        gold = gold_steps(problem)
        num_ops = len(parse_problem(problem).operations)
        for wrong_step in range(num_ops + 1):
            steps = corrupted_steps(problem, wrong_step, rng)
            check = check_solution(problem, steps)
            assert len(steps) == len(gold)
            assert steps[:wrong_step] == gold[:wrong_step]
            assert check.first_wrong_step == wrong_step
            # A wrong running value can still land on the gold answer (a floored division), never a wrong box alone.
            assert not check.final_correct or wrong_step < num_ops
            if wrong_step < num_ops:
                # Only the result is wrong: the instruction and both operands are copied right.
                assert steps[wrong_step].rsplit("=", 1)[0] == gold[wrong_step].rsplit("=", 1)[0]
                # The next step starts from the wrong result, as a policy copying its own result would.
                wrong_result = steps[wrong_step].rsplit("= ", 1)[1]
                if wrong_step + 1 < num_ops:
                    assert steps[wrong_step + 1].split(": ", 1)[1].startswith(wrong_result + " ")
    with pytest.raises(ValueError, match="outside 0..2"):
        corrupted_steps(generate_problems("test", 1, levels=(1,))[0], 3, rng)


def test_corrupted_step_labels_pair_gold_with_corrupted_solutions():
    problems = generate_problems("train", 6, seed=0)
    records = corrupted_step_labels(problems, corrupted_per_problem=3, seed=5)
    assert len(records) == 4 * len(problems)
    assert records == corrupted_step_labels(problems, corrupted_per_problem=3, seed=5)
    assert records != corrupted_step_labels(problems, corrupted_per_problem=3, seed=6)
    for index, record in enumerate(records):
        problem = problems[index // 4]
        wrong_step = record.meta["wrong_step"]
        assert record.prompt == problem.problem and record.meta["problem_id"] == problem.id
        if index % 4 == 0:
            assert wrong_step is None and record.completions == gold_steps(problem)
            assert record.labels == [True] * len(record.completions)
        else:
            assert record.labels == [step < wrong_step for step in range(len(record.completions))]
    final_only = corrupted_step_labels(problems, 2, final_answer_fraction=1.0)
    assert all(r.meta["wrong_step"] in (None, len(r.completions) - 1) for r in final_only)
    with pytest.raises(ValueError, match="corrupted_per_problem"):
        corrupted_step_labels(problems, -1)
    with pytest.raises(ValueError, match="final_answer_fraction"):
        corrupted_step_labels(problems, 1, final_answer_fraction=1.5)
