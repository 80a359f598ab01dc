"""ProcessBench-style PRM evaluation on a hand-labelled set: predictions, F1, threshold tuning, AUROC, loader."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from data_prep.labels import LabelFileError
from inference.evaluation.metrics import split_ids
from inference.evaluation.processbench import (
    ProcessBenchRecord,
    ProcessBenchReport,
    ScoredRecord,
    _f1_curve,
    evaluate_scorer,
    evaluate_scores,
    load_processbench,
    metrics_at,
    predict_first_error,
    step_auroc,
    tune_threshold,
)
from tests.fakes import TablePRMScorer

# (id, step scores, label = first wrong step or None)
HAND = [
    ("r1", (0.9, 0.2, 0.8), 1),
    ("r2", (0.9, 0.8, 0.7), None),
    ("r3", (0.6, 0.4, 0.3), 2),
    ("r4", (0.3, 0.9), None),
    ("r5", (0.9, 0.9, 0.1), 0),
]


def hand_scored() -> list[ScoredRecord]:
    return [
        ScoredRecord(ProcessBenchRecord(rid, f"problem {rid}", tuple(f"{rid} step {i}" for i in range(len(s))), label), s)
        for rid, s, label in HAND
    ]


def test_predict_first_error():
    assert predict_first_error((0.9, 0.2, 0.1), 0.5) == 1
    assert predict_first_error((0.9, 0.6), 0.5) is None
    assert predict_first_error((0.5,), 0.5) is None  # "below" is strict


def test_metrics_at_fixed_threshold():
    # At 0.5: r1 -> 1 (right), r3 -> 1 (label 2), r5 -> 2 (label 0); r2 -> None (right), r4 -> 0.
    m = metrics_at(hand_scored(), 0.5)
    assert (m.error_accuracy, m.correct_accuracy) == pytest.approx((1 / 3, 1 / 2))
    assert m.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # 0.4
    assert (m.num_erroneous, m.num_correct) == (3, 2)


def test_tuned_threshold_maximises_f1():
    # r1 is right for t in (.2, .9], r3 for (.3, .4], r5 for t > .9; r2 for t <= .7, r4 for t <= .3.
    # Best: t in (.3, .4] -> errors 2/3, correct 1/2, F1 4/7; the candidate there is the midpoint .35.
    scored = hand_scored()
    assert tune_threshold(scored) == pytest.approx(0.35)
    assert metrics_at(scored, 0.35).f1 == pytest.approx(4 / 7)


def test_step_auroc_by_hand():
    # Good steps: .9 .9 .8 .7 .6 .4 .3 .9; bad (first errors): .2 .3 .9; steps after a first error are left out.
    # Pairs good > bad: 8 + (7 + tie/2) + (3 ties / 2) = 17 of 24.
    assert step_auroc(hand_scored()) == pytest.approx(17 / 24)
    only_good = [s for s in hand_scored() if s.record.label is None]
    assert step_auroc(only_good) is None


def test_fast_f1_curve_matches_direct_counting():
    rng = random.Random(0)
    scored = []
    for i in range(40):
        scores = tuple(rng.choice([0.1, 0.3, 0.5, 0.7, 0.9]) for _ in range(rng.randint(1, 5)))
        label = rng.choice([None, *range(len(scores))])
        scored.append(ScoredRecord(ProcessBenchRecord(f"x{i}", "p", tuple("s" * len(scores)), label), scores))
    thresholds = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.9, 0.95])
    assert _f1_curve(scored, thresholds) == pytest.approx([metrics_at(scored, t).f1 for t in thresholds])


def test_evaluate_scorer_batches_and_reports_on_held_out_records():
    scored = hand_scored()
    table = {step: score for item in scored for step, score in zip(item.record.steps, item.step_scores)}
    scorer = TablePRMScorer(table, name="prm-a")
    report = evaluate_scorer(scorer, [s.record for s in scored], batch_size=2, fit_fraction=0.6, seed=0)
    assert len(scorer.calls) == 3 and [len(c.problems) for c in scorer.calls] == [2, 2, 1]
    fit_ids, eval_ids = split_ids([rid for rid, _, _ in HAND], fit_fraction=0.6, seed=0)
    fit = [s for s in scored if s.record.id in fit_ids]
    held = [s for s in scored if s.record.id in eval_ids]
    assert (report.scorer, report.num_fit, report.num_eval) == ("prm-a", 3, 2)
    assert report.tuned == metrics_at(held, tune_threshold(fit))
    assert report.fixed == metrics_at(held, 0.5)
    assert report.step_auroc == step_auroc(held)


def test_load_processbench(tmp_path):
    path = tmp_path / "pb.jsonl"
    rows = [
        {"id": "gsm8k-0", "generator": "x", "problem": "1+1?", "steps": ["1+1=3", "So 3"], "label": 0,
         "final_answer_correct": False},
        {"id": "gsm8k-1", "problem": "2+2?", "steps": ["2+2=4", "So 4"], "label": -1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_processbench(path)
    assert records == [
        ProcessBenchRecord("gsm8k-0", "1+1?", ("1+1=3", "So 3"), 0),
        ProcessBenchRecord("gsm8k-1", "2+2?", ("2+2=4", "So 4"), None),
    ]
    path.write_text(json.dumps(rows[1]) + "\n" + json.dumps({"id": "a", "problem": "p", "steps": ["s"]}) + "\n")
    with pytest.raises(ValueError, match=r"pb.jsonl: line 2: missing keys \['label'\]"):
        load_processbench(path)
    path.write_text(json.dumps(rows[1] | {"label": 2}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: 'label' must be -1 \(correct\) or a step index in 0..1, got 2"):
        load_processbench(path)
    path.write_text(json.dumps(rows[1]) + "\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(ValueError, match="line 2: duplicate id 'gsm8k-1'"):
        load_processbench(path)


# The official layout (Qwen/ProcessBench `gsm8k.json`: a JSON array): one record with its first error at step 1,
# one correct (-1), one wrong from step 0.
OFFICIAL_FILE = Path(__file__).parents[2] / "data" / "processbench_gsm8k.json"
OFFICIAL_RECORDS = [
    ProcessBenchRecord("gsm8k-0", "Ann has 3 pens and buys 2. How many?",
                       ("She has 3 pens.", "3 + 2 = 6.", "The answer is 6."), 1),
    ProcessBenchRecord("gsm8k-1", "What is 4 * 5?", ("4 * 5 = 20.", "The answer is 20."), None),
    ProcessBenchRecord("gsm8k-2", "What is 9 - 4?", ("9 - 4 = 6.",), 0),
]


def test_load_processbench_reads_the_official_json_array_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert load_processbench(OFFICIAL_FILE) == OFFICIAL_RECORDS
    official = json.loads(OFFICIAL_FILE.read_text(encoding="utf-8"))
    # The Hub's Parquet copy, recognised by its magic bytes whatever its name.
    for name in ("gsm8k-00000-of-00001.parquet", "gsm8k-parquet-without-suffix"):
        pq.write_table(pa.Table.from_pylist(official), tmp_path / name)
        assert load_processbench(tmp_path / name) == OFFICIAL_RECORDS
    array = tmp_path / "gsm8k.json"
    array.write_text(json.dumps([official[0], {**official[1], "label": 2}]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"gsm8k\.json: row 2: 'label' must be -1 \(correct\) or a step index in "
                                         r"0\.\.1, got 2"):
        load_processbench(array)


def test_an_unknown_file_is_one_error_naming_it(tmp_path):
    path = tmp_path / "gsm8k.csv"
    path.write_text("id,problem,steps,label\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match=r"^\S+gsm8k\.csv: not JSONL \(one JSON object per line\), a JSON array "
                                             r"of objects, Parquet or a saved `datasets` directory"):
        load_processbench(path)


class ContextLimitedScorer(TablePRMScorer):
    """A table PRM with a context of `max_length` words, measured the way checkpoint scorers measure it."""

    def __init__(self, table, max_length: int) -> None:
        super().__init__(table, name="short-context")
        self.max_length = max_length

    def build_input(self, problem: str, steps: list[str]) -> SimpleNamespace:
        return SimpleNamespace(input_ids=(problem + " " + " ".join(steps)).split())


def test_a_record_longer_than_the_context_is_skipped_named_and_counted(caplog):
    scored = hand_scored()
    long_steps = ("word " * 40).strip()
    table = {step: score for item in scored for step, score in zip(item.record.steps, item.step_scores)}
    table[long_steps] = 0.5
    records = [s.record for s in scored] + [ProcessBenchRecord("r-long", "problem r-long", (long_steps,), None)]
    scorer = ContextLimitedScorer(table, max_length=12)  # hand records are 8-11 words, r-long 42
    with caplog.at_level(logging.WARNING):
        report = evaluate_scorer(scorer, records, batch_size=2, fit_fraction=0.6, seed=0)
    assert all(long_steps not in steps for call in scorer.calls for steps in call.step_lists)
    assert report.num_skipped_too_long == 1
    assert report == replace(evaluate_scores(scored, scorer="short-context", fit_fraction=0.6, seed=0),
                             num_skipped_too_long=1)
    assert "short-context: skipped 1 of 6 records longer than the PRM's context (12 tokens): r-long (42 tokens)" \
        in caplog.text
    with pytest.raises(ValueError, match="only 1 of 2 records fit the PRM's context"):
        evaluate_scorer(scorer, records[-2:])


def test_reports_without_the_skip_count_still_load(tmp_path):
    report = evaluate_scores(hand_scored(), scorer="old", fit_fraction=0.6, seed=0)
    data = report.to_dict()
    assert data.pop("num_skipped_too_long") == 0
    (tmp_path / "old.json").write_text(json.dumps(data), encoding="utf-8")
    assert ProcessBenchReport.load(tmp_path / "old.json") == report
