"""`ttc-infer processbench`: stepwise rows -> first-error labels, the job on tiny random PRMs, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from data_prep.prm_metadata import PRMMetadata
from data_prep.records import StepLabels
from data_prep.synthetic import check_solution, generate_problems, gold_steps
from inference.cli import main
from inference.evaluation.metrics import split_ids
from inference.evaluation.processbench import ProcessBenchReport, evaluate_scorer
from inference.evaluation.processbench_job import (
    ProcessBenchConfig,
    _load_scorer,
    detect_format,
    load_records,
    records_from_step_labels,
)
from tests.unit.generation.tiny_models import build_tiny_tokenizer, save_token_classifier

# --------------------------------------------------------------------------- conversion on hand-built rows

HAND_ROWS = [
    # (labels, expected ProcessBench label: first False, None when all True)
    ([True, True, True], None),
    ([True, False, False], 1),
    ([False, False], 0),
    ([True, True, False], 2),
    ([True, False, True], 1),  # only the earliest error counts
    ([1.0, 0.0], 1),  # hard labels stored as floats (Parquet)
    ([1, 1], None),
]


def hand_rows() -> list[dict]:
    return [
        {"prompt": f"problem {i}", "completions": [f"step {j}" for j in range(len(labels))], "labels": labels}
        for i, (labels, _) in enumerate(HAND_ROWS)
    ]


def test_first_false_label_becomes_the_processbench_label():
    records = records_from_step_labels(hand_rows())
    assert [r.label for r in records] == [expected for _, expected in HAND_ROWS]
    assert [r.id for r in records] == [f"rows:{i}" for i in range(1, len(HAND_ROWS) + 1)]
    assert records[1].problem == "problem 1" and records[1].steps == ("step 0", "step 1", "step 2")


def test_ids_come_from_meta_and_records_are_accepted():
    rows = [StepLabels("p", ["a", "b"], [True, False], meta={"problem_id": "synthetic/test/L1/0", "solution_index": 3}),
            {"prompt": "q", "completions": ["c"], "labels": [True], "meta": {"problem_id": "x", "solution_index": 0}}]
    records = records_from_step_labels(rows)
    assert [(r.id, r.label) for r in records] == [("synthetic/test/L1/0#3", 1), ("x#0", None)]
    with pytest.raises(ValueError, match=r"rows: row 2: duplicate id 'x#0' \(first at row 1\)"):
        records_from_step_labels([rows[1], rows[1]])


def test_soft_label_is_an_error_naming_the_row():
    rows = hand_rows()[:2] + [{"prompt": "p", "completions": ["a", "b"], "labels": [True, 0.7]}]
    with pytest.raises(ValueError, match=r"^data.jsonl: line 9: label 1 is soft \(0.7\); ProcessBench needs exact"):
        records_from_step_labels(rows, source="data.jsonl", lines=[1, 2, 9])


def test_format_is_detected_from_the_first_row(tmp_path):
    stepwise, processbench, other = tmp_path / "s.jsonl", tmp_path / "p.jsonl", tmp_path / "o.jsonl"
    write_jsonl(stepwise, hand_rows())
    write_jsonl(processbench, [{"id": "a", "problem": "p", "steps": ["x", "y"], "label": -1},
                               {"id": "b", "problem": "p", "steps": ["x", "y"], "label": 1}])
    write_jsonl(other, [{"question": "p"}])
    assert (detect_format(stepwise), detect_format(processbench)) == ("stepwise", "processbench")
    assert [r.label for r in load_records(processbench)] == [None, 1]
    assert [r.label for r in load_records(stepwise, limit=3)] == [None, 1, 0]
    with pytest.raises(ValueError, match=r"o.jsonl: line 1: keys \['question'\] match neither format"):
        detect_format(other)


# --------------------------------------------------------------------------- the job on tiny random PRMs


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def corrupt(step: str) -> str:
    """The step with its result off by one."""
    match = re.search(r"= (\d+)$", step)
    assert match is not None, step
    return step[: match.start(1)] + str(int(match.group(1)) + 1)


def synthetic_rows() -> list[dict]:
    """10 gold solutions (all steps right) and 10 with step k's result off by one; labels from the checker."""
    rows = []
    for index, problem in enumerate(generate_problems("test", num_per_level=2, seed=0)):
        gold = gold_steps(problem)
        wrong_at = index % (len(gold) - 1)
        corrupted = gold[:wrong_at] + [corrupt(gold[wrong_at])] + gold[wrong_at + 1:]
        for solution_index, steps in enumerate((gold, corrupted)):
            first_wrong = check_solution(problem, steps).first_wrong_step
            assert first_wrong == (None if solution_index == 0 else wrong_at)
            labels = [first_wrong is None or i < first_wrong for i in range(len(steps))]
            meta = {"problem_id": problem.id, "solution_index": solution_index}
            rows.append({"prompt": problem.problem, "completions": steps, "labels": labels, "meta": meta})
    return rows


@pytest.fixture(scope="module")
def prm_dirs(tmp_path_factory):
    """Two random token-classification PRMs with their ttc_prm.json."""
    tokenizer = build_tiny_tokenizer()
    metadata = PRMMetadata(prm_style="token_classification")
    return {
        name: save_token_classifier(tmp_path_factory.mktemp(name), tokenizer, seed=seed, metadata=metadata)
        for seed, name in enumerate(("prm-a", "prm-b"))
    }


@pytest.fixture
def stepwise_file(tmp_path):
    path = tmp_path / "oracle.jsonl"
    write_jsonl(path, synthetic_rows())
    return path


def write_config(tmp_path, prm_dirs, data, **extra) -> str:
    lines = ["prms:"] + [f"  {name}: {path}" for name, path in prm_dirs.items()]
    lines += [f"data: {data}", f"output_dir: {tmp_path / 'out'}", "device: cpu", "dtype: float32"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    path = tmp_path / "processbench.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_processbench_on_stepwise_oracle_labels(tmp_path, prm_dirs, stepwise_file, capsys):
    config_path = write_config(tmp_path, prm_dirs, stepwise_file, fit_fraction=0.25, seed=3)
    assert main(["processbench", "--config", config_path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"processbench: 20 records from {stepwise_file}"
    records = load_records(stepwise_file)
    fit_ids, eval_ids = split_ids([r.id for r in records], fit_fraction=0.25, seed=3)
    erroneous_in_eval = sum(r.label is not None for r in records if r.id in eval_ids)
    for name in prm_dirs:
        path = tmp_path / "out" / f"processbench-{name}.json"
        report = ProcessBenchReport.load(path)
        assert report.scorer == name
        assert (report.num_fit, report.num_eval) == (len(fit_ids), len(eval_ids)) == (5, 15)
        for metrics in (report.tuned, report.fixed):
            assert (metrics.num_erroneous, metrics.num_correct) == (erroneous_in_eval, 15 - erroneous_in_eval)
            for value in (metrics.error_accuracy, metrics.correct_accuracy, metrics.f1):
                assert 0.0 <= value <= 1.0
        assert report.fixed.threshold == 0.5
        assert report.step_auroc is not None and 0.0 <= report.step_auroc <= 1.0
        assert any(line.startswith(f"{name}: F1 {report.tuned.f1:.3f} tuned") and line.endswith(str(path))
                   for line in out)
    # The job's report is what the library gives for the same scorer, records and split.
    config = ProcessBenchConfig(prms={k: str(v) for k, v in prm_dirs.items()}, data=str(stepwise_file),
                                output_dir=str(tmp_path / "out"), device="cpu", dtype="float32")
    scorer = _load_scorer(config, "prm-a", str(prm_dirs["prm-a"]))
    expected = evaluate_scorer(scorer, records, fit_fraction=0.25, seed=3)
    assert ProcessBenchReport.load(tmp_path / "out" / "processbench-prm-a.json") == expected
    assert (tmp_path / "out" / "processbench-config.yaml").is_file()


def test_the_exact_checker_scores_checker_labels_perfectly(tmp_path, stepwise_file, capsys):
    """A perfect verifier on checker-labelled data: the ProcessBench metrics must say perfect, whatever the split."""
    config_path = write_config(tmp_path, {"checker": "synthetic-checker"}, stepwise_file, fit_fraction=0.25)
    assert main(["processbench", "--config", config_path]) == 0
    report = ProcessBenchReport.load(tmp_path / "out" / "processbench-checker.json")
    assert report.scorer == "checker" and report.step_auroc == 1.0
    assert (report.tuned.error_accuracy, report.tuned.correct_accuracy, report.tuned.f1) == (1.0, 1.0, 1.0)
    assert report.fixed.f1 == 1.0  # scores are exactly 0 or 1, so 0.5 separates them too
    assert "checker: F1 1.000 tuned" in capsys.readouterr().out


def test_processbench_format_file_with_limit_and_cli_prm_flag(tmp_path, prm_dirs, stepwise_file, capsys):
    data = tmp_path / "pb.jsonl"
    write_jsonl(data, [{"id": r.id, "problem": r.problem, "steps": list(r.steps), "label": -1 if r.label is None
                        else r.label, "generator": "test"} for r in load_records(stepwise_file)])
    argv = ["processbench", "--prms.only", str(prm_dirs["prm-b"]), "--data", str(data), "--limit", "8",
            "--output_dir", str(tmp_path / "pb"), "--device", "cpu", "--data_format", "processbench"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"processbench: 8 records from {data}\nonly: F1 ")
    report = ProcessBenchReport.load(tmp_path / "pb" / "processbench-only.json")
    assert report.num_fit + report.num_eval == 8 and report.num_fit == 4
    assert sorted(p.name for p in (tmp_path / "pb").iterdir()) == ["processbench-config.yaml", "processbench-only.json"]


OFFICIAL_FILE = Path(__file__).parents[2] / "data" / "processbench_gsm8k.json"
"""Qwen/ProcessBench's layout: a JSON array of 3 records; label = first wrong step, -1 when every step is right."""


def test_official_json_array_with_a_record_longer_than_the_context(tmp_path, prm_dirs, capsys, caplog):
    """The published file runs as it is; a record past the PRM's 1024 tokens is skipped and named, not fatal."""
    long_record = {"id": "gsm8k-long", "generator": "x", "problem": "Count.", "steps": ["word " * 1500, "Done."],
                   "final_answer_correct": False, "label": 1}
    data = tmp_path / "gsm8k.json"
    official = json.loads(OFFICIAL_FILE.read_text(encoding="utf-8"))
    data.write_text(json.dumps(official + [long_record], indent=2), encoding="utf-8")
    config_path = write_config(tmp_path, {"prm-a": prm_dirs["prm-a"]}, data)
    assert main(["processbench", "--config", config_path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"processbench: 4 records from {data}"
    report = ProcessBenchReport.load(tmp_path / "out" / "processbench-prm-a.json")
    assert (report.num_fit, report.num_eval, report.num_skipped_too_long) == (2, 1, 1)
    assert "; 2 fit / 1 eval records; 1 skipped (longer than the PRM's context) -> " in out[1]
    assert "prm-a: skipped 1 of 4 records longer than the PRM's context (1024 tokens): gsm8k-long (" in caplog.text


def test_stepwise_parquet_is_read_by_content(tmp_path, stepwise_file):
    from data_prep.labels import read_step_labels, write_step_labels

    parquet = write_step_labels(read_step_labels(stepwise_file), tmp_path / "oracle.parquet")
    renamed = parquet.rename(tmp_path / "oracle.data")
    assert detect_format(renamed) == "stepwise"
    from_parquet = load_records(renamed)
    # Parquet rows carry no meta, so ids are places in the file; labels and steps are the JSONL file's.
    assert [r.id for r in from_parquet[:2]] == [f"{renamed}:1", f"{renamed}:2"]
    assert [(r.problem, r.steps, r.label) for r in from_parquet] == [
        (r.problem, r.steps, r.label) for r in load_records(stepwise_file)]


# --------------------------------------------------------------------------- one-line errors


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ttc-infer: error: ")
    return err[0]


def test_soft_label_file_is_a_one_line_error_naming_file_and_line(tmp_path, prm_dirs, capsys):
    data = tmp_path / "soft.jsonl"
    write_jsonl(data, [{"prompt": "p", "completions": ["a", "b"], "labels": [True, False]},
                       {"prompt": "q", "completions": ["a", "b"], "labels": [0.875, 0.25]}])
    assert main(["processbench", "--config", write_config(tmp_path, prm_dirs, data)]) == 1
    assert f"{data}: line 2: label 0 is soft (0.875); ProcessBench needs exact labels" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_an_unknown_data_file_is_one_line_naming_it(tmp_path, prm_dirs, capsys):
    data = tmp_path / "gsm8k.csv"
    data.write_text("id,problem,steps,label\n", encoding="utf-8")
    assert main(["processbench", "--config", write_config(tmp_path, prm_dirs, data)]) == 1
    assert f"{data}: not JSONL (one JSON object per line), a JSON array of objects, Parquet" in one_line_error(capsys)


def test_unknown_keys_are_one_line_config_errors(tmp_path, prm_dirs, stepwise_file, capsys):
    config_path = write_config(tmp_path, prm_dirs, stepwise_file, fit_fractoin=0.5)
    assert main(["processbench", "--config", config_path]) == 2
    assert "key 'fit_fractoin' is not known; did you mean 'fit_fraction'?" in one_line_error(capsys)
    assert main(["processbench", "--config", write_config(tmp_path, prm_dirs, stepwise_file), "--sead", "1"]) == 2
    assert "flag --sead is not known; did you mean 'seed'?" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "d.jsonl", "--output_dir", "o"], "processbench needs prms: a mapping of display name"),
        (["--prms.a/b", "x", "--data", "d.jsonl", "--output_dir", "o"], "prms: name 'a/b' is used in a file name"),
        (["--prms.a", "x", "--output_dir", "o"], "processbench needs --data"),
        (["--prms.a", "x", "--data", "d.jsonl", "--output_dir", "o", "--fit_fraction", "1"],
         "fit_fraction must be in (0, 1), got 1.0"),
        (["--prms.a", "x", "--data", "d.jsonl", "--output_dir", "o", "--data_format", "csv"],
         "'csv' is not one of 'processbench', 'stepwise', 'auto'"),
    ],
)
def test_config_rules_exit_2(argv, message, capsys):
    assert main(["processbench", *argv]) == 2
    assert message in one_line_error(capsys)


def test_missing_prm_directory_is_reported_before_any_work(tmp_path, stepwise_file, capsys):
    argv = ["processbench", "--prms.gone", str(tmp_path / "nope"), "--data", str(stepwise_file),
            "--output_dir", str(tmp_path / "out")]
    assert main(argv) == 1
    assert f"PRM directories not found: gone={tmp_path / 'nope'}" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_processbench_backend_reaches_the_scorer_loader_and_engine_shares_add_up(monkeypatch):
    import types

    import inference.scoring.loader as loader
    from inference.config import ConfigError

    seen = []
    monkeypatch.setattr(loader, "load_scorer", lambda path, **options: seen.append((path, options)) or
                        types.SimpleNamespace())
    common = {"prms": {"a": "prm/a", "b": "prm/b"}, "data": "labels.jsonl", "output_dir": "out"}
    shared = ProcessBenchConfig(**common, backend="vllm", device="cuda")
    assert _load_scorer(shared, "a", "prm/a").name == "a"
    assert seen[-1][0] == "prm/a" and seen[-1][1]["backend"] == "vllm"
    assert seen[-1][1]["gpu_memory_utilization"] == 0.45  # 0.9 shared by the two PRMs' engines
    _load_scorer(ProcessBenchConfig(**common, backend="vllm", device="cuda", gpu_memory_utilization=0.3), "b", "prm/b")
    assert seen[-1][1]["gpu_memory_utilization"] == 0.3
    _load_scorer(ProcessBenchConfig(**common), "a", "prm/a")
    assert "backend" not in seen[-1][1] and "gpu_memory_utilization" not in seen[-1][1]  # the transformers default
    with pytest.raises(ConfigError, match=r"2 PRMs on vllm at gpu_memory_utilization 0.6 each need 1.20 of the GPU"
                                          r".*at most 0.5"):
        ProcessBenchConfig(**common, backend="vllm", gpu_memory_utilization=0.6)
    with pytest.raises(ConfigError, match="gpu_memory_utilization applies to the vllm backend only"):
        ProcessBenchConfig(**common, gpu_memory_utilization=0.3)
    with pytest.raises(ConfigError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
        ProcessBenchConfig(**common, backend="vllm", gpu_memory_utilization=1.5)
