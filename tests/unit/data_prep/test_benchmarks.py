"""Tests for benchmark loaders: MATH-500, GSM8K, generic JSONL/Parquet, and one clear error per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.benchmarks import (
    DEFAULT_GSM8K_PATH,
    DEFAULT_MATH500_PATH,
    FieldMapping,
    load_benchmark,
    load_gsm8k,
    load_math500,
    load_problems,
)
from data_prep.records import Problem

MATH500_ROW = {
    "problem": "What is $1+1$?",
    "solution": "$1+1=\\boxed{2}$.",
    "answer": "2",
    "subject": "Prealgebra",
    "level": 1,
    "unique_id": "test/prealgebra/1.json",
}
GSM8K_ROW = {"question": "How many?", "answer": "Some reasoning <<2*500=1000>>\n#### 1,000", "idx": 0}


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path


def test_load_math500_small_file(tmp_path: Path) -> None:
    second = dict(MATH500_ROW, unique_id="test/algebra/2.json", level=5, answer="\\frac{1}{2}")
    path = write_lines(tmp_path / "m.jsonl", [MATH500_ROW, second])
    assert load_math500(path) == [
        Problem(id="test/prealgebra/1.json", problem="What is $1+1$?", answer="2", level=1, source="math500"),
        Problem(id="test/algebra/2.json", problem="What is $1+1$?", answer="\\frac{1}{2}", level=5, source="math500"),
    ]


def test_load_gsm8k_takes_the_number_after_the_marker_without_commas(tmp_path: Path) -> None:
    second = {"question": "And now?", "answer": "x\n#### 7"}
    path = write_lines(tmp_path / "g.jsonl", [GSM8K_ROW, second])
    assert load_gsm8k(path) == [
        Problem(id="gsm8k/0", problem="How many?", answer="1000", level=None, source="gsm8k"),
        Problem(id="gsm8k/1", problem="And now?", answer="7", level=None, source="gsm8k"),
    ]


def test_generic_jsonl_with_field_mapping(tmp_path: Path) -> None:
    rows = [{"q": "Q one", "sol": "so ANSWER: 12", "key": "a", "difficulty": "Level 3"}]
    path = write_lines(tmp_path / "mine.jsonl", rows)
    fields = FieldMapping(problem="q", answer="sol", id="key", level="difficulty", answer_regex=r"ANSWER:\s*(\S+)")
    assert load_problems(path, fields=fields) == [Problem(id="a", problem="Q one", answer="12", level=3, source="mine")]


def test_generic_parquet_with_field_mapping(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "bench.parquet"
    pq.write_table(pa.table({"question": ["Q0", "Q1"], "final": ["3", "\\pi"], "lvl": [2, None]}), path)
    problems = load_problems(path, fields=FieldMapping(problem="question", answer="final", level="lvl"), source="mine")
    assert problems == [
        Problem(id="mine/0", problem="Q0", answer="3", level=2, source="mine"),
        Problem(id="mine/1", problem="Q1", answer="\\pi", level=None, source="mine"),
    ]


def test_parquet_mapping_naming_a_missing_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "bench.parquet"
    pq.write_table(pa.table({"question": ["Q0"], "final": ["3"]}), path)
    with pytest.raises(ValueError, match=r"bench\.parquet: the field mapping's answer='answer' is not a column"):
        load_problems(path, fields=FieldMapping(problem="question"))


BAD_INPUTS = [
    # (file lines, loader, expected message pattern)
    ([MATH500_ROW, {k: v for k, v in MATH500_ROW.items() if k != "answer"}], "math500", r"line 2: missing field 'answer'"),
    ([MATH500_ROW, dict(MATH500_ROW, unique_id="b", problem="  ")], "math500", r"line 2: field 'problem' \(problem\) is empty"),
    ([MATH500_ROW, dict(MATH500_ROW, unique_id="b", level=7)], "math500", r"line 2: field 'level' \(level\) must be an integer 1-5"),
    ([MATH500_ROW, dict(MATH500_ROW, unique_id="b", level="Level ?")], "math500", r"line 2: field 'level'"),
    ([MATH500_ROW, MATH500_ROW], "math500", r"line 2: duplicate id 'test/prealgebra/1.json' \(first on line 1\)"),
    ([MATH500_ROW, '{"problem": "x", '], "math500", r"line 2: invalid JSON"),
    ([MATH500_ROW, "[1, 2]"], "math500", r"line 2: expected a JSON object"),
    ([GSM8K_ROW, {"question": "Q", "answer": "no marker here"}], "gsm8k", r"line 2: field 'answer' \(answer\) has no '####' marker"),
    ([GSM8K_ROW, {"question": "Q", "answer": "x ####  "}], "gsm8k", r"line 2: field 'answer' \(answer\) gives an empty gold answer"),
    ([GSM8K_ROW], "math500", r"line 1: the field mapping's problem='problem' is not a field of this file"),
    ([MATH500_ROW, dict(MATH500_ROW, unique_id="b", answer=None)], "math500", r"line 2: field 'answer' \(answer\) must be a string, got NoneType"),
    ([], "math500", r"no problems in file"),
]


@pytest.mark.parametrize(("lines", "loader", "message"), BAD_INPUTS)
def test_malformed_input_gives_one_clear_error(tmp_path: Path, lines: list, loader: str, message: str) -> None:
    path = write_lines(tmp_path / "bench.jsonl", lines)
    load = {"math500": load_math500, "gsm8k": load_gsm8k}[loader]
    with pytest.raises(ValueError, match=r"bench\.jsonl: " + message):
        load(path)


def test_non_utf8_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_bytes(json.dumps(MATH500_ROW).encode() + b'\n{"problem": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bench\.jsonl: line 2: not valid UTF-8"):
        load_math500(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"answer_after": "####", "answer_regex": "(x)"}, "at most one of"),
        ({"answer_regex": "x+"}, "has no capture group"),
        ({"answer_regex": "("}, "not a valid regex"),
        ({"problem": ""}, r"FieldMapping\.problem must name a column"),
    ],
)
def test_bad_field_mapping(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FieldMapping(**kwargs)


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    csv = tmp_path / "bench.csv"
    csv.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bench\.csv: unsupported file type '\.csv'"):
        load_problems(csv)
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl: no such file"):
        load_problems(tmp_path / "nope.jsonl")


def test_load_benchmark_dispatches_on_name_and_path(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.jsonl", [MATH500_ROW, dict(MATH500_ROW, unique_id="b")])
    assert [p.id for p in load_benchmark("math500", path=path)] == ["test/prealgebra/1.json", "b"]
    assert [p.id for p in load_benchmark("math500", path=path, limit=1)] == ["test/prealgebra/1.json"]
    generic = load_benchmark(str(path), fields=FieldMapping(id="unique_id"), source="mine")
    assert [(p.id, p.source, p.level) for p in generic] == [("test/prealgebra/1.json", "mine", None), ("b", "mine", None)]


def test_load_benchmark_rejects_unknown_names_options_and_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'math5000'; use one of math500, gsm8k, synthetic-test"):
        load_benchmark("math5000")
    with pytest.raises(ValueError, match="limit must be >= 1"):
        load_benchmark("math500", limit=0)
    path = write_lines(tmp_path / "m.jsonl", [MATH500_ROW])
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['path'\]"):
        load_benchmark(str(path), path=path)


def test_load_benchmark_synthetic_test() -> None:
    problems = load_benchmark("synthetic-test", num_per_level=2, seed=0)
    assert len(problems) == 10
    assert sorted({p.level for p in problems}) == [1, 2, 3, 4, 5]
    assert {p.source for p in problems} == {"synthetic"}


@pytest.mark.skipif(not DEFAULT_MATH500_PATH.is_file(), reason=f"MATH-500 file not found at {DEFAULT_MATH500_PATH}")
def test_real_math500_file() -> None:
    problems = load_math500()
    assert len(problems) == 500
    assert problems[0].id == "test/precalculus/807.json"
    assert problems[0].answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert [sum(p.level == level for p in problems) for level in range(1, 6)] == [43, 90, 105, 128, 134]


@pytest.mark.skipif(not DEFAULT_GSM8K_PATH.is_file(), reason=f"GSM8K file not found at {DEFAULT_GSM8K_PATH}")
def test_real_gsm8k_file() -> None:
    problems = load_gsm8k()
    assert len(problems) == 1319
    assert (problems[0].id, problems[0].answer, problems[0].level) == ("gsm8k/0", "18", None)
    assert all(p.answer.lstrip("-").replace(".", "", 1).isdigit() for p in problems)
