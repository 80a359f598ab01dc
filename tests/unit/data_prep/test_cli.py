"""Tests for the `ttc-data` CLI, run in-process through `main([...])`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.cli import main
from data_prep.io import read_jsonl
from data_prep.records import Problem, validate_step_labels
from data_prep.synthetic import check_solution

MATH_ROW = {"problem": "What is $1+1$?", "answer": "2", "level": 1, "unique_id": "u/1"}


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path


def test_synth_writes_train_test_and_gold_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--num_per_level_train", "3", "--num_per_level_test", "2", "--seed", "1"]) == 0
    train = [Problem(**row) for _, row in read_jsonl(out / "train.jsonl")]
    test = [Problem(**row) for _, row in read_jsonl(out / "test.jsonl")]
    gold = [row for _, row in read_jsonl(out / "gold_train.jsonl")]
    assert (len(train), len(test), len(gold)) == (15, 10, 15)
    assert [sum(p.level == level for p in train) for level in range(1, 6)] == [3, 3, 3, 3, 3]
    assert not {p.problem for p in train} & {p.problem for p in test}
    for problem, row in zip(train, gold):
        validate_step_labels(row["prompt"], row["completions"], row["labels"])
        assert row["prompt"] == problem.problem
        assert row["labels"] == [True] * len(row["completions"])
        check = check_solution(problem, row["completions"])
        assert (check.first_wrong_step, check.final_correct) == (None, True)
    assert "wrote 15 train, 10 test and 15 gold-step rows" in capsys.readouterr().out


def test_synth_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    args = ["--num_per_level_train", "2", "--num_per_level_test", "1", "--seed", "3"]
    assert main(["synth", "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["synth", "--out", str(tmp_path / "b"), *args]) == 0
    for name in ("train.jsonl", "test.jsonl", "gold_train.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_validate_prints_count_and_levels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [MATH_ROW, dict(MATH_ROW, unique_id="u/2", level=3), dict(MATH_ROW, unique_id="u/3", level=3)]
    path = write_lines(tmp_path / "m.jsonl", rows)
    assert main(["validate", str(path), "--format", "math500"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: 3 problems (source: math500)",
        "  level 1: 1",
        "  level 3: 2",
    ]


def test_validate_generic_with_field_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "g.jsonl", [{"question": "Q", "answer": "r\n#### 1,234"}])
    argv = ["validate", str(path), "--problem_field", "question", "--answer_after", "####", "--source", "mine"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [f"{path}: 1 problems (source: mine)", "  level unknown: 1"]


def test_validate_bad_input_prints_one_line_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "m.jsonl", [MATH_ROW, dict(MATH_ROW, unique_id="u/2", level=9)])
    assert main(["validate", str(path), "--format", "math500"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"ttc-data: error: {path}: line 2: field 'level' (level) must be an integer 1-5")
    assert "Traceback" not in captured.err


def test_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 1
    assert capsys.readouterr().err == f"ttc-data: error: {tmp_path / 'nope.jsonl'}: no such file\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "x.jsonl", "--format", "foo"], "argument --format: invalid choice: 'foo'"),
        (["validate", "x.jsonl", "--format", "math500", "--problem_field", "q"], "--problem_field: field options apply only to --format generic"),
        (["validate", "math500", "--format", "math500"], "--format: these options apply to files, not to the named benchmark 'math500'"),
        (["validate", "x.jsonl", "--answer_after", "#", "--answer_regex", "(x)"], "at most one of"),
        (["convert", "x.jsonl"], "the following arguments are required: --out"),
        (["convert", "x.jsonl", "--out", "y.jsonl", "--limit", "0"], "--limit must be >= 1, got 0"),
        (["synth", "--out", "d", "--num_per_level_test", "0"], "--num_per_level_test must be >= 1, got 0"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_print_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ttc-data: error: ")
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "hyphen", "underscore"),
    [
        (["corrupt", "--out", "x.jsonl", "--num-per-level", "2"], "--num-per-level", "--num_per_level"),
        (["synth", "--out", "d", "--num-per-level-train=3"], "--num-per-level-train", "--num_per_level_train"),
        (["validate", "x.jsonl", "--problem-field", "q"], "--problem-field", "--problem_field"),
        (["corrupt", "--corrupted-per-problem", "2"], "--corrupted-per-problem", "--corrupted_per_problem"),
    ],
)
def test_old_hyphen_flag_names_the_underscore_flag(argv: list[str], hyphen: str, underscore: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"ttc-data: error: unrecognized flag {hyphen}; flags use underscores: {underscore}\n"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("synth", "validate", "convert"))
    assert main(["convert", "--help"]) == 0
    assert "--answer_field" in capsys.readouterr().out


def test_convert_gsm8k_to_problem_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "g.jsonl", [{"question": f"Q{i}", "answer": f"r\n#### {i + 1},000"} for i in range(3)])
    out = tmp_path / "out" / "problems.jsonl"
    assert main(["convert", str(path), "--format", "gsm8k", "--out", str(out), "--limit", "2"]) == 0
    assert [row for _, row in read_jsonl(out)] == [
        {"id": "gsm8k/0", "problem": "Q0", "answer": "1000", "level": None, "source": "gsm8k"},
        {"id": "gsm8k/1", "problem": "Q1", "answer": "2000", "level": None, "source": "gsm8k"},
    ]
    assert capsys.readouterr().out == f"wrote 2 problems to {out}\n"


def test_convert_synthetic_benchmark_by_name(tmp_path: Path) -> None:
    out = tmp_path / "syn.jsonl"
    assert main(["convert", "synthetic-test", "--out", str(out), "--limit", "4"]) == 0
    rows = [row for _, row in read_jsonl(out)]
    assert len(rows) == 4
    assert {row["source"] for row in rows} == {"synthetic"}


def test_corrupt_writes_gold_and_corrupted_step_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from data_prep.labels import read_step_labels

    out = tmp_path / "corrupted.jsonl"
    command = ["corrupt", "--out", str(out), "--num_per_level", "2", "--corrupted_per_problem", "2", "--seed", "3"]
    assert main(command) == 0
    records = read_step_labels(out)
    assert len(records) == 10 * 3
    for record in records:
        check = check_solution(record.prompt, record.completions)
        expected = [check.first_wrong_step is None or step < check.first_wrong_step
                    for step in range(len(record.completions))]
        assert record.labels == expected
    assert sum(all(record.labels) for record in records) == 10
    assert "wrote 30 solutions (10 problems" in capsys.readouterr().out
    assert main(["corrupt", "--out", str(out), "--num_per_level", "0"]) == 2


# ---------------------------------------------------------------- ttc-data labels

STRAY = "Tom has 3 boxes ки of 4 pens. How many pens? Step 1: 3 * 4 = 12. ки\nStep 2: The answer is: 12 ки"
STRAY_LABEL = "Tom has 3 boxes - of 4 pens. How many pens? Step 1: 3 * 4 = 12. +\nStep 2: The answer is: 12 -"
RLHFLOW_ROW = {"conversations": [
    {"role": "user", "content": "Ann has 5 apples and eats 2. How many are left? Step 1: 5 - 2 = 3."},
    {"role": "assistant", "content": "+"},
    {"role": "user", "content": "Step 2: The answer is: 4"},
    {"role": "assistant", "content": "-"},
]}


def test_labels_validate_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rlhflow.json"
    path.write_text(json.dumps([RLHFLOW_ROW, RLHFLOW_ROW]), encoding="utf-8")  # a JSON array
    assert main(["labels", "validate", str(path), "--format", "rlhflow"]) == 0
    assert capsys.readouterr().out == f"{path} (rlhflow): 2 rows -> 2 examples, 4 steps, 2 positive (50.0%)\n"


def test_labels_convert_writes_stepwise_rows_and_counts_drops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "shepherd.jsonl", [{"input": STRAY, "label": STRAY_LABEL, "task": "GSM8K"}])
    out = tmp_path / "out" / "stepwise.jsonl"
    assert main(["labels", "convert", str(path), "--format", "math_shepherd", "--out", str(out)]) == 0
    assert [row for _, row in read_jsonl(out)] == [{
        "prompt": "Tom has 3 boxes of 4 pens. How many pens?",
        "completions": ["Step 1: 3 * 4 = 12.", "Step 2: The answer is: 12"],
        "labels": [True, False],
        "meta": {"source": "math_shepherd", "task": "GSM8K"},
    }]
    assert capsys.readouterr().out.splitlines() == [
        f"{path} (math_shepherd): 1 rows -> 1 examples, 2 steps, 1 positive (50.0%)",
        "  dropped 1 labels at a stray step tag inside the question",
        f"wrote 1 examples to {out}",
    ]
    # The written file is a stepwise file: validating it gives the same counts.
    assert main(["labels", "validate", str(out), "--format", "stepwise"]) == 0
    assert capsys.readouterr().out.startswith(f"{out} (stepwise): 1 rows -> 1 examples, 2 steps, 1 positive")


def test_labels_convert_refuses_outcome_rows_but_validate_counts_them(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "outcome.jsonl", [
        {"prompt": "Start with 1.\n(1) Add 1.\nWhat is the final number?", "completion": "1 + 1 = 2\n\n$\\boxed{2}$",
         "label": True}])
    assert main(["labels", "validate", str(path), "--format", "outcome"]) == 0
    assert capsys.readouterr().out == f"{path} (outcome): 1 rows -> 1 examples, 2 steps, 2 positive (100.0%)\n"
    out = tmp_path / "stepwise.jsonl"
    assert main(["labels", "convert", str(path), "--format", "outcome", "--out", str(out)]) == 2
    assert "--format outcome has one label per solution (field 'label'), so it cannot be written as step labels" in (
        capsys.readouterr().err)
    assert not out.exists()


def test_labels_skip_invalid_rows_counts_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = {"conversations": RLHFLOW_ROW["conversations"][:3]}
    path = write_lines(tmp_path / "rl.jsonl", [RLHFLOW_ROW, bad])
    assert main(["labels", "validate", str(path), "--format", "rlhflow", "--skip_invalid_rows"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [f"{path} (rlhflow): 2 rows -> 1 examples, 2 steps, 1 positive (50.0%)",
                       "  dropped 1 invalid rows (skip_invalid_rows)"]
    assert out[2].startswith(f"  first invalid row: {path} line 2: 'conversations' has 3 turns")


@pytest.mark.parametrize(
    ("rows", "format", "message"),
    [
        ([RLHFLOW_ROW, {"conversations": [RLHFLOW_ROW["conversations"][0], {"role": "assistant", "content": "ok"}]}],
         "rlhflow", "line 2: 'conversations[1].content' is 'ok'; an assistant turn is '+' or '-'"),
        ([{"question": {"problem": "p"}, "label": {"steps": [{"completions": [{"text": "x", "rating": 5}],
                                                              "chosen_completion": 0}]}}],
         "prm800k", "line 1: 'label.steps[0].completions[0].rating' must be -1, 0 or 1, got 5"),
        ([{"input": STRAY, "label": STRAY_LABEL}, {"prompt": "q"}], "math_shepherd",
         "line 2: fields ['prompt']: a Math-Shepherd row needs 'input', 'label'"),
        (["not json"], "stepwise", "not JSONL (one JSON object per line), a JSON array of objects, Parquet"),
    ],
)
def test_labels_bad_input_is_one_line_naming_file_row_and_field_and_exits_2(
    tmp_path: Path, rows: list, format: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", rows)
    assert main(["labels", "convert", str(path), "--format", format, "--out", str(tmp_path / "o.jsonl")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith(f"ttc-data: error: {path}")
    assert message in captured.err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["labels", "validate", "x.jsonl"], "the following arguments are required: --format"),
        (["labels", "validate", "x.jsonl", "--format", "csv"], "argument --format: invalid choice: 'csv'"),
        (["labels", "validate", "x.jsonl", "--format", "rlhflow", "--neutral_as", "false"],
         "--neutral_as applies to --format prm800k only"),
        (["labels", "validate", "x.jsonl", "--format", "rlhflow", "--skip-invalid-rows"],
         "unrecognized flag --skip-invalid-rows; flags use underscores: --skip_invalid_rows"),
        (["labels", "validate", "absent.jsonl", "--format", "stepwise"], "absent.jsonl: no such file"),
    ],
)
def test_labels_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ttc-data: error: ") and err.count("\n") == 1
    assert message in err
