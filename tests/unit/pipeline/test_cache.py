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


def _parallel(run_dir: Path, jobs: int = 2) -> PipelineOptions:
    return PipelineOptions(run_dir=run_dir, scale=SCALES["smoke"], small_policy="s", large_policy="l", force=False,
                           retrain_policies=False, wandb=False, seed=0, jobs=jobs, threads_per_stage=1)


def _script(name: str, code: str, after: tuple[str, ...] = ()) -> Stage:
    return Stage(name, name, [sys.executable, "-c", code], after=after)


def _waits_for(path: Path, then: str) -> str:
    """Code that fails unless `path` appears within 20 s (made by a stage running at the same time), then runs
    `then`."""
    return (f"import pathlib, time\np = pathlib.Path({str(path)!r})\ndeadline = time.time() + 20\n"
            "while not p.exists() and time.time() < deadline: time.sleep(0.02)\n"
            f"assert p.exists(), 'the other stage did not run beside this one'\n{then}")


def test_jobs_run_independent_stages_at_once_and_a_stage_only_after_those_it_needs(tmp_path, capsys):
    a_ran, b_ran, c_saw = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    stages = [
        # a and b each wait for the other's file: both finish only if they ran at the same time.
        _script("a", f"import pathlib\npathlib.Path({str(a_ran)!r}).write_text('a')\n" + _waits_for(b_ran, "")),
        _script("b", f"import pathlib\npathlib.Path({str(b_ran)!r}).write_text('b')\n" + _waits_for(a_ran, "")),
        # c needs a and b: it runs once both are done (their files exist), and its environment has one thread.
        _script("c", "import os, pathlib\n"
                     f"assert pathlib.Path({str(a_ran)!r}).exists() and pathlib.Path({str(b_ran)!r}).exists()\n"
                     f"pathlib.Path({str(c_saw)!r}).write_text(os.environ['OMP_NUM_THREADS'])", after=("a", "b")),
    ]
    run_stages(stages, _parallel(tmp_path))
    assert c_saw.read_text() == "1"
    assert all(is_done(tmp_path, stage, stage_key(stage, {})) for stage in stages[:2])
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("[3/3] c")][0].startswith("[3/3] c: c  (elapsed")
    assert lines.index(next(l for l in lines if l.startswith("[3/3] c: c"))) > max(
        lines.index(next(l for l in lines if l.startswith(f"[{i}/3] {n}: done"))) for i, n in ((1, "a"), (2, "b")))


def test_after_a_failure_running_stages_finish_and_no_new_one_starts(tmp_path):
    slow_done, late_ran = tmp_path / "slow", tmp_path / "late"
    stages = [
        _script("slow", f"import pathlib, time\ntime.sleep(1.0)\npathlib.Path({str(slow_done)!r}).write_text('x')"),
        _script("fail", "raise SystemExit(4)"),
        _script("late", f"import pathlib\npathlib.Path({str(late_ran)!r}).write_text('x')"),
    ]
    with pytest.raises(StageFailed, match="stage 'fail' failed with exit status 4"):
        run_stages(stages, _parallel(tmp_path))
    assert slow_done.exists() and is_done(tmp_path, stages[0], stage_key(stages[0], {}))  # its work is kept
    assert not late_ran.exists() and previous_key(tmp_path, stages[2]) is None


@pytest.mark.parametrize("jobs, cores, expected", [("auto", 2, (2, 1)), ("auto", 16, (4, 4)), ("auto", 1, (1, 1)),
                                                    ("1", 2, (1, None)), ("3", 12, (3, 4))])
def test_jobs_flag_sets_stages_at_once_and_threads_per_stage(jobs, cores, expected):
    from inference.pipeline.cli import parallelism

    assert parallelism(jobs, cores) == expected


def test_a_stage_of_a_killed_pipeline_stops_with_it(tmp_path):
    """SIGKILL of the pipeline (no handler runs) must not leave a stage writing to its log beside the rerun."""
    import os
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    driver = (
        "import sys; from pathlib import Path\n"
        "from inference.pipeline.cache import run_stages\n"
        "from inference.pipeline.scales import SCALES\n"
        "from inference.pipeline.stages import PipelineOptions, Stage\n"
        f"code = \"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        "time.sleep(60)\"\n"
        "stages = [Stage(n, n, [sys.executable, '-c', code]) for n in ('a', 'b')]\n"
        f"run_stages(stages, PipelineOptions(run_dir=Path({str(tmp_path)!r}), scale=SCALES['smoke'], "
        "small_policy='s', large_policy='l', force=False, retrain_policies=False, wandb=False, seed=0, jobs=2))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", driver], cwd=Path(__file__).resolve().parents[3])
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the stage kept running after its pipeline was killed")


def test_running_stages_are_named_while_their_output_goes_to_their_logs(tmp_path, capsys, monkeypatch):
    import inference.pipeline.cache as cache

    monkeypatch.setattr(cache, "HEARTBEAT_SECONDS", 0.2)
    stages = [_script("slow", "import time; print('progress 50%'); time.sleep(1.0)"), _script("quick", "pass")]
    run_stages(stages, _parallel(tmp_path))
    out = capsys.readouterr().out
    assert "  running: slow (" in out and "progress 50%" not in out
    assert "progress 50%" in (tmp_path / "logs" / "slow.log").read_text()
