"""Stepwise-supervision IO, Math-Shepherd/PRM800K/RLHFlow converters, source mixing, oracle labels and the PRM input layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from data_prep.labels import (
    LABEL_FORMATS,
    LabelFileError,
    convert_label_file,
    file_kind,
    iter_rows,
    load_step_labels,
    math_shepherd_to_step_labels,
    mix_step_labels,
    oracle_labels,
    prm800k_to_step_labels,
    read_step_labels,
    rlhflow_to_step_labels,
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


def test_missing_file_and_unknown_content_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_step_labels(tmp_path / "absent.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(LabelFileError, match=r"x\.csv: not JSONL \(one JSON object per line\), a JSON array of "
                                              r"objects, Parquet or a saved `datasets` directory \(it starts with b'a,b"):
        read_step_labels(tmp_path / "x.csv")
    (tmp_path / "object.json").write_text('{"rows": [1, 2]}')  # one object, not rows: read as a one-line JSONL
    with pytest.raises(LabelFileError, match=r"object\.json line 1: fields \['rows'\]: missing"):
        read_step_labels(tmp_path / "object.json")


def test_file_kind_is_told_from_content_not_suffix(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet_named_jsonl = tmp_path / "rows.jsonl"
    pq.write_table(pa.table({"prompt": ["q"], "completions": [["a"]], "labels": [[1.0]]}), parquet_named_jsonl)
    array_named_jsonl = _write_lines(tmp_path / "array.jsonl", ["\ufeff  [", json.dumps(GOOD), "]"])
    lines_named_json = _write_lines(tmp_path / "lines.json", [GOOD, GOOD])
    assert [file_kind(p) for p in (parquet_named_jsonl, array_named_jsonl, lines_named_json, tmp_path)] == [
        "parquet", "json_array", "jsonl", "dataset_dir"]
    assert [where for where, _ in iter_rows(array_named_jsonl)] == ["row 1"]
    assert [where for where, _ in iter_rows(lines_named_json)] == ["line 1", "line 2"]
    assert read_step_labels(parquet_named_jsonl)[0].completions == ["a"]
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(LabelFileError, match=r"latin1\.jsonl line 1: not valid UTF-8 \(byte 15 of the line\)"):
        read_step_labels(tmp_path / "latin1.jsonl")


# ---------------------------------------------------------------- Math-Shepherd

SHEPHERD_INPUT = (
    "Janet has 3 apples and buys 2 more. How many now? Step 1: She starts with 3 apples. ки\n"
    "Step 2: 3 + 2 = 6. ки\nStep 3: The answer is: 6 ки"
)


def _shepherd_label(text: str, marks: str) -> str:
    """Math-Shepherd's `label`: `input` with the i-th tag replaced by marks[i]."""
    parts = text.split("ки")
    assert len(parts) == len(marks) + 1
    return "".join(part + mark for part, mark in zip(parts, marks)) + parts[-1]


def test_math_shepherd_row_is_split_at_step_1_with_labels_from_the_tags() -> None:
    row = {"input": SHEPHERD_INPUT, "label": _shepherd_label(SHEPHERD_INPUT, "+--"), "task": "GSM8K"}
    record = math_shepherd_to_step_labels(row)
    assert record.prompt == "Janet has 3 apples and buys 2 more. How many now?"
    assert record.completions == ["Step 1: She starts with 3 apples.", "Step 2: 3 + 2 = 6.", "Step 3: The answer is: 6"]
    assert record.labels == [True, False, False]
    assert record.meta["task"] == "GSM8K"


def test_math_shepherd_stray_tag_in_the_question_drops_its_label_and_the_file_goes_on(tmp_path: Path) -> None:
    stray = "Tom has 3 boxes ки of 4 pens. How many pens? Step 1: 3 * 4 = 12. ки\nStep 2: The answer is: 12 ки"
    rows = [{"input": stray, "label": _shepherd_label(stray, "-+-"), "task": "GSM8K"},
            {"input": SHEPHERD_INPUT, "label": _shepherd_label(SHEPHERD_INPUT, "+++"), "task": "GSM8K"}]
    records, counts = convert_label_file(_write_lines(tmp_path / "ms.jsonl", rows), "math_shepherd")
    # The stray tag's '-' is dropped; the question is kept whole, without the tag.
    assert records[0].prompt == "Tom has 3 boxes of 4 pens. How many pens?"
    assert records[0].completions == ["Step 1: 3 * 4 = 12.", "Step 2: The answer is: 12"]
    assert records[0].labels == [True, False]
    assert records[1].labels == [True, True, True]
    assert (counts.rows, counts.examples, counts.steps, counts.positive_steps) == (2, 2, 5, 4)
    assert counts.dropped == {"labels at a stray step tag inside the question": 1}


def test_math_shepherd_errors(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "ms.jsonl", [
        {"input": SHEPHERD_INPUT, "label": _shepherd_label(SHEPHERD_INPUT, "+-+")},
        {"input": SHEPHERD_INPUT, "label": _shepherd_label(SHEPHERD_INPUT, "+?+")},
    ])
    with pytest.raises(LabelFileError, match=r"ms\.jsonl line 2: 'label' has '\?' where step tag 2 is"):
        read_step_labels(path, "math_shepherd")
    with pytest.raises(ValueError, match="needs 'input', 'label'"):
        math_shepherd_to_step_labels({"prompt": "q"})
    no_step_1 = "A question? First ки"
    with pytest.raises(ValueError, match="no 'Step 1:'"):
        math_shepherd_to_step_labels({"input": no_step_1, "label": "A question? First +"})


# ---------------------------------------------------------------- PRM800K

# A phase-1 line in the published layout (github.com/openai/prm800k): at step 0 the labeller rated two
# completions and chose the first; at step 1 both model completions were rejected (one -1, one neutral 0) and
# the labeller wrote the step (`human_completion`), ending the solution.
PRM800K_PHASE1 = {
    "labeler": "0c1d2e3f", "timestamp": "2022-08-01T10:00:00", "generation": None,
    "is_quality_control_question": False, "is_initial_screening_question": False,
    "question": {"problem": "What is $2+3\\cdot 4$?", "ground_truth_answer": "14"},
    "label": {
        "steps": [
            {"completions": [{"text": "Multiplication first: $3\\cdot 4=12$.", "rating": 1, "flagged": None},
                             {"text": "Adding first: $2+3=5$.", "rating": -1, "flagged": False}],
             "human_completion": None, "chosen_completion": 0},
            {"completions": [{"text": "Then $2+12=15$.", "rating": -1, "flagged": None},
                             {"text": "Let me write that down.", "rating": 0, "flagged": None}],
             "human_completion": {"text": "Then $2+12=14$.\n\n# Answer\n\n14", "rating": None, "source": "human",
                                  "flagged": False, "corrected_rating": None},
             "chosen_completion": None},
        ],
        "total_time": 61000, "finish_reason": "solution",
    },
}
FIRST = "Multiplication first: $3\\cdot 4=12$."


def test_prm800k_gives_one_example_per_rated_alternative_and_the_trajectory() -> None:
    examples = prm800k_to_step_labels(PRM800K_PHASE1)
    assert [(e.prompt, e.completions, e.labels) for e in examples] == [
        ("What is $2+3\\cdot 4$?", ["Adding first: $2+3=5$."], [False]),
        ("What is $2+3\\cdot 4$?", [FIRST, "Then $2+12=15$."], [True, False]),
        ("What is $2+3\\cdot 4$?", [FIRST, "Let me write that down."], [True, True]),
        ("What is $2+3\\cdot 4$?", [FIRST, "Then $2+12=14$.\n# Answer\n14"], [True, True]),
    ]
    # TRL's converter counts a neutral rating as bad: neutral_as=False.
    assert [e.labels for e in prm800k_to_step_labels(PRM800K_PHASE1, neutral_as=False)] == [
        [False], [True, False], [True, False], [True, True]]


def test_prm800k_trajectory_stops_at_a_step_with_no_chosen_or_human_completion() -> None:
    row = _prm800k_row([
        _step((0, "I add the numbers.")),
        _step((1, "2 + 2 = 4.\n\n# Answer\n\n4")),
        _step((-1, "So it is 5."), (None, "Unrated."), chosen=None),
    ])
    dropped: Counter = Counter()
    examples = prm800k_to_step_labels(row, dropped=dropped)
    assert [(e.completions, e.labels) for e in examples] == [
        (["I add the numbers.", "2 + 2 = 4.\n# Answer\n4", "So it is 5."], [True, True, False]),
        (["I add the numbers.", "2 + 2 = 4.\n# Answer\n4"], [True, True]),
    ]
    assert dropped == {"unrated completions": 1}
    assert prm800k_to_step_labels(_prm800k_row([_step((1, "x"))], "bad_problem"), dropped=dropped) == []
    assert dropped["rows marked bad_problem"] == 1


def test_prm800k_file_drops_screening_rows_and_repeated_quality_control_examples(tmp_path: Path) -> None:
    quality_control = {**PRM800K_PHASE1, "is_quality_control_question": True}
    screening = {**PRM800K_PHASE1, "is_initial_screening_question": True}
    rows = [quality_control, {**quality_control, "labeler": "another"}, screening, PRM800K_PHASE1]
    path = tmp_path / "phase1_train.json"
    path.write_text(json.dumps(rows), encoding="utf-8")  # a JSON array
    records, counts = convert_label_file(path, "prm800k")
    # The first QC row gives its 4 examples, the second the same 4 (dropped); the screening row none; the
    # ordinary row its 4 again (rows outside quality control are not deduplicated).
    assert len(records) == 8 and records[:4] == records[4:] == prm800k_to_step_labels(PRM800K_PHASE1)
    assert (counts.rows, counts.examples, counts.steps, counts.positive_steps) == (4, 8, 14, 10)
    assert counts.dropped == {"repeated examples of quality-control questions": 4,
                              "rows of initial screening questions": 1}


def test_prm800k_bad_rating_names_the_row_and_field(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "phase2.jsonl", [_prm800k_row([_step((2, "x"))])])
    with pytest.raises(LabelFileError, match=r"^\S+phase2\.jsonl line 1: 'label\.steps\[0\]\.completions\[0\]\.rating' "
                                             r"must be -1, 0 or 1, got 2$"):
        read_step_labels(path, "prm800k")
    with pytest.raises(ValueError, match=r"'label\.steps\[0\]\.chosen_completion' is 3 but there are 1 completions"):
        prm800k_to_step_labels(_prm800k_row([_step((1, "x"), chosen=3)]))


def _prm800k_row(steps: list[dict], finish_reason: str = "found_error") -> dict:
    return {"question": {"problem": "What is 2+2?", "ground_truth_answer": "4"},
            "label": {"steps": steps, "finish_reason": finish_reason}}


def _step(*ratings_and_texts, chosen=0, human=None) -> dict:
    return {"completions": [{"text": t, "rating": r, "flagged": None} for r, t in ratings_and_texts],
            "human_completion": human, "chosen_completion": chosen}


# ---------------------------------------------------------------- RLHFlow

RLHFLOW_ROW = {"conversations": [
    {"role": "user", "content": "Ann has 5 apples and eats 2. How many are left? Step 1: 5 - 2 = 3."},
    {"role": "assistant", "content": "+"},
    {"role": "user", "content": "Step 2: The answer is: 4"},
    {"role": "assistant", "content": "-"},
]}


def test_rlhflow_conversation_becomes_prompt_steps_and_labels(tmp_path: Path) -> None:
    record = rlhflow_to_step_labels(RLHFLOW_ROW)
    assert record.prompt == "Ann has 5 apples and eats 2. How many are left?"
    assert record.completions == ["Step 1: 5 - 2 = 3.", "Step 2: The answer is: 4"]
    assert record.labels == [True, False]
    no_marker = {"conversations": [{"role": "user", "content": "How many? We subtract: 5 - 2 = 3."},
                                   {"role": "assistant", "content": "+"},
                                   {"role": "user", "content": "So 3."}, {"role": "assistant", "content": "+"}]}
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"  # RLHFlow's sets ship as Parquet
    pq.write_table(pa.Table.from_pylist([RLHFLOW_ROW, no_marker, {"conversations": no_marker["conversations"][:2]}]),
                   path)
    records, counts = convert_label_file(path, "rlhflow")
    # Without 'Step 1:' the first turn is the prompt and its label is dropped; a row left with no step is dropped.
    assert [(r.prompt, r.completions, r.labels) for r in records] == [
        (record.prompt, record.completions, record.labels),
        ("How many? We subtract: 5 - 2 = 3.", ["So 3."], [True]),
    ]
    assert counts.dropped == {"first-step labels (no 'Step 1:' splits the problem from the first step)": 2,
                              "rows with no labelled step": 1}
    # The training arm's loader takes the format by name (`train_prm.py --data_format rlhflow`).
    assert "rlhflow" in LABEL_FORMATS and load_step_labels([path, path], "rlhflow") == records + records


@pytest.mark.parametrize(
    ("conversations", "message"),
    [
        (RLHFLOW_ROW["conversations"][:3], "'conversations' has 3 turns; expected pairs"),
        ([RLHFLOW_ROW["conversations"][0]] * 2, "'conversations[1].role' is 'user'; expected 'assistant'"),
        ([RLHFLOW_ROW["conversations"][0], {"role": "assistant", "content": "yes"}],
         "'conversations[1].content' is 'yes'; an assistant turn is '+' or '-'"),
        ([{"role": "user"}, {"role": "assistant", "content": "+"}],
         "'conversations[0]' must be an object with 'role' and a string 'content'"),
    ],
)
def test_rlhflow_errors_name_row_and_field(tmp_path: Path, conversations, message: str) -> None:
    path = _write_lines(tmp_path / "rl.jsonl", [RLHFLOW_ROW, {"conversations": conversations}])
    with pytest.raises(LabelFileError) as error:
        read_step_labels(path, "rlhflow")
    assert str(error.value).startswith(f"{path} line 2: {message}")


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


OUTCOME_PROBLEM = "Start with 2.\n(1) Add 3.\nWhat is the final number?"


def test_an_outcome_row_gives_its_steps_each_carrying_the_solutions_label(tmp_path: Path) -> None:
    from data_prep.labels import outcome_row, parse_outcome_row

    steps = ["(1) Add 3: 2 + 3 = 6", "Therefore, the final answer is: $\\boxed{6}$."]
    row = outcome_row(OUTCOME_PROBLEM, steps, False, {"problem_id": "p1"})
    assert row == {"prompt": OUTCOME_PROBLEM, "completion": "\n\n".join(steps), "label": False,
                   "meta": {"problem_id": "p1"}}
    record = parse_outcome_row(row)
    assert (record.completions, record.labels) == (steps, [False, False])
    assert record.meta == {"problem_id": "p1", "outcome": False}
    path = tmp_path / "outcome.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "label": "yes"}) + "\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match=rf"{path} line 2: 'label' must be true or false"):
        read_step_labels(path, "outcome")
    # Read as step labels it is refused, with the format it is in.
    with pytest.raises(LabelFileError, match=rf"{path} line 1: .*read it with data_format outcome"):
        read_step_labels(path, "stepwise")


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": OUTCOME_PROBLEM, "completion": "  ", "label": True}, "'completion' must be the non-empty solution"),
    ({"prompt": OUTCOME_PROBLEM, "completions": ["a"], "label": True}, r"missing \['completion'\], unknown"),
    ({"prompt": "", "completion": "a", "label": True}, "'prompt' must be a non-empty string"),
])
def test_bad_outcome_rows_are_refused_naming_the_field(row: dict, message: str) -> None:
    from data_prep.labels import parse_outcome_row

    with pytest.raises(ValueError, match=message):
        parse_outcome_row(row)
