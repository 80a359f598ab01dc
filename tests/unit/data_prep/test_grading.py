"""Tests for answer grading: normalisation, math-verify equivalence, grouping, threads and timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from data_prep.grading import Grader, answers_match, group_equivalent, normalize_answer
from data_prep.steps import extract_boxed_answer

MATH500_PATH = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "math500_test.jsonl"

# (gold, prediction, expected) — verdicts observed from math-verify 0.9 through answers_match.
EQUIVALENCE_TABLE = [
    (r"\frac{1}{2}", "0.5", True),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    (r"10\%", "10", True),
    (r"\text{(C)}", "C", True),
    ("x=5", "5", True),
    ("5", "x = 5", True),
    ("1,000", "1000", True),
    (r"1,\!000", "1000", True),
    (r"\dfrac{1}{2}", r"\frac12", True),
    (r"2\sqrt{2}", r"\sqrt{8}", True),
    (r"\{1,2\}", r"\{2,1\}", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("3", "3.0", True),
    ("18", "18.", True),
    (r"90^\circ", "90", True),
    (r"5\text{ cm}", "5", True),
    (r"\$18", "18", True),
    ("18", r"\boxed{18}", True),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3.0, \frac{\pi}{2})", True),
    ("2", "3", False),
    (r"\frac{1}{2}", "2", False),
    ("(1,2)", "(2,1)", False),
    (r"\text{(A)}", r"\text{(B)}", False),
    ("y=5", "x=5", False),
    (r"\pi", "3.14159", False),
    (r"\frac{1}{3}", "0.333", False),
    (r"(3,\frac{\pi}{2})", "(3, 1.5708)", False),
    ("5", None, False),
    ("5", "   ", False),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), EQUIVALENCE_TABLE)
def test_answers_match_table(gold: str, pred: str | None, expected: bool) -> None:
    assert answers_match(gold, pred) is expected


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (r"$\left( 3, \frac{\pi}{2} \right)$", r"(3,\frac{\pi}{2})"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\tfrac{1}{2}.", r"\frac{1}{2}"),
        (r"\text{(C)}", "C"),
        ("(C)", "C"),
        ("1,000", "1000"),
        (r"1,\!000,\!000", "1000000"),
        ("1{,}000", "1000"),
        ("(1,000)", "(1,000)"),
        ("1,2", "1,2"),
        (r"10\%", "10"),
        (r"\boxed{ 7 }", "7"),
        (r"\textbf{\text{Evelyn}}", "Evelyn"),
        (r"\$18", "18"),
        (r"x \in [1, 2]", r"x\in[1,2]"),
        (r"\rightarrow", r"\rightarrow"),
    ],
)
def test_normalize_answer(raw: str, normal: str) -> None:
    assert normalize_answer(raw) == normal


def test_group_equivalent_assigns_ids_in_first_occurrence_order() -> None:
    answers = ["0.5", r"\frac12", None, "2", "1/2", " ", "2.0", r"\text{(C)}", "C", "1,000", "1000"]
    assert group_equivalent(answers) == [0, 0, None, 1, 0, None, 1, 2, 2, 3, 3]


def test_group_equivalent_empty_list() -> None:
    assert group_equivalent([]) == []


def test_answers_match_works_outside_the_main_thread() -> None:
    results: list[bool] = []
    errors: list[BaseException] = []

    def grade() -> None:
        try:
            results.append(answers_match(r"\left( 3, \frac{\pi}{2} \right)", r"(3.0,\frac{\pi}{2})"))
            results.append(answers_match(r"\frac{1}{2}", "2"))
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=60)
    assert errors == []
    assert results == [True, False]


def test_pathological_comparison_times_out_and_worker_recovers() -> None:
    # math-verify spends well over 20 s on 9^(9^9) vs 1 (measured); the grader must give up on time.
    with Grader(timeout_s=5.0) as grader:
        assert grader.match(r"\frac{1}{2}", "0.5") is True  # starts the worker outside the timed part
        start = time.monotonic()
        assert grader.match("9^{9^{9}}", "1", timeout_s=0.5) is False
        elapsed = time.monotonic() - start
        assert elapsed < 2.0
        assert grader.num_timeouts == 1
        assert grader.match(r"\frac{3}{4}", "0.75") is True  # a fresh worker answers afterwards
        assert grader.match("2", "3") is False


def test_fast_path_needs_no_worker() -> None:
    grader = Grader()
    assert grader.match(r"$\dfrac{1}{2}$", r"\frac{1}{2}") is True
    assert grader.match("1,000", "1000") is True
    assert grader._process is None


def test_verdicts_are_cached() -> None:
    with Grader() as grader:
        assert grader.match(r"\frac{1}{2}", "0.5") is True
        grader.close()  # a cached verdict must not need the worker again
        assert grader.match(r"\frac{1}{2}", "0.5") is True
        assert grader._process is None


@pytest.mark.parametrize("bad_gold", ["", "   "])
def test_blank_gold_is_an_error(bad_gold: str) -> None:
    with pytest.raises(ValueError, match="gold answer must be a non-empty string"):
        answers_match(bad_gold, "1")


def test_non_positive_timeout_is_an_error() -> None:
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        Grader(timeout_s=0)


@pytest.mark.skipif(not MATH500_PATH.is_file(), reason=f"MATH-500 file not found at {MATH500_PATH}")
def test_math500_gold_solutions_grade_as_correct() -> None:
    rows = [json.loads(line) for line in MATH500_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 500
    # fast_path=False sends every pair through math-verify, so this measures the parser, not string equality.
    with Grader(fast_path=False, timeout_s=10.0) as grader:
        correct = sum(grader.match(row["answer"], extract_boxed_answer(row["solution"])) for row in rows)
    print(f"MATH-500 gold solutions graded correct: {correct}/500")
    assert correct >= 495


def test_grading_works_from_a_plain_script_without_a_main_guard(tmp_path) -> None:
    # A spawn-started worker would re-import this script as its main module and crash; the worker is a fresh
    # interpreter instead.
    script = tmp_path / "grade_me.py"
    script.write_text(
        "from data_prep.grading import answers_match\n"
        "print(answers_match(r'\\frac{1}{2}', '0.5'), answers_match('2', '3'))\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
    assert "Error" not in result.stderr


def test_a_worker_that_dies_is_replaced_and_its_pair_counts_as_not_equal(caplog) -> None:
    with Grader() as grader:
        assert grader.match(r"\frac{1}{2}", "0.5") is True
        grader._process.kill()  # the worker dies between two comparisons (out of memory, say)
        grader._process.wait()
        assert grader.match(r"\frac{3}{4}", "0.75") is True  # noticed before sending: a fresh worker answers
        start_worker = grader._ensure_worker

        def start_then_die():  # the worker dies with a pair in flight
            process = start_worker()
            process.kill()
            process.wait()
            return process

        grader._ensure_worker = start_then_die
        with caplog.at_level("WARNING", logger="data_prep.grading"):
            assert grader.match(r"\frac{1}{4}", "0.25") is False
        assert "worker died" in caplog.text
        grader._ensure_worker = start_worker
        assert grader.match(r"\frac{1}{5}", "0.2") is True


def test_grading_works_inside_a_worker_process_of_a_pool() -> None:
    # A daemonic pool worker may not start multiprocessing children; the grader's worker is a plain subprocess.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(answers_match, r"\frac{1}{2}", "0.5").result(timeout=300) is True
        assert pool.submit(answers_match, "2", "3").result(timeout=300) is False
