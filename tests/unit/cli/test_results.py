"""Result files: row <-> dict round trip, crash-safe appends with torn-line recovery, done keys, shard merging."""

from __future__ import annotations

import json
import math
import os

import pytest

from inference.results import (
    append_results,
    done_keys,
    expand_inputs,
    merge_results,
    read_result_dicts,
    read_results,
    row_from_dict,
    row_key,
    row_to_dict,
)
from inference.types import Compute, ResultRow, ScoredCompletion


def make_row(problem_id: str = "p0", strategy: str = "best_of_n", n: int = 2, *, beam_width: int | None = None,
             seed: int = 0, scored: bool = True, seconds: float = 0.25) -> ResultRow:
    completions = (
        ScoredCompletion(
            text="Add 1.\n\nTherefore, the final answer is: $\\boxed{3}$.",
            steps=("Add 1.", "Therefore, the final answer is: $\\boxed{3}$."),
            step_scores=(0.5, 0.75) if scored else (),
            agg_score=0.75 if scored else None,
            answer="3",
            num_tokens=12,
            finished=True,
        ),
        ScoredCompletion(text="Add", steps=("Add",), step_scores=(0.125,) if scored else (),
                         agg_score=0.125 if scored else None, answer=None, num_tokens=1, finished=False),
    )
    return ResultRow(
        problem_id=problem_id, source="synthetic", level=None if problem_id.endswith("x") else 2,
        strategy=strategy, n=n, beam_width=beam_width, seed=seed, gold="3", completions=completions,
        pred="3", correct=True, compute=Compute(policy_tokens=13, prm_tokens=40, model_calls=2, seconds=seconds),
        policy="tiny-policy", prm="tiny-prm" if scored else "",
        settings={"n": n, "aggregation": "last", "temperature": 0.8, "beam_width": beam_width},
    )


def test_row_round_trip():
    row = make_row(beam_width=4, strategy="beam_search", n=4)
    data = row_to_dict(row)
    assert isinstance(data["settings_json"], str)
    assert json.loads(data["settings_json"]) == row.settings
    assert row_from_dict(json.loads(json.dumps(data))) == row
    unscored = make_row("q9x", scored=False)
    assert row_from_dict(json.loads(json.dumps(row_to_dict(unscored)))) == unscored


def test_forward_tokens_round_trip_and_older_rows_read_as_not_counted():
    import dataclasses

    row = dataclasses.replace(make_row(), compute=Compute(policy_tokens=13, prm_tokens=40, policy_forward_tokens=90,
                                                          prm_forward_tokens=25, model_calls=2, seconds=0.25))
    data = json.loads(json.dumps(row_to_dict(row)))
    assert (data["compute"]["policy_forward_tokens"], data["compute"]["prm_forward_tokens"]) == (90, 25)
    assert row_from_dict(data) == row
    # A file written before forward tokens were counted: read as not counted, FLOPs then take the scored tokens.
    for key in ("policy_forward_tokens", "prm_forward_tokens"):
        del data["compute"][key]
    older = row_from_dict(data)
    assert (older.compute.policy_forward_tokens, older.compute.prm_forward_tokens) == (None, None)
    assert older.compute.forward_tokens == (13, 40)


def test_row_to_dict_refuses_non_finite_scores():
    row = make_row()
    bad = ResultRow(**{**row.__dict__, "completions": (
        ScoredCompletion("x", ("x",), (math.nan,), math.nan, None, 1, False),)})
    with pytest.raises(ValueError, match="problem 'p0'.*nan"):
        row_to_dict(bad)


def test_row_from_dict_names_where_a_key_is_missing_or_unknown():
    data = row_to_dict(make_row())
    del data["gold"]
    data["extra"] = 1
    with pytest.raises(ValueError, match=r"results.jsonl:7: not a ttc result row \(missing keys \['gold'\], unknown keys \['extra'\]\)"):
        row_from_dict(data, where="results.jsonl:7")


def test_append_and_read(tmp_path):
    path = tmp_path / "out" / "results.jsonl"
    append_results(path, [make_row("a"), make_row("b")])
    append_results(path, [])
    append_results(path, [make_row("c", n=4)])
    rows = read_results(path)
    assert [r.problem_id for r in rows] == ["a", "b", "c"]
    assert done_keys(path) == {("a", "best_of_n", 2, None, 0), ("b", "best_of_n", 2, None, 0), ("c", "best_of_n", 4, None, 0)}
    assert done_keys(tmp_path / "missing.jsonl") == set()


def test_torn_last_line_is_skipped_then_cut_on_the_next_append(tmp_path):
    path = tmp_path / "results.jsonl"
    append_results(path, [make_row("a"), make_row("b")])
    whole = path.read_bytes()
    torn_line = json.dumps(row_to_dict(make_row("c"))).encode()[:57]
    with open(path, "ab") as handle:
        handle.write(torn_line)  # a kill in the middle of a write
    assert [r.problem_id for r in read_results(path)] == ["a", "b"]
    assert ("c", "best_of_n", 2, None, 0) not in done_keys(path)
    append_results(path, [make_row("c")])
    assert path.read_bytes().startswith(whole)
    assert path.read_bytes().count(b"\n") == 3
    assert [r.problem_id for r in read_results(path)] == ["a", "b", "c"]


def test_torn_only_line_is_cut(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"problem_id": "a", "str')
    assert read_results(path) == []
    append_results(path, [make_row("a")])
    assert [r.problem_id for r in read_results(path)] == ["a"]


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "results.jsonl"
    append_results(path, [make_row("a")])
    with open(path, "ab") as handle:
        handle.write(b"{not json\n")
    append_results(path, [make_row("b")])
    with pytest.raises(ValueError, match=r"results.jsonl: line 2: invalid JSON"):
        read_results(path)


def test_results_file_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "results.jsonl"
    # Unscored rows (empty score lists, null agg_score) and unknown levels first, so the schema must widen.
    append_results(path, [make_row("ax", scored=False, strategy="majority")])
    append_results(path, [make_row("b"), make_row("c", strategy="beam_search", beam_width=4, n=4)])
    dataset = datasets.load_dataset("json", data_files=str(path), split="train")
    assert dataset.num_rows == 3
    assert dataset["problem_id"] == ["ax", "b", "c"]
    assert dataset["beam_width"] == [None, None, 4]
    assert dataset["level"] == [None, 2, 2]
    assert dataset[1]["completions"][0]["step_scores"] == [0.5, 0.75]
    assert dataset[0]["completions"][0]["agg_score"] is None
    assert dataset[2]["compute"]["prm_tokens"] == 40
    assert json.loads(dataset[2]["settings_json"])["beam_width"] == 4


def test_merge_drops_exact_duplicates_and_keeps_first_order(tmp_path):
    a, b = tmp_path / "results.shard-0-of-2.jsonl", tmp_path / "results.shard-1-of-2.jsonl"
    append_results(a, [make_row("p0"), make_row("p2")])
    append_results(b, [make_row("p1"), make_row("p2"), make_row("p3", seed=1)])
    out = tmp_path / "merged" / "results.jsonl"
    summary = merge_results([tmp_path], out)
    assert summary.inputs == (a, b)
    assert (summary.rows_written, summary.duplicates_dropped) == (4, 1)
    assert [row_key(r) for r in read_results(out)] == [
        ("p0", "best_of_n", 2, None, 0), ("p2", "best_of_n", 2, None, 0),
        ("p1", "best_of_n", 2, None, 0), ("p3", "best_of_n", 2, None, 1),
    ]


def test_merge_conflict_names_both_places_and_fields(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append_results(a, [make_row("p0"), make_row("p1")])
    append_results(b, [make_row("p1", seconds=9.0)])
    with pytest.raises(ValueError) as error:
        merge_results([str(tmp_path / "*.jsonl")], tmp_path / "m.jsonl")
    message = str(error.value)
    assert f"{a}:2 and {b}:1 differ in compute.seconds" in message and "problem 'p1'" in message
    assert not (tmp_path / "m.jsonl").exists()


def test_merge_refuses_to_overwrite_an_input(tmp_path):
    a = tmp_path / "a.jsonl"
    append_results(a, [make_row()])
    with pytest.raises(ValueError, match="is also an input"):
        merge_results([a], a)


def test_expand_inputs_errors_name_the_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        expand_inputs([tmp_path / "nothing-here*.jsonl"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no results"):
        expand_inputs([tmp_path / "empty"])


def test_append_is_durable_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    append_results(path, [make_row("a"), make_row("b")])
    assert len(synced) == 1
    assert [len(line) > 0 for line in path.read_bytes().split(b"\n")] == [True, True, False]
    assert len(read_result_dicts(path)) == 2
