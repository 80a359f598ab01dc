"""The stage cache: a stage's key, its marker in `<run>/.stages`, and running the stages that are not done.

A stage is skipped when its key (its command line, the content of the config files it reads and the keys of the
stages it depends on) matches the key its marker recorded when it last finished; so a second run starts at the
first changed stage, and a run stopped with Ctrl-C resumes at the interrupted stage (whose own command resumes
where it can). Outputs of a stage whose inputs changed are removed before it reruns.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from data_prep.io import atomic_write_text
from inference.child_processes import stop_with_parent
from inference.pipeline.stages import REPO_ROOT, PipelineOptions, Stage

STAGE_MARKER_DIR = ".stages"
HEARTBEAT_SECONDS = 60.0
"""With stages running at once (their output in their logs), how often the pipeline names the running ones."""


class StageFailed(RuntimeError):
    """A stage's command exited with a non-zero status."""

    def __init__(self, stage: Stage, status: int, log_path: Path) -> None:
        reason = _error_line(log_path)
        super().__init__(f"stage {stage.name!r} failed with exit status {status}{f' ({reason})' if reason else ''}; "
                         f"its log: {log_path}")
        self.status = status


_ERROR_LINE = re.compile(r"^[\w.-]+: error: .+")
"""The one line ttc's commands print for a bad input (`ttc-infer: error: ...`, `train_prm.py: error: ...`)."""


def _error_line(log_path: Path) -> str | None:
    """The last error line a stage's command printed, so the pipeline's own line says why (a launcher such as
    accelerate prints its traceback after it)."""
    if not log_path.is_file():
        return None
    with log_path.open("rb") as handle:
        handle.seek(max(0, log_path.stat().st_size - 65536))
        tail = handle.read().decode("utf-8", errors="replace").splitlines()
    found = [line.strip() for line in tail if _ERROR_LINE.match(line.strip())]
    return found[-1] if found else None


def _file_digest(path: Path) -> str:
    if not path.exists():
        return "missing"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_key(stage: Stage, keys: dict[str, str]) -> str:
    """The stage's cache key, from its command, the files it reads and the keys (`keys`) of the stages before it."""
    # The interpreter enters the key as its environment (sys.prefix), not as typed: `python` and `python3` of one
    # environment (quickstart.sh runs python3) must share the cache.
    payload = {
        "command": [sys.prefix if part == sys.executable else part for part in stage.command],
        "reads": {name: _file_digest(REPO_ROOT / name) for name in stage.reads},
        "after": {name: keys[name] for name in stage.after},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def marker_path(run_dir: Path, stage: Stage) -> Path:
    """Where a finished stage records its key."""
    return run_dir / STAGE_MARKER_DIR / f"{stage.name}.json"


def previous_key(run_dir: Path, stage: Stage) -> str | None:
    """The key the stage finished with last time, or None (never finished, or an unreadable marker)."""
    try:
        return json.loads(marker_path(run_dir, stage).read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_done(run_dir: Path, stage: Stage, key: str) -> bool:
    """Whether the stage last finished with this key."""
    return previous_key(run_dir, stage) == key


def mark_done(run_dir: Path, stage: Stage, key: str, seconds: float) -> None:
    record = {"key": key, "seconds": round(seconds, 1), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(marker_path(run_dir, stage), json.dumps(record) + "\n")


def _clean(paths: Sequence[str]) -> None:
    for path in map(Path, paths):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _environment(threads: int | None = None) -> dict[str, str]:
    """The stages' environment; `threads` sets OMP_NUM_THREADS (torch's CPU threads, and accelerate launch's) unless
    the caller's environment sets it."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    if not env.get("WANDB_API_KEY"):
        env["WANDB_MODE"] = "offline"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _command(stage: Stage, opts: PipelineOptions) -> list[str]:
    return stage.command + (stage.late_args(opts) if stage.late_args else [])


def _open_log(stage: Stage, opts: PipelineOptions, command: list[str]) -> Path:
    log_path = opts.run_dir / "logs" / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(command)}\n")
    return log_path


def run_stage(stage: Stage, opts: PipelineOptions) -> None:
    """Run the stage's command from the repository root, teeing its output into `<run>/logs/<stage>.log`."""
    command = _command(stage, opts)
    log_path = _open_log(stage, opts, command)
    # Output goes to the terminal (progress bars with ETAs) and is teed into the stage's log file.
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=_environment(opts.threads_per_stage), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, bufsize=0, preexec_fn=stop_with_parent,
    )
    assert process.stdout is not None
    with open(log_path, "ab") as log:
        for chunk in iter(lambda: process.stdout.read(4096), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            log.write(chunk)
    status = process.wait()
    if status != 0:
        raise StageFailed(stage, status, log_path)


def run_stages(stages: Sequence[Stage], opts: PipelineOptions, only: Sequence[str] | None = None) -> None:
    """Run every stage that is not done with its current key (all with `opts.force`; with `only`, just those
    named), printing one status line a stage. With `opts.jobs` > 1 up to that many run at once, each as soon as
    the stages it runs after are done, in stage order. Raises StageFailed; Ctrl-C leaves finished stages marked."""
    keys: dict[str, str] = {}
    started = time.time()
    todo: list[tuple[str, Stage]] = []
    for index, stage in enumerate(stages, start=1):
        keys[stage.name] = stage_key(stage, keys)
        prefix = f"[{index}/{len(stages)}] {stage.name}"
        if only is not None and stage.name not in only:
            print(f"{prefix}: skipped (--only)", flush=True)
        elif not opts.force and is_done(opts.run_dir, stage, keys[stage.name]):
            print(f"{prefix}: cached", flush=True)
        elif opts.jobs > 1:
            todo.append((prefix, stage))
        else:
            _prepare(stage, opts, keys, prefix, started)
            stage_started = time.time()
            run_stage(stage, opts)
            mark_done(opts.run_dir, stage, keys[stage.name], time.time() - stage_started)
            print(f"{prefix}: done in {time.time() - stage_started:.0f}s", flush=True)
    if todo:
        _run_concurrently(todo, opts, keys, started)


def _prepare(stage: Stage, opts: PipelineOptions, keys: dict[str, str], prefix: str, started: float) -> None:
    """Remove the outputs of a stage whose inputs changed, and print its start line."""
    if opts.force or previous_key(opts.run_dir, stage) not in (None, keys[stage.name]):
        # Inputs changed (or --force): old outputs would be resumed from; remove them.
        _clean(stage.clean_on_rerun)
    print(f"{prefix}: {stage.description}  (elapsed {time.time() - started:.0f}s)", flush=True)


def _launch(stage: Stage, opts: PipelineOptions) -> tuple[subprocess.Popen, Path]:
    """Start the stage's command with its output appended to its log only; (the process, the log)."""
    command = _command(stage, opts)
    log_path = _open_log(stage, opts, command)
    with open(log_path, "ab") as log:
        # A child writing to its log would outlive a killed pipeline and run beside the rerun.
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=_environment(opts.threads_per_stage), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=stop_with_parent)
    return process, log_path


def _run_concurrently(todo: list[tuple[str, Stage]], opts: PipelineOptions, keys: dict[str, str],
                      started: float) -> None:
    """Up to `opts.jobs` stages at a time, each once the stages it runs after are done; their output goes to their
    logs only (interleaved progress bars would be unreadable). After a failure no new stage starts and the running
    ones finish (and are marked done) before StageFailed is raised; Ctrl-C stops the running ones."""
    waiting = list(todo)
    unfinished = {stage.name for _, stage in todo}
    running: dict[subprocess.Popen, tuple[str, Stage, Path, float]] = {}
    failure: StageFailed | None = None
    heard = time.time()
    try:
        while waiting or running:
            for item in list(waiting) if failure is None else []:
                prefix, stage = item
                if len(running) >= opts.jobs:
                    break
                if unfinished & set(stage.after):
                    continue
                waiting.remove(item)
                _prepare(stage, opts, keys, prefix, started)
                process, log_path = _launch(stage, opts)
                running[process] = (prefix, stage, log_path, time.time())
            if not running:
                break
            finished = [process for process in running if process.poll() is not None]
            if not finished:
                if time.time() - heard >= HEARTBEAT_SECONDS:  # the logs hold the progress bars; say who is busy
                    heard = time.time()
                    busy = ", ".join(f"{entry[1].name} ({heard - entry[3]:.0f}s)" for entry in running.values())
                    print(f"  running: {busy}  (elapsed {heard - started:.0f}s)", flush=True)
                time.sleep(0.1)
                continue
            for process in finished:
                prefix, stage, log_path, stage_started = running.pop(process)
                if process.returncode == 0:
                    mark_done(opts.run_dir, stage, keys[stage.name], time.time() - stage_started)
                    unfinished.discard(stage.name)
                    print(f"{prefix}: done in {time.time() - stage_started:.0f}s", flush=True)
                elif failure is None:
                    failure = StageFailed(stage, process.returncode, log_path)
                    if running:
                        names = ", ".join(entry[1].name for entry in running.values())
                        print(f"{prefix}: failed; letting the running stages finish ({names})", flush=True)
    except KeyboardInterrupt:
        for process in running:
            process.terminate()
        for process in running:
            process.wait()
        raise
    if failure is not None:
        raise failure
