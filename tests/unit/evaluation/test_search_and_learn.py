"""search-and-learn result files in `ttc-infer eval`: rows written from its published columns are read as rows of
their own policy/PRM and evaluated in one report beside a ttc results file; bad files get one line naming them."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.io import read_jsonl, write_jsonl
from inference.evaluation.config import EvalConfig
from inference.evaluation.evaluations import evaluate
from inference.evaluation.rows import read_result_file, read_rows
from inference.reporting import ReportConfig, make_report
from inference.results import append_results
from tests.unit.evaluation.helpers import row, sample


def solution(answer: str) -> str:
    return f"## Step 1: Compute\nWe work it out.\n\n## Step 2: Conclude\nTherefore, the final answer is: $\\boxed{{{answer}}}$."


def sal_row(unique_id: str, gold: str, answers: list[str], last_scores: list[float], *, level: int = 3,
            agg_scores: list[float] | None = None, preds: dict[str, str] | None = None) -> dict:
    """One row as search-and-learn's best_of_n + scoring pass writes it (MATH-500's columns first)."""
    record = {
        "problem": f"Problem {unique_id}", "solution": "...", "answer": gold, "subject": "Algebra", "level": level,
        "unique_id": unique_id,
        "completions": [solution(a) for a in answers],
        "scores": [[0.5, s] for s in last_scores],  # one score per "\n\n" step
        "pred": solution(answers[max(range(len(answers)), key=lambda i: last_scores[i])]),
        "completion_tokens": [100 + i for i in range(len(answers))],
    }
    if agg_scores is not None:
        record["agg_scores"] = agg_scores
    for key, value in (preds or {}).items():
        record[key] = "\\boxed{" + value + "}"
    return record


# A: answers 4 4 5 5, last scores .9 .1 .3 .4, gold 4 -> best 4 (.9), weighted 4 (1.0 vs .7), majority tie -> 4.
# B: answers 7 8 8 9, scores .95 .3 .3 .1, gold 8 -> best 7, weighted 7 (.95 vs .6), majority 8.
# C: answers 1 2 2 3, last scores .9 .1 .1 .1 but agg_scores .1 .8 .8 .2, gold 2 -> agg_scores decide: all three 2.
BEST_OF_N = [
    sal_row("test/algebra/1.json", "4", ["4", "4", "5", "5"], [0.9, 0.1, 0.3, 0.4], level=1,
            preds={"pred_naive@4": "4", "pred_weighted@4": "4", "pred_maj@4": "4", "pred_naive@1": "4"}),
    sal_row("test/algebra/2.json", "8", ["7", "8", "8", "9"], [0.95, 0.3, 0.3, 0.1], level=2,
            preds={"pred_naive@4": "7", "pred_weighted@4": "7", "pred_maj@4": "8"}),
    sal_row("test/algebra/3.json", "2", ["1", "2", "2", "3"], [0.9, 0.1, 0.1, 0.1], level=3,
            agg_scores=[0.1, 0.8, 0.8, 0.2]),
]


def write_sal_run(tmp_path):
    """search-and-learn's output directory (named after the policy): best_of_n as JSONL, beam_search as Parquet."""
    run = tmp_path / "Llama-3.2-1B-Instruct"
    write_jsonl(run / "best_of_n_completions.jsonl", BEST_OF_N)
    beams = [
        {**sal_row("test/algebra/1.json", "4", ["4", "5"], [0.8, 0.2]), "pred": solution("4")},
        {**sal_row("test/algebra/2.json", "8", ["9", "8"], [0.7, 0.6]), "pred": solution("9")},
    ]
    table = pa.Table.from_pylist(beams)
    pq.write_table(table, run / "beam_search_completions.parquet")
    return run


def test_search_and_learn_rows_are_read_as_their_own_policy(tmp_path):
    run = write_sal_run(tmp_path)
    rows = read_result_file(run / "best_of_n_completions.jsonl")
    assert [(r.problem_id, r.strategy) for r in rows[:3]] == [
        ("test/algebra/1.json", "majority"), ("test/algebra/1.json", "best_of_n"),
        ("test/algebra/1.json", "weighted_best_of_n")]
    first = rows[1]
    # Named as ttc names the policy (its checkpoint's last path part): search-and-learn's output directory.
    assert (first.policy, first.prm) == ("Llama-3.2-1B-Instruct", "search-and-learn")
    assert first.level == 1 and first.gold == "4" and first.n == 4 and first.source == "search_and_learn"
    assert [c.answer for c in first.completions] == ["4", "4", "5", "5"]
    assert [c.agg_score for c in first.completions] == [0.9, 0.1, 0.3, 0.4]  # the last step score
    assert first.completions[0].steps == ("## Step 1: Compute\nWe work it out.",
                                          "## Step 2: Conclude\nTherefore, the final answer is: $\\boxed{4}$.")
    assert first.completions[0].step_scores == (0.5, 0.9)
    assert first.compute.policy_tokens == 100 + 101 + 102 + 103
    # search-and-learn's own predictions at N become each strategy's pred.
    second = {r.strategy: r for r in rows if r.problem_id == "test/algebra/2.json"}
    assert {s: (r.pred, r.correct) for s, r in second.items()} == {
        "majority": ("8", True), "best_of_n": ("7", False), "weighted_best_of_n": ("7", False)}
    third = next(r for r in rows if r.problem_id == "test/algebra/3.json")
    assert [c.agg_score for c in third.completions] == [0.1, 0.8, 0.8, 0.2]  # agg_scores, when written, win
    beams = read_result_file(run / "beam_search_completions.parquet")
    assert [(r.problem_id, r.strategy, r.n, r.pred, r.correct) for r in beams] == [
        ("test/algebra/1.json", "beam_search", 2, "4", True), ("test/algebra/2.json", "beam_search", 2, "9", False)]


def test_tree_search_answers_come_from_weighted_selection_and_dvts_gives_each_scored_n(tmp_path):
    run = tmp_path / "Llama-3.2-1B-Instruct"
    # DVTS at N = 4 with its scoring pass: pred (best) says 5, weighted selection at 4 says 4, at 2 says 5.
    dvts = sal_row("test/algebra/1.json", "4", ["5", "4", "4", "5"], [0.9, 0.5, 0.5, 0.1],
                   preds={"pred_weighted@4": "4", "pred_weighted@2": "5", "pred_weighted@1": "5"})
    write_jsonl(run / "dvts_completions.jsonl", [dvts])
    rows = read_result_file(run / "dvts_completions.jsonl")
    assert [(r.n, len(r.completions), r.pred, r.correct, r.compute.policy_tokens) for r in rows] == [
        (1, 1, "5", False, 100), (2, 2, "5", False, 201), (4, 4, "4", True, 406)]
    assert rows[0].completions == rows[2].completions[:1]
    # Beam search runs once per N: only its own N, by weighted selection when scored.
    beam = sal_row("test/algebra/1.json", "4", ["5", "4", "4"], [0.9, 0.5, 0.5],
                   preds={"pred_weighted@3": "4", "pred_weighted@2": "5"})
    write_jsonl(run / "beam_search_completions.jsonl", [beam])
    assert [(r.n, r.pred, r.settings["prediction_column"]) for r in
            read_result_file(run / "beam_search_completions.jsonl")] == [(3, "4", "pred_weighted@3")]


def test_a_search_and_learn_run_and_a_ttc_run_give_one_report(tmp_path):
    run = write_sal_run(tmp_path)
    ttc_results = tmp_path / "ttc" / "results.jsonl"
    ttc_results.parent.mkdir()
    ttc_prm = "Llama3.1-8B-PRM-Deepseek-Data"
    append_results(ttc_results, [
        row("test/algebra/1.json", "best_of_n", gold="4", completions=(sample("4", 0.9), sample("5", 0.1)),
            policy="Llama-3.2-1B-Instruct", prm=ttc_prm),
        row("test/algebra/2.json", "best_of_n", gold="8", completions=(sample("9", 0.9), sample("8", 0.1)),
            policy="Llama-3.2-1B-Instruct", prm=ttc_prm),
    ])
    out = tmp_path / "eval"
    config = EvalConfig(inputs=(str(run / "best_of_n_completions.jsonl"), str(run / "beam_search_completions.parquet"),
                                str(ttc_results)), output_dir=str(out), compute_optimal=False)
    evaluate(config)
    points = {(p["prm"], p["strategy"], p["n"]): p for _, p in read_jsonl(out / "metrics.jsonl")
              if p["level"] is None}
    assert {p["policy"] for p in points.values()} == {"Llama-3.2-1B-Instruct"}
    sal = "search-and-learn"
    assert points[(sal, "best_of_n", 4)]["accuracy"] == pytest.approx(2 / 3)  # A, C right; B picks 7
    assert points[(sal, "weighted_best_of_n", 4)]["accuracy"] == pytest.approx(2 / 3)
    assert points[(sal, "majority", 4)]["accuracy"] == pytest.approx(1.0)
    assert points[(sal, "beam_search", 2)]["accuracy"] == pytest.approx(0.5)
    assert points[(sal, "best_of_n", 4)]["policy_tokens"] == pytest.approx(406)
    assert points[(ttc_prm, "best_of_n", 2)]["accuracy"] == pytest.approx(0.5)
    # One report: the search-and-learn run is a verifier beside ttc's in the PRM comparison.
    make_report(ReportConfig(eval_dir=str(out), main_prm=ttc_prm))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert sal in page and ttc_prm in page
    # The names can be given: a second search-and-learn run of another PRM stays apart.
    named = read_rows([run / "beam_search_completions.parquet"], search_and_learn_policy="policy-x",
                      search_and_learn_prm="math-shepherd (search-and-learn)")
    assert {(r.policy, r.prm) for r in named} == {("policy-x", "math-shepherd (search-and-learn)")}


def test_files_that_are_neither_get_one_line_naming_them(tmp_path):
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"question": ["q"], "response": ["r"]}), foreign)
    with pytest.raises(ValueError, match=r"foreign\.parquet: a parquet file without search-and-learn's columns .*"
                                         r"'question', 'response'.*ttc-infer eval reads ttc result rows"):
        read_rows([foreign])
    text = tmp_path / "notes.txt"
    text.write_text("accuracy 0.5\n")
    with pytest.raises(ValueError, match=r"notes\.txt: not a results file \(it starts with b'accuracy 0\.5"):
        read_rows([text])
    unnamed = tmp_path / "run" / "results.jsonl"
    write_jsonl(unnamed, BEST_OF_N)
    with pytest.raises(ValueError, match=r"results\.jsonl: a search-and-learn result file, but neither its name nor "
                                         r"its directory says which search wrote it; name it <approach>_completions"):
        read_rows([unnamed])
    # Hub downloads: the dataset's directory names the approach and the policy, in the spellings the Hub uses.
    for dataset, strategies in (("Llama-3.2-1B-Instruct-best-of-N-completions", {"majority", "best_of_n",
                                                                                   "weighted_best_of_n"}),
                                ("Llama-3.2-1B-Instruct-DVTS-completions", {"dvts"}),
                                ("Llama-3.2-1B-Instruct-beam_search-prm-completions", {"beam_search"})):
        hub = tmp_path / dataset / "data" / "train-00000-of-00001.parquet"
        hub.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(BEST_OF_N), hub)
        hub_rows = read_rows([hub])
        assert {r.strategy for r in hub_rows} == strategies
        assert {r.policy for r in hub_rows} == {"Llama-3.2-1B-Instruct"}
    broken = tmp_path / "dvts_completions.jsonl"
    write_jsonl(broken, [BEST_OF_N[0], {**BEST_OF_N[1], "scores": [[0.5]]}])
    with pytest.raises(ValueError, match=r"dvts_completions\.jsonl line 2: column 'scores' has 1 entries for 4 "
                                         r"completions"):
        read_rows([broken])
    mixed = tmp_path / "beam_search_mixed.jsonl"
    mixed.write_text(json.dumps(BEST_OF_N[0]) + "\n" + json.dumps({"problem_id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"beam_search_mixed\.jsonl line 2: not a search-and-learn result row"):
        read_rows([mixed])
