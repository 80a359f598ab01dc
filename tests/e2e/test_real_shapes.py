"""The one-GPU real-shape job (scripts/gpu_real_shapes.sh) rehearsed on a CPU with a small body: every phase runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

# DeepSpeed runs rendezvous on one fixed local port: under -n their tests share one worker.
pytestmark = [pytest.mark.slow, pytest.mark.deepspeed, pytest.mark.xdist_group("deepspeed")]

REPO = Path(__file__).resolve().parents[2]
MATH500 = REPO.parent / "shared" / "data" / "math500_test.jsonl"


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed extra not installed")
@pytest.mark.skipif(not MATH500.is_file(), reason=f"MATH-500 file {MATH500} is not present")
def test_gpu_job_rehearsal_on_cpu_measures_every_phase(tmp_path: Path) -> None:
    env = {**os.environ, "CPU_SMOKE": "1", "OUT": str(tmp_path / "out"), "SHAPES": str(tmp_path / "shapes"),
           "MATH500": str(MATH500), "PYTHON": "python", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "scripts/gpu_real_shapes.sh"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for phase in ("build", "infer", "lora", "zero3"):
        assert f"== {phase} exit 0" in result.stdout, result.stdout
    records = {r["name"].split(",")[0]: r for r in map(json.loads, (tmp_path / "out" / "real_shapes.jsonl").open())}
    assert set(records) == {"1B policy + 8B PRM", "LoRA r=16", "full"}
    infer = records["1B policy + 8B PRM"]
    assert infer["strategies"] == ["adaptive_majority", "beam_search", "best_of_n", "dvts", "majority", "mcts",
                                   "particle_filtering", "weighted_best_of_n"]
    assert (infer["problems"], infer["n"]) == (2, [16])
    assert infer["generate_tokens_per_second"] > 0 and infer["score_tokens_per_second"] > 0
    lora, full = records["LoRA r=16"], records["full"]
    # The 8B vocabulary is kept (128,256 x 64 embedding); LoRA trains a sliver of it, the full run everything.
    assert lora["trainable"] < lora["parameters"] / 100 and full["trainable"] == full["parameters"]
    assert (lora["batch"], lora["max_length"], full["batch"]) == (8, 256, 4)
    # The one-GPU ZeRO-3 config keeps Adam moments in bf16; the LoRA run keeps torch's fp32 moments.
    assert (full["optimizer_state_dtype"], lora["optimizer_state_dtype"]) == ("bfloat16", "float32")
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| LoRA r=16, llama31_8b_lora.yaml |" in report and "tokens/s" in report
