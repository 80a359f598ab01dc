"""Tests for JSONL helpers: line-numbered errors, atomic writes and whole-line appends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_prep.io import append_jsonl, read_jsonl, write_jsonl
from data_prep.records import Problem


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rows.jsonl"
    rows = [{"a": 1, "text": "é ∑"}, {"a": 2, "text": "x"}]
    assert write_jsonl(path, rows) == 2
    assert list(read_jsonl(path)) == [(1, rows[0]), (2, rows[1])]
    assert "é ∑" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes


def test_write_accepts_records_with_to_dict(tmp_path: Path) -> None:
    path = tmp_path / "problems.jsonl"
    write_jsonl(path, [Problem(id="p/0", problem="1+1?", answer="2", level=1, source="t")])
    assert list(read_jsonl(path)) == [(1, {"id": "p/0", "problem": "1+1?", "answer": "2", "level": 1, "source": "t"})]


def test_read_skips_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n', encoding="utf-8")
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, {"a": 2})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": \n', r"bad\.jsonl: line 2: invalid JSON"),
        (b'{"a": 1}\n{"a": "\xff"}\n', r"bad\.jsonl: line 2: not valid UTF-8"),
        (b'{"a": 1}\n[1, 2]\n', r"bad\.jsonl: line 2: expected a JSON object, got list"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        list(read_jsonl(path))


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_jsonl(path, rows())
    assert list(read_jsonl(path)) == [(1, {"a": 1})]
    assert os.listdir(tmp_path) == ["rows.jsonl"]


def test_append_adds_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    assert append_jsonl(path, [{"a": 1}]) == 1
    assert append_jsonl(path, [{"a": 2}, {"a": 3}]) == 2
    assert append_jsonl(path, []) == 0
    assert [row["a"] for _, row in read_jsonl(path)] == [1, 2, 3]


def test_append_starts_a_fresh_line_after_a_cut_off_write(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": ', encoding="utf-8")
    append_jsonl(path, [{"a": 2}])
    assert path.read_text(encoding="utf-8").splitlines() == ['{"a": 1}', '{"a": ', '{"a": 2}']


def test_append_with_an_unserialisable_row_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"a": 1}])
    with pytest.raises(TypeError):
        append_jsonl(path, [{"a": 2}, {"a": object()}])
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n'
