"""Stepwise-supervision IO, Math-Shepherd/PRM800K converters, source mixing, oracle labels and the PRM input layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.labels import (
    LabelFileError,
    load_step_labels,
    math_shepherd_to_step_labels,
    mix_step_labels,
    oracle_labels,
    prm800k_to_step_labels,
    read_step_labels,
    tokenize_steps,
    write_step_labels,
)
from data_prep.records import StepLabels
from data_prep.synthetic import generate_problems, gold_steps


def _write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path


GOOD = {"prompt": "What is 1+1?", "completions": ["1+1=2", "The answer is 2"], "labels": [True, 0.7]}


# ---------------------------------------------------------------- reading and writing


def test_jsonl_round_trip_keeps_soft_labels_and_meta(tmp_path: Path) -> None:
    records = [
        StepLabels("p1", ["a", "b"], [True, False], meta={"problem_id": "x"}),
        StepLabels("p2", ["c"], [0.25]),
    ]
    path = write_step_labels(records, tmp_path / "labels.jsonl")
    loaded = read_step_labels(path)
    assert [r.to_dict() for r in loaded] == [r.to_dict() for r in records]
    assert loaded[0].meta == {"problem_id": "x"}
    assert loaded[1].labels == [0.25]


def test_parquet_round_trip_stores_labels_as_floats(tmp_path: Path) -> None:
    records = [StepLabels("p1", ["a", "b"], [True, 0.5])]
    loaded = read_step_labels(write_step_labels(records, tmp_path / "labels.parquet"))
    assert loaded[0].prompt == "p1"
    assert loaded[0].completions == ["a", "b"]
    assert loaded[0].labels == [1.0, 0.5]


def test_saved_dataset_directory_is_read(tmp_path: Path) -> None:
    import datasets

    # Arrow needs one label type per column: floats (hard labels as 1.0/0.0).
    datasets.Dataset.from_list([{**GOOD, "labels": [1.0, 0.7]}]).save_to_disk(str(tmp_path / "ds"))
    loaded = read_step_labels(tmp_path / "ds")
    assert loaded[0].completions == GOOD["completions"]
    assert loaded[0].labels == pytest.approx([1.0, 0.7])


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({**GOOD, "labels": [True]}, "1 labels for 2 steps"),
        ({**GOOD, "completions": ["1+1=2", "  "]}, "step 1 is empty"),
        ({**GOOD, "labels": [True, "yes"]}, "label 1 must be a bool or a float"),
        ({**GOOD, "labels": [True, 1.5]}, "label 1 must be in [0, 1]"),
        ({"prompt": "q", "steps": ["a"], "labels": [True]}, "missing ['completions'], unknown ['steps']"),
        ({**GOOD, "completions": ["a\n\nb", "c"]}, "step 0 contains the step separator"),
        ('{"prompt": "q", "completions": [', "invalid JSON"),
    ],
)
def test_bad_row_error_names_file_and_line(tmp_path: Path, bad_row, message: str) -> None:
    path = _write_lines(tmp_path / "train.jsonl", [GOOD, bad_row])
    with pytest.raises(LabelFileError) as error:
        read_step_labels(path)
    assert f"{path} line 2" in str(error.value)
    assert message in str(error.value)


def test_parquet_error_names_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["q", "q"], "completions": [["a"], ["a", "b"]], "labels": [[1.0], [1.0]]}), path)
    with pytest.raises(LabelFileError, match=r"bad\.parquet row 2: 1 labels for 2 steps"):
        read_step_labels(path)


def test_skip_invalid_rows_drops_bad_rows_and_keeps_good_ones(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "train.jsonl", [GOOD, {**GOOD, "labels": [True]}, GOOD])
    assert len(read_step_labels(path, skip_invalid_rows=True)) == 2


def test_missing_file_and_unknown_suffix_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_step_labels(tmp_path / "absent.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(LabelFileError, match="unknown file type '.csv'"):
        read_step_labels(tmp_path / "x.csv")


# ---------------------------------------------------------------- Math-Shepherd

SHEPHERD_INPUT = (
    "Janet has 3 apples and buys 2 more. How many now? Step 1: She starts with 3 apples. ки\n"
    "Step 2: 3 + 2 = 6. ки\nStep 3: The answer is: 6 ки"
)


def _shepherd_label(marks: str) -> str:
    parts = SHEPHERD_INPUT.split("ки")
    return "".join(part + mark for part, mark in zip(parts, marks)) + parts[-1]


def test_math_shepherd_row_is_split_at_step_1_with_labels_from_the_tags() -> None:
    record = math_shepherd_to_step_labels({"input": SHEPHERD_INPUT, "label": _shepherd_label("+--"), "task": "GSM8K"})
    assert record.prompt == "Janet has 3 apples and buys 2 more. How many now?"
    assert record.completions == ["Step 1: She starts with 3 apples.", "Step 2: 3 + 2 = 6.", "Step 3: The answer is: 6"]
    assert record.labels == [True, False, False]
    assert record.meta["task"] == "GSM8K"


def test_math_shepherd_errors(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "ms.jsonl", [
        {"input": SHEPHERD_INPUT, "label": _shepherd_label("+-+")},
        {"input": SHEPHERD_INPUT, "label": _shepherd_label("+?+")},
    ])
    with pytest.raises(LabelFileError, match=r"ms\.jsonl line 2: 'label' has '\?' where step tag 2 is"):
        read_step_labels(path, "math_shepherd")
    with pytest.raises(ValueError, match="needs 'input' and 'label'"):
        math_shepherd_to_step_labels({"prompt": "q"})
    no_step_1 = "A question? First ки"
    with pytest.raises(ValueError, match="no 'Step 1:'"):
        math_shepherd_to_step_labels({"input": no_step_1, "label": "A question? First +"})


# ---------------------------------------------------------------- PRM800K


def _prm800k_row(steps: list[dict], finish_reason: str = "found_error") -> dict:
    return {"question": {"problem": "What is 2+2?", "ground_truth_answer": "4"},
            "label": {"steps": steps, "finish_reason": finish_reason}}


def _step(*ratings_and_texts, chosen=0, human=None) -> dict:
    return {"completions": [{"text": t, "rating": r, "flagged": None} for r, t in ratings_and_texts],
            "human_completion": human, "chosen_completion": chosen}


def test_prm800k_follows_the_chosen_trajectory_and_ends_at_the_first_wrong_alternative() -> None:
    row = _prm800k_row([
        _step((0, "I add the numbers.")),
        _step((1, "2 + 2 = 4.\n\n# Answer\n\n4")),
        _step((-1, "So it is 5."), (0, "Hmm."), chosen=None),
    ])
    record = prm800k_to_step_labels(row)
    assert record.prompt == "What is 2+2?"
    assert record.completions == ["I add the numbers.", "2 + 2 = 4.\n# Answer\n4", "So it is 5."]
    assert record.labels == [True, True, False]
    assert prm800k_to_step_labels(row, neutral_as=False).labels == [False, True, False]


def test_prm800k_human_completion_is_a_good_step_and_bad_problems_are_skipped() -> None:
    row = _prm800k_row([_step((-1, "Wrong."), chosen=None, human={"text": "Right step.", "rating": None})], "solution")
    assert prm800k_to_step_labels(row).completions == ["Right step."]
    assert prm800k_to_step_labels(row).labels == [True]
    assert prm800k_to_step_labels(_prm800k_row([_step((1, "x"))], "bad_problem")) is None


def test_prm800k_bad_rating_names_the_row(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "phase2.jsonl", [_prm800k_row([_step((2, "x"))])])
    with pytest.raises(LabelFileError, match=r"phase2\.jsonl line 1: rating must be -1, 0 or 1, got 2"):
        read_step_labels(path, "prm800k")


# ---------------------------------------------------------------- mixing


def _source(tag: str, size: int) -> list[StepLabels]:
    return [StepLabels(f"{tag}{i}", ["s"], [True]) for i in range(size)]


def test_mix_counts_follow_the_weights_without_oversampling() -> None:
    mixed = mix_step_labels([_source("a", 30), _source("b", 30)], [3, 1], seed=0)
    assert sum(r.prompt.startswith("a") for r in mixed) == 30
    assert sum(r.prompt.startswith("b") for r in mixed) == 10
    assert len({r.prompt for r in mixed}) == 40  # no duplicates
    assert [r.prompt for r in mixed] == [r.prompt for r in mix_step_labels([_source("a", 30), _source("b", 30)], [3, 1], 0)]
    assert [r.prompt for r in mixed] != [r.prompt for r in mix_step_labels([_source("a", 30), _source("b", 30)], [3, 1], 1)]


def test_mix_weight_zero_drops_a_source_and_bad_weights_fail() -> None:
    mixed = mix_step_labels([_source("a", 5), _source("b", 5)], [1, 0])
    assert sorted(r.prompt for r in mixed) == [f"a{i}" for i in range(5)]
    with pytest.raises(ValueError, match="1 weights for 2 sources"):
        mix_step_labels([_source("a", 5), _source("b", 5)], [1])
    with pytest.raises(ValueError, match="weights must be finite"):
        mix_step_labels([_source("a", 5)], [-1])


def test_load_step_labels_concatenates_or_mixes_files(tmp_path: Path) -> None:
    first = write_step_labels(_source("a", 4), tmp_path / "a.jsonl")
    second = write_step_labels(_source("b", 2), tmp_path / "b.jsonl")
    assert [r.prompt for r in load_step_labels([first, second])] == ["a0", "a1", "a2", "a3", "b0", "b1"]
    mixed = load_step_labels([first, second], weights=[1, 1], seed=0)
    assert sorted(r.prompt[0] for r in mixed) == ["a", "a", "b", "b"]


# ---------------------------------------------------------------- oracle labels


def test_oracle_labels_mark_the_first_wrong_step_and_all_after_it() -> None:
    problem = generate_problems("train", 1, seed=0, levels=(3,))[0]
    steps = gold_steps(problem)
    assert oracle_labels(problem, steps) == [True] * len(steps)
    broken = list(steps)
    broken[1] = broken[1].replace("=", "= 1", 1)
    assert oracle_labels(problem, broken) == [True] + [False] * (len(steps) - 1)


# ---------------------------------------------------------------- PRM input layout


class CharTokenizer:
    """One token per character (id = code point); bos id 1."""

    bos_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


def test_tokenize_steps_puts_each_label_on_the_last_separator_token() -> None:
    tokens = tokenize_steps(CharTokenizer(), "Q?", ["ab", "c"], [True, 0.7])
    # [bos] Q ? a b \n \n c \n \n
    assert tokens.input_ids == [1, ord("Q"), ord("?"), 97, 98, 10, 10, 99, 10, 10]
    assert tokens.step_positions == [6, 9]
    assert tokens.labels == [-100.0] * 6 + [1.0, -100.0, -100.0, 0.7]


def test_tokenize_steps_truncation_and_last_step_only() -> None:
    tokens = tokenize_steps(CharTokenizer(), "Q?", ["ab", "c"], [True, 0.7], max_length=8)
    assert tokens.input_ids == [1, ord("Q"), ord("?"), 97, 98, 10, 10, 99]
    assert tokens.step_positions == [6]
    last_only = tokenize_steps(CharTokenizer(), "Q?", ["ab", "c"], [True, 0.7], train_on_last_step_only=True)
    assert last_only.labels[6] == -100.0
    assert last_only.labels[9] == 0.7
    no_labels = tokenize_steps(CharTokenizer(), "Q?", ["ab", "c"])
    assert set(no_labels.labels) == {-100.0}
    assert no_labels.step_positions == [6, 9]
    with pytest.raises(ValueError, match="1 labels for 2 steps"):
        tokenize_steps(CharTokenizer(), "Q?", ["ab", "c"], [True])
