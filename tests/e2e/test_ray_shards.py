"""scripts/ray_shards.py for real: 2 shards of the tiny policy as tasks of a local Ray instance, merged and evaluated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # one local Ray instance at a time

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "RAY_USAGE_STATS_ENABLED": "0"}
NUM_PROBLEMS = 6  # eval's default 5 cross-fitting folds need 5 problems
CONFIG = {
    "benchmark": {"name_or_path": "synthetic-test", "num_per_level": 2, "limit": NUM_PROBLEMS},
    "policy": {"model_name_or_path": "checkpoints/policy-small", "batch_size": 16},
    "sweep": {"strategies": ["majority"], "n_values": [2], "min_n_by_strategy": {}},
    # Hot sampling, so that the two samples of a problem differ and a shard seeded unlike the whole run would show.
    "strategies": {"majority": {"max_tokens": 64, "temperature": 2.0, "score_with_prm": False}},
    "chunk_size": 1,
}


def require_ray() -> None:
    """Skip without ray, with the install line; under CI (CI=true, which .ci/run sets) fail: CI installs it."""
    try:
        import ray  # noqa: F401
    except ImportError:
        message = "ray is not installed: pip install -e '.[ray]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI runs the Ray test: .ci/run installs the ray extra)")
        pytest.skip(message)


def rows(*paths: Path) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text(encoding="utf-8").splitlines()]


def without_seconds(row: dict) -> dict:
    """A row as any run of its config must reproduce it: wall time aside."""
    return {**row, "compute": {k: v for k, v in row["compute"].items() if k != "seconds"}}


def by_key(data: list[dict]) -> dict[tuple, dict]:
    return {(r["problem_id"], r["strategy"], r["n"], r["seed"]): without_seconds(r) for r in data}


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "run.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output_dir": str(path.parent / "from-the-file")}), encoding="utf-8")
    return path


def test_two_ray_shards_merge_to_the_unsharded_run_and_are_evaluated(config_path, tmp_path):
    require_ray()
    whole = subprocess.run([sys.executable, "-m", "inference.cli", "run", "--config", str(config_path),
                            "--output_dir", str(tmp_path / "whole")],
                           cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "ray"  # passed through to every shard, overriding the file's output_dir
    started = time.monotonic()
    result = subprocess.run([sys.executable, "scripts/ray_shards.py", "--config", str(config_path), "--shards", "2",
                             "--num_cpus", "2", "--output_dir", str(out)],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    print(f"ray_shards.py: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not (config_path.parent / "from-the-file").exists()
    for shard in ("0/2", "1/2"):
        assert f"shard {shard} done: results:" in result.stdout

    shard_files = [out / "results.shard-0-of-2.jsonl", out / "results.shard-1-of-2.jsonl"]
    shard_ids = [{r["problem_id"] for r in rows(path)} for path in shard_files]
    whole_rows = rows(tmp_path / "whole" / "results.jsonl")
    assert len(whole_rows) == NUM_PROBLEMS
    assert not shard_ids[0] & shard_ids[1]
    assert shard_ids[0] | shard_ids[1] == {r["problem_id"] for r in whole_rows}
    assert all(shard_ids)

    merged = rows(out / "merged.jsonl")
    assert Counter(json.dumps(r, sort_keys=True) for r in merged) == Counter(
        json.dumps(r, sort_keys=True) for r in rows(*shard_files))
    assert by_key(merged) == by_key(whole_rows)  # same completions, answers and token counts as one unsharded run
    assert any(len({c["text"] for c in r["completions"]}) == 2 for r in merged)

    for i in (0, 1):
        log = (out / "logs" / f"shard-{i}-of-2.log").read_text(encoding="utf-8")
        assert f"--shard {i}/2" in log and f"results: {shard_files[i]}" in log

    overall = [m for m in rows(out / "eval" / "metrics.jsonl")
               if m["strategy"] == "majority" and m["n"] == 2 and m["level"] is None and m["bin_kind"] is None]
    assert len(overall) == 1 and overall[0]["num_problems"] == NUM_PROBLEMS
    assert overall[0]["policy_tokens"] == pytest.approx(
        sum(r["compute"]["policy_tokens"] for r in merged) / NUM_PROBLEMS)
