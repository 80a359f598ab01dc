"""W&B logging: an offline run directory with the summary and the per-problem table; failures only warn."""

from __future__ import annotations

import json
import logging
import time

import pytest

from inference.evaluation.metrics import select
from inference.reporting.wandb_log import ROW_COLUMNS, log_evaluation, summary_metrics


def test_summary_metrics_keys(run):
    _, _, points = run
    summary = summary_metrics(points)
    majority8 = select(points, strategy="majority")[-1]
    assert majority8.n == 8
    assert summary["acc/majority@8"] == majority8.accuracy
    assert summary["flops/majority@8"] == majority8.flops
    level5 = select(points, strategy="dvts", level=5, bin_kind="level")[0]
    assert summary[f"acc/dvts (M=4)@{level5.n}/level 5"] == level5.accuracy


def test_offline_run_directory_holds_summary_and_table(run, tmp_path, monkeypatch):
    rows, _, points = run
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = log_evaluation(points, policy="tiny-policy", prm="prm-a", rows=rows, config={"num_subsamples": 32})
    if run_dir is None:
        pytest.skip("wandb.init failed in this sandbox (see the warning); W&B logging is optional")
    assert run_dir.parent == tmp_path / "wandb" and run_dir.name.startswith("offline-run-")
    (record_file,) = run_dir.glob("run-*.wandb")
    # wandb's writer process may still be flushing after run.finish() returns: wait for the summary record.
    deadline = time.monotonic() + 20
    while b"acc/weighted_best_of_n@8" not in (data := record_file.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    # Summary keys exist only in the summary record; the group (PRM name) and config are in the run record.
    assert b"acc/weighted_best_of_n@8" in data and b"prm-a" in data and b"num_subsamples" in data
    (table_file,) = (run_dir / "files" / "media" / "table").glob("per_problem_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ROW_COLUMNS and len(table["data"]) == len(rows)


def test_failure_warns_and_returns_none(run, tmp_path, caplog):
    _, _, points = run
    with caplog.at_level(logging.WARNING, logger="inference.reporting.wandb_log"):
        assert log_evaluation(points, policy="p", prm="q", mode="not-a-mode", wandb_dir=tmp_path) is None
    assert "W&B logging failed" in caplog.text
