"""Tests for JSONL helpers: line-numbered errors, atomic writes and whole-line appends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_prep.io import append_jsonl, atomic_write_lines, atomic_write_text, read_jsonl, repair_torn_tail, write_jsonl
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


def test_append_cuts_a_torn_last_line_first(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": ', encoding="utf-8")  # a kill in the middle of a write
    append_jsonl(path, [{"a": 2}])
    assert path.read_text(encoding="utf-8").splitlines() == ['{"a": 1}', '{"a": 2}']


def test_repair_completes_a_whole_last_row_and_cuts_a_torn_one(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"a": 1}\n{"a": 2}', encoding="utf-8")  # cut just before its newline: the row is whole
    assert repair_torn_tail(whole) == 0
    assert whole.read_text(encoding="utf-8") == '{"a": 1}\n{"a": 2}\n'
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes('{"a": 1}\n{"b": "\u00e9'.encode()[:-1])  # cut inside a two-byte character
    assert repair_torn_tail(torn) == len('{"b": "\u00e9'.encode()) - 1
    assert torn.read_text(encoding="utf-8") == '{"a": 1}\n'
    only = tmp_path / "only.jsonl"
    only.write_text('{"a": ', encoding="utf-8")
    repair_torn_tail(only)
    assert only.read_bytes() == b""
    assert repair_torn_tail(tmp_path / "missing.jsonl") == 0


def test_read_skips_a_torn_tail_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": ', encoding="utf-8")
    assert [row for _, row in read_jsonl(path, skip_torn_tail=True)] == [{"a": 1}]
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        list(read_jsonl(path))
    path.write_text('{"a": 1}\n{"a": 2}', encoding="utf-8")  # whole last row without newline: kept
    assert [row["a"] for _, row in read_jsonl(path, skip_torn_tail=True)] == [1, 2]
    path.write_text("not json at all", encoding="utf-8")  # one line of something else: no torn row, an error
    with pytest.raises(ValueError, match="rows.jsonl: line 1: invalid JSON"):
        list(read_jsonl(path, skip_torn_tail=True))


def test_atomic_write_text_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.yaml"
    atomic_write_text(path, "a: 1\n")
    assert path.read_text(encoding="utf-8") == "a: 1\n"

    def failing_lines():
        yield "b: 2\n"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_lines(path, failing_lines())
    assert path.read_text(encoding="utf-8") == "a: 1\n"
    assert os.listdir(path.parent) == ["config.yaml"]


def test_append_with_an_unserialisable_row_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"a": 1}])
    with pytest.raises(TypeError):
        append_jsonl(path, [{"a": 2}, {"a": object()}])
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PAR1\x15\x04\x15\x00", r"results\.jsonl: a Parquet file, not JSON lines"),
        (b'[{"a": 1},\n {"a": 2}]\n', r"results\.jsonl: a JSON array, not JSON lines"),
        (b'  \n[{"a": 1}]', r"results\.jsonl: a JSON array, not JSON lines"),
    ],
)
def test_a_whole_file_in_another_format_is_named_once(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(content)
    for skip in (False, True):  # not mistaken for a torn last line either
        with pytest.raises(ValueError, match=message):
            list(read_jsonl(path, skip_torn_tail=skip))
