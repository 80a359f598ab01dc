"""Kill anywhere: `ttc-infer run`, `ttc-infer label` and the pipeline killed (SIGKILL, SIGTERM) at seeded random
points and restarted end where an uninterrupted run ends, no problem lost or doubled; train_prm.py resumes from its
last checkpoint after a SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
INFER = [sys.executable, "-m", "inference.cli"]
KILLS = 4
"""Interrupted runs per command: SIGKILL and SIGTERM in turn (two of each), each at a seeded random point."""


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def kill_at_random_points(command: list[str], progress: Callable[[], int], total: int, seed: int) -> list[int]:
    """Start `command` again and again, each time signalling its process group (as a scheduler stops a job) once
    `progress()` reaches a seeded random count below `total` and a seeded random delay after it, until KILLS runs
    were interrupted; return their exit codes. The caller then runs the command to the end."""
    rng = random.Random(seed)
    codes: list[int] = []
    for attempt in range(3 * KILLS):
        if len(codes) == KILLS:
            break
        signum = signal.SIGKILL if len(codes) % 2 == 0 else signal.SIGTERM
        start_at = progress()
        target = rng.randint(start_at, max(start_at, total - 1))
        delay = rng.uniform(0.0, 0.4)
        process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        deadline = time.monotonic() + 120
        while process.poll() is None and progress() < target and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=120)
        if process.returncode == 0:
            continue  # it finished before the signal: not an interrupted run
        assert process.returncode in (-signal.SIGKILL, -signal.SIGTERM, 130, 143), stderr.decode()[-2000:]
        codes.append(process.returncode)
    assert len(codes) == KILLS, f"only {len(codes)} of the runs were interrupted: {codes}"
    return codes


def finish(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --------------------------------------------------------------------------- ttc-infer run


def run_config(directory: Path) -> Path:
    config = {
        "benchmark": {"name_or_path": "synthetic-test", "num_per_level": 1},
        "policy": {"model_name_or_path": "checkpoints/policy-small", "batch_size": 16},
        "prm": {"path": "synthetic-checker"},
        "sweep": {"strategies": ["best_of_n", "beam_search"], "n_values": [2], "min_n_by_strategy": {}},
        "strategies": {"best_of_n": {"max_tokens": 96},
                       "beam_search": {"beam_width": 2, "max_step_tokens": 32, "max_iterations": 4}},
        "output_dir": str(directory / "out"),
        "chunk_size": 1,
    }
    path = directory / "run.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def result_rows(path: Path) -> dict[tuple, str]:
    """Key -> the row without its wall time; a doubled key fails."""
    rows: dict[tuple, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        key = (row["problem_id"], row["strategy"], row["n"], row["beam_width"], row["seed"])
        assert key not in rows, f"row {key} written twice"
        row["compute"].pop("seconds")
        rows[key] = json.dumps(row, sort_keys=True)
    return rows


def test_ttc_infer_run_killed_anywhere_ends_as_an_uninterrupted_run(tmp_path):
    whole = tmp_path / "whole"
    finish([*INFER, "run", "--config", str(run_config(whole))])
    reference = result_rows(whole / "out" / "results.jsonl")
    killed = tmp_path / "killed"
    command = [*INFER, "run", "--config", str(run_config(killed)), "--log_level", "warning"]
    results = killed / "out" / "results.jsonl"
    codes = kill_at_random_points(command, lambda: count_lines(results), len(reference), seed=18)
    # A SIGTERM that lands while Python is still importing ends the process before the CLI's handler exists (-15);
    # later ones get the CLI's own "stopped" exit (143, pinned by test_infer_cli). Which one a seeded point hits
    # depends on the machine's speed, so either counts as an interrupted run here.
    assert -signal.SIGKILL in codes and any(code in (143, -signal.SIGTERM) for code in codes)
    finish(command)
    assert result_rows(results) == reference


# --------------------------------------------------------------------------- ttc-infer label


def label_config(directory: Path) -> Path:
    config = {
        "benchmark": {"name_or_path": "synthetic-train", "num_per_level": 2, "seed": 1},
        "policy": {"model_name_or_path": "checkpoints/policy-small", "batch_size": 16},
        "labeller": "oracle", "num_solutions": 2, "max_tokens": 128, "seed": 0, "chunk_size": 1,
        "output": str(directory / "labels.jsonl"),
    }
    path = directory / "label.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def label_rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    keys = [(row["meta"]["problem_id"], row["meta"]["solution_index"]) for row in rows]
    assert len(keys) == len(set(keys)), "a labelled solution was written twice"
    return sorted(rows, key=lambda row: (row["meta"]["problem_id"], row["meta"]["solution_index"]))


def test_ttc_infer_label_killed_anywhere_ends_as_an_uninterrupted_run(tmp_path):
    whole = tmp_path / "whole"
    finish([*INFER, "label", "--config", str(label_config(whole))])
    reference = label_rows(whole / "labels.jsonl")
    killed = tmp_path / "killed"
    command = [*INFER, "label", "--config", str(label_config(killed)), "--log_level", "warning"]
    progress = killed / "labels.progress.jsonl"
    chunks = count_lines(whole / "labels.progress.jsonl")
    kill_at_random_points(command, lambda: count_lines(progress), chunks, seed=19)
    finish(command)
    assert label_rows(killed / "labels.jsonl") == reference
    done = [json.loads(line)["chunk"] for line in progress.read_text(encoding="utf-8").splitlines()]
    assert sorted(done) == list(range(chunks)), "a chunk was lost or done twice"
    per_run = ("output", "seconds", "rows_written_now")  # the last run's own figures, not the labels'
    summary, whole_summary = (
        {key: value for key, value in json.loads(path.read_text(encoding="utf-8")).items() if key not in per_run}
        for path in (killed / "labels.summary.json", whole / "labels.summary.json"))
    assert summary == whole_summary


# --------------------------------------------------------------------------- the pipeline

PIPELINE_STAGES = ["world", "corrupted-train", "corrupted-test"]
"""The pipeline's stages that need no model: the kills land in the cache engine and in `ttc-data`'s writes."""


def pipeline_command(run_dir: Path) -> list[str]:
    return [sys.executable, "scripts/pipeline.py", "--scale", "smoke", "--run_dir", str(run_dir), "--no_wandb",
            "--only", *PIPELINE_STAGES]


def stage_outputs(run_dir: Path) -> dict[str, bytes]:
    """Every file the stages wrote (logs and the cache's records aside), by path under the run directory."""
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*"))
            if path.is_file() and "logs" not in path.parts and ".stages" not in path.parts}


def test_pipeline_killed_anywhere_ends_as_an_uninterrupted_run(tmp_path):
    finish(pipeline_command(tmp_path / "whole"))
    reference = stage_outputs(tmp_path / "whole")
    assert reference
    run_dir = tmp_path / "killed"
    stages = run_dir / ".stages"

    def finished_stages() -> int:
        return len(list(stages.glob("*.json"))) if stages.is_dir() else 0

    kill_at_random_points(pipeline_command(run_dir), finished_stages, len(PIPELINE_STAGES), seed=20)
    output = finish(pipeline_command(run_dir)).stdout
    assert stage_outputs(run_dir) == reference, output[-2000:]
    assert sorted(path.stem for path in stages.glob("*.json")) == sorted(PIPELINE_STAGES)


# --------------------------------------------------------------------------- train_prm.py


def test_train_prm_resumes_from_its_last_checkpoint_after_a_kill(tmp_path):
    train_file = tmp_path / "labels.jsonl"
    train_file.write_text("".join(
        json.dumps({"prompt": f"Start with {i}. Add 3.", "completions": [f"(1) Add 3: {i} + 3 = {i + 3}",
                                                                      f"The answer is $\\boxed{{{i + 3}}}$"],
                    "labels": [True, i % 2 == 0]}) + "\n" for i in range(16)), encoding="utf-8")
    out = tmp_path / "prm"
    command = [sys.executable, "training/train_prm.py", "--init_from_config", "tiny", "--train_files", str(train_file),
               "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none", "--max_steps", "6",
               "--save_steps", "1", "--per_device_train_batch_size", "2", "--logging_steps", "1", "--seed", "0"]
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while process.poll() is None and not (out / "checkpoint-3" / "trainer_state.json").is_file():
        assert time.monotonic() < deadline, "no checkpoint-3 within 180 s"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "ttc_prm.json").exists(), "the run finished before the kill"
    last = max(int(path.name.split("-")[1]) for path in out.glob("checkpoint-*")
               if (path / "trainer_state.json").is_file())
    finish([*command, "--resume"])
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 6 and (out / "ttc_prm.json").is_file()
    log = (out / "train.log").read_text(encoding="utf-8")
    assert f"checkpoint-{last}" in log.split("training on")[-1] or "Continuing training from checkpoint" in log
