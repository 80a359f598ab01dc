"""The stage cache: a finished stage is skipped while its key holds; a changed stage removes its old outputs and
reruns; a failed one raises StageFailed and leaves no marker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from inference.pipeline.cache import (
    StageFailed,
    is_done,
    marker_path,
    previous_key,
    run_stages,
    stage_key,
)
from inference.pipeline.scales import SCALES
from inference.pipeline.stages import PipelineOptions, Stage


def _options(run_dir: Path, force: bool = False) -> PipelineOptions:
    return PipelineOptions(run_dir=run_dir, scale=SCALES["smoke"], small_policy="s", large_policy="l", force=force,
                           retrain_policies=False, wandb=False, seed=0)


def _writer(out: Path, text: str) -> Stage:
    code = f"import pathlib; p = pathlib.Path({str(out)!r}); p.write_text(p.read_text() + {text!r} if p.exists() else {text!r})"
    return Stage("write", "append a line", [sys.executable, "-c", code], clean_on_rerun=(str(out),))


def test_finished_stage_is_cached_and_a_changed_one_starts_from_clean_outputs(tmp_path, capsys):
    out = tmp_path / "out.txt"
    stage = _writer(out, "a")
    run_stages([stage], _options(tmp_path))
    key = stage_key(stage, {})
    assert is_done(tmp_path, stage, key) and marker_path(tmp_path, stage) == tmp_path / ".stages" / "write.json"
    run_stages([stage], _options(tmp_path))
    assert out.read_text() == "a" and capsys.readouterr().out.splitlines()[-1] == "[1/1] write: cached"

    changed = _writer(out, "b")
    run_stages([changed], _options(tmp_path))
    assert out.read_text() == "b"  # the old output was removed, not appended to
    assert previous_key(tmp_path, changed) == stage_key(changed, {}) != key
    assert (tmp_path / "logs" / "write.log").read_text().count("$ ") == 2


def test_only_skips_the_others_and_a_failure_leaves_no_marker(tmp_path, capsys):
    failing = Stage("fail", "exit 3", [sys.executable, "-c", "raise SystemExit(3)"])
    run_stages([failing], _options(tmp_path), only=["other"])
    assert capsys.readouterr().out.strip() == "[1/1] fail: skipped (--only)"
    with pytest.raises(StageFailed, match="exit status 3"):
        run_stages([failing], _options(tmp_path))
    assert previous_key(tmp_path, failing) is None


def test_a_failed_stage_says_why_in_the_pipelines_own_line(tmp_path):
    # A launcher (accelerate) prints its traceback after the command's one error line; the pipeline quotes that line.
    code = ("import sys; print('train_prm.py: error: labels.jsonl: line 3: 1 labels for 2 steps', file=sys.stderr); "
            "print('Traceback (most recent call last):\\n  subprocess.CalledProcessError: ...'); raise SystemExit(1)")
    failing = Stage("train", "fails on a bad row", [sys.executable, "-c", code])
    with pytest.raises(StageFailed, match=r"^stage 'train' failed with exit status 1 \(train_prm.py: error: "
                                          r"labels.jsonl: line 3: 1 labels for 2 steps\); its log: "):
        run_stages([failing], _options(tmp_path))
