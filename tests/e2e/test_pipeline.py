"""The main job at the smallest scale: every stage on real tiny models, cached reruns, and resume after Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference.pipeline.scales import SCALES
from inference.pipeline.stages import PipelineOptions, stage_names
from inference.pipeline.summary import summary_lines

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PIPELINE = [sys.executable, str(REPO / "scripts" / "pipeline.py"), "--scale", "smoke", "--no_wandb"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "WANDB_MODE": "offline"}
STAGES = ["world", "policies", "verifier", "labels-oracle", "labels-mc", "labels-test", "corrupted-train",
          "prm-oracle", "prm-mc", "prm-likelihood-head", "samples", "search-oracle", "tree-oracle", "search-mc",
          "tree-mc",
          "tree-checker", "search-likelihood", "tree-likelihood", "search-likelihood-head", "tree-likelihood-head",
          "greedy-small", "greedy-large", "processbench", "corrupted-test",
          "processbench-corrupted", "processbench-likelihood", "processbench-corrupted-likelihood", "eval",
          "eval-large", "report"]


def _run(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*PIPELINE, "--run_dir", str(run_dir), *extra], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _stage_lines(stdout: str) -> dict[str, str]:
    """Stage name -> its last status line ('cached', 'done in ...')."""
    status = {}
    for line in stdout.splitlines():
        if line.startswith("[") and "] " in line and ": " in line:
            name, _, rest = line.split("] ", 1)[1].partition(": ")
            status[name] = rest
    return status


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "eval" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    return run_dir, _run(run_dir)


def test_every_stage_runs_and_leaves_a_report(finished_run):
    run_dir, result = finished_run
    status = _stage_lines(result.stdout)
    # Stages that do not need each other run at once, so their lines come in the order they started.
    assert sorted(status, key=STAGES.index) == STAGES == stage_names()
    assert all(text.startswith("done in") for text in status.values()), status
    html = (run_dir / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "https://" not in html
    assert len(list((run_dir / "report" / "figures").glob("*.png"))) >= 5
    head = run_dir / "prm-likelihood-head"
    assert json.loads((head / "ttc_prm.json").read_text())["prm_style"] == "likelihood_head"
    assert (head / "likelihood_head.safetensors").is_file()
    trained = json.loads((run_dir / "processbench" / "processbench-prm-likelihood-head.json").read_text())
    assert trained["scorer"] == "prm-likelihood-head" and trained["num_eval"] > 0
    for prm in ("prm-oracle", "prm-mc"):
        assert (run_dir / prm / "model.safetensors").is_file() and (run_dir / prm / "ttc_prm.json").is_file()
        assert (run_dir / "processbench" / f"processbench-{prm}.json").is_file()
        # The in-run PRMs start from the shipped verifier and keep its arithmetic check: held-out gold steps rank
        # above corrupted ones (40 problems, 120 solutions at smoke scale).
        corrupted = json.loads((run_dir / "processbench-corrupted" / f"processbench-{prm}.json").read_text())
        assert corrupted["num_fit"] + corrupted["num_eval"] == 120
        assert corrupted["step_auroc"] >= 0.7, (prm, corrupted["step_auroc"])
    likelihood = json.loads((run_dir / "processbench-likelihood" / "processbench-policy-large-likelihood.json")
                            .read_text())
    assert likelihood["scorer"] == "policy-large-likelihood" and likelihood["num_eval"] > 0
    assert {point["prm"] for point in _metrics(run_dir)} >= {"prm-oracle", "prm-mc", "policy-large-likelihood",
                                                              "prm-likelihood-head"}
    strategies = {point["strategy"] for point in _metrics(run_dir)}
    assert {"majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "particle_filtering", "mcts",
            "adaptive_majority", "pass@n"} <= strategies
    summary = result.stdout.split("Report: ", 1)[1].splitlines()
    assert summary[0].endswith("report.html") and len([s for s in summary[1:] if s.strip()]) == 6
    # The printed lines are the module's summary of the run's outputs.
    opts = PipelineOptions(run_dir=run_dir, scale=SCALES["smoke"], small_policy="checkpoints/policy-small",
                           large_policy="checkpoints/policy-large", force=False, retrain_policies=False, wandb=False,
                           seed=0)
    assert [line.strip() for line in summary[1:7]] == summary_lines(opts)


def test_second_run_is_all_cached(finished_run):
    run_dir, _ = finished_run
    started = time.time()
    status = _stage_lines(_run(run_dir).stdout)
    assert set(status.values()) == {"cached"}
    assert time.time() - started < 60


RERUN = ["greedy-small", "greedy-large", "processbench", "processbench-likelihood", "eval", "eval-large", "report"]
"""The stages the interrupted run redoes: a run's last stages on real models (the whole pipeline once more would
double this file's time; killed training and labelling runs resuming are tested in test_kill_anywhere.py)."""


def test_interrupted_run_resumes_and_matches(finished_run):
    # In the finished run's own directory (a stage's key holds its command line, so a copy elsewhere would rerun
    # everything), with the markers of its last stages removed: it is a run that stopped before them.
    run_dir, _ = finished_run
    reference = _metrics(run_dir)
    for name in RERUN:
        (run_dir / ".stages" / f"{name}.json").unlink()
    process = subprocess.Popen([*PIPELINE, "--run_dir", str(run_dir)], cwd=REPO, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    marker = run_dir / ".stages" / "greedy-small.json"
    deadline = time.time() + 600
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the pipeline finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "run the same command again to resume" in output, output[-2000:]
    assert not (run_dir / ".stages" / "report.json").exists()

    status = _stage_lines(_run(run_dir).stdout)
    assert status["greedy-small"] == "cached" and status["prm-oracle"] == "cached"
    assert status["report"].startswith("done in")
    assert _metrics(run_dir) == reference
