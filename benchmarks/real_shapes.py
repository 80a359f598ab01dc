"""Real-shape GPU figures: an 8B-shaped PRM trained by train_prm.py and ttc-infer with a 1B-shaped policy, random weights.

Llama-3.1-8B-shaped PRM and Llama-3.2-1B-shaped policy, built from the published architectures with random weights
(no hub), the project's tiny tokenizer (token ids only; the vocabulary size stays the real 128,256), MATH-500 text:

    python benchmarks/real_shapes.py build --out /tmp/shapes --math500 ../shared/data/math500_test.jsonl
    python benchmarks/real_shapes.py train --results R.jsonl --name lora -- \\
        --config configs/prm/llama31_8b_lora.yaml --model_name_or_path /tmp/shapes/prm-llama31-8b ...
    accelerate launch --config_file configs/accelerate/deepspeed_zero3_one_gpu.yaml benchmarks/real_shapes.py \\
        train --results R.jsonl --name zero3-full -- --config configs/prm/llama31_8b_full.yaml ...
    python benchmarks/real_shapes.py infer --results R.jsonl --name all-strategies -- \\
        run --config configs/infer/math500_gpu_shapes.yaml ...
    python benchmarks/real_shapes.py report --results R.jsonl      # the Markdown table for benchmarks/RESULTS.md

`scripts/gpu_real_shapes.sh` runs all of it as one device job. Training throughput counts only real tokens: every
built example is longer than `--min_tokens`, so each sequence is cut to exactly `max_length` and there is no padding.
Model FLOPs follow the usual MFU convention (no recompute counted): full fine-tune 6 N + 12 L d S per token, LoRA on a
frozen base 4 N + 8 L d S (no weight gradients), N the non-embedding parameters, L layers, d hidden size, S sequence.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

GIB = 1024**3
PRM_DIR = "prm-llama31-8b"
POLICY_DIR = "policy-llama32-1b"
SMOKE_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
               "head_dim": 16, "num_hidden_layers": 2}
"""`build --smoke`: the same vocabulary and code paths with a small body, so this script can be checked on a CPU."""


# ---------------------------------------------------------------------------------------------------------------------
# build: random-weight models and long step-labelled rows
# ---------------------------------------------------------------------------------------------------------------------


def _config(shape: str, tokenizer: Any, smoke: bool) -> Any:
    from training.config import ModelArguments
    from training.prm import build_model_config

    config = build_model_config(ModelArguments(init_from_config=shape), tokenizer)
    if smoke:
        for key, value in SMOKE_SHAPE.items():
            setattr(config, key, value)
    return config


def _build_model(model_class: Any, config: Any, device: str, out: Path, tokenizer: Any) -> int:
    import torch

    torch.manual_seed(0)
    with torch.device(device):  # initialising 8B parameters on the GPU takes seconds, on a CPU minutes
        model = model_class.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return parameters


def _long_rows(math500: Path, tokenizer: Any, count: int, min_tokens: int, seed: int) -> list[Any]:
    """Rows of MATH-500 problem + solution steps (continued with the next solutions) of >= min_tokens tokens."""
    from data_prep.records import StepLabels
    from data_prep.steps import split_steps

    solutions = [json.loads(line) for line in math500.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    rows: list[StepLabels] = []
    cursor = 0
    while len(rows) < count:
        prompt = solutions[cursor % len(solutions)]["problem"]
        steps: list[str] = []
        length = len(tokenizer(prompt)["input_ids"])
        while length < min_tokens or not steps:
            for step in split_steps(solutions[cursor % len(solutions)]["solution"]):
                steps.append(step)
                length += len(tokenizer(step + "\n\n")["input_ids"])
            cursor += 1
        # Random labels: these runs measure speed and memory, not what the PRM learns.
        rows.append(StepLabels(prompt=prompt, completions=steps, labels=[rng.random() < 0.7 for _ in steps]))
    return rows


def build(args: argparse.Namespace) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    from data_prep.labels import write_step_labels
    from data_prep.prm_metadata import PRMMetadata
    from data_prep.tokenizer import build_tiny_tokenizer

    out = Path(args.out)
    tokenizer = build_tiny_tokenizer()
    started = time.perf_counter()
    prm_parameters = _build_model(AutoModelForTokenClassification, _config("llama31_8b", tokenizer, args.smoke),
                                  args.device, out / PRM_DIR, tokenizer)
    PRMMetadata(prm_style="token_classification", base_model="random llama31_8b shape").save(out / PRM_DIR)
    policy_parameters = _build_model(AutoModelForCausalLM, _config("llama32_1b", tokenizer, args.smoke),
                                     args.device, out / POLICY_DIR, tokenizer)
    rows = _long_rows(Path(args.math500), tokenizer, args.rows, args.min_tokens, seed=0)
    write_step_labels(rows, out / "train.jsonl")
    print(json.dumps({"prm_parameters": prm_parameters, "policy_parameters": policy_parameters, "rows": len(rows),
                      "seconds": round(time.perf_counter() - started, 1)}))


# ---------------------------------------------------------------------------------------------------------------------
# train: train_prm.py in-process with a step timer
# ---------------------------------------------------------------------------------------------------------------------


def _numel(parameter: Any) -> int:
    return int(getattr(parameter, "ds_numel", 0) or parameter.numel())  # ZeRO-3 partitions leave numel() at 0


def _device_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"torch": torch.__version__}
    if torch.cuda.is_available():
        facts.update(device=torch.cuda.get_device_name(0),
                     peak_allocated_gib=round(torch.cuda.max_memory_allocated() / GIB, 2),
                     peak_reserved_gib=round(torch.cuda.max_memory_reserved() / GIB, 2))
    else:
        facts["device"] = "cpu"
    return facts


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _optimizer_state_dtype(optimizer: Any) -> str:
    """dtype of the Adam moments, found through the wrappers (accelerate's, DeepSpeed's ZeRO optimizer)."""
    for _ in range(4):
        for values in getattr(optimizer, "state", {}).values():
            if isinstance(values, dict) and "exp_avg" in values:
                return str(values["exp_avg"].dtype).replace("torch.", "")
        optimizer = getattr(optimizer, "optimizer", None)
        if optimizer is None:
            break
    return "unknown"


def _step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (synchronised), the trainer's settings and the model's shape."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.facts: dict[str, Any] = {}
            self._start = 0.0

        def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            config = model.config
            embedding = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else None
            parameters = sum(_numel(p) for p in model.parameters())
            self.facts = {
                "parameters": parameters,
                "trainable": sum(_numel(p) for p in model.parameters() if p.requires_grad),
                "non_embedding": parameters - (_numel(embedding) if embedding is not None else 0),
                "layers": config.num_hidden_layers, "hidden": config.hidden_size,
                "batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
                "max_length": args.max_length, "gradient_checkpointing": args.gradient_checkpointing,
            }

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            _synchronize()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, optimizer=None, **kwargs):  # noqa: ANN001
            _synchronize()
            self.seconds.append(time.perf_counter() - self._start)
            if "optimizer_state_dtype" not in self.facts:
                self.facts["optimizer_state_dtype"] = _optimizer_state_dtype(optimizer)

    return StepTimer()


def train(args: argparse.Namespace, rest: list[str]) -> None:
    from training.train_prm import main as train_main

    timer = _step_timer()
    started = time.perf_counter()
    train_main(rest, callbacks=[timer], save_model=False)
    wall = time.perf_counter() - started
    if int(os.environ.get("RANK", "0")) != 0:
        return
    facts = timer.facts
    timed = timer.seconds[args.warmup_steps:] or timer.seconds
    step_seconds = sum(timed) / len(timed)
    tokens_per_step = facts["batch"] * facts["max_length"]
    tokens_per_second = tokens_per_step / step_seconds
    lora = facts["trainable"] < facts["parameters"] / 2
    attention = facts["layers"] * facts["hidden"] * facts["max_length"]
    flops_per_token = (4 * facts["non_embedding"] + 8 * attention) if lora else (6 * facts["non_embedding"]
                                                                                  + 12 * attention)
    record = {"kind": "train", "name": args.name, **facts, "steps": len(timer.seconds), "timed_steps": len(timed),
              "step_seconds": round(step_seconds, 3), "tokens_per_second": round(tokens_per_second),
              "model_tflops_per_second": round(flops_per_token * tokens_per_second / 1e12, 1),
              "flops_convention": "4N+8LdS (LoRA)" if lora else "6N+12LdS",
              "optimizer_state_dtype": facts.get("optimizer_state_dtype", "unknown"), "wall_seconds": round(wall, 1),
              **_device_facts()}
    _append(args.results, record)


# ---------------------------------------------------------------------------------------------------------------------
# infer: ttc-infer in-process, wall time and peak memory
# ---------------------------------------------------------------------------------------------------------------------


class _CallTimer:
    """Stands in for the generator or scorer: forwards everything, times `method` calls and counts their tokens."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner, self._method = inner, method
        self.seconds, self.tokens, self.calls = 0.0, 0, 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name != self._method:
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            _synchronize()
            started = time.perf_counter()
            outputs = attribute(*args, **kwargs)
            _synchronize()
            self.seconds += time.perf_counter() - started
            self.calls += 1
            flat = [item for output in outputs for item in (output if isinstance(output, list) else [output])]
            self.tokens += sum(item.num_tokens for item in flat)
            return outputs

        return timed


def infer(args: argparse.Namespace, rest: list[str]) -> None:
    from inference import runner
    from inference.cli import main as infer_main

    timers: dict[str, _CallTimer] = {}
    build_generator, build_scorer = runner.build_generator, runner.build_scorer

    def timed_generator(config: Any) -> Any:
        timers["generate"] = _CallTimer(build_generator(config), "generate")
        return timers["generate"]

    def timed_scorer(config: Any) -> Any:
        scorer = build_scorer(config)
        if scorer is not None:
            timers["score"] = _CallTimer(scorer, "score")
        return timers.get("score", scorer)

    runner.build_generator, runner.build_scorer = timed_generator, timed_scorer
    started = time.perf_counter()
    code = infer_main(rest)
    wall = time.perf_counter() - started
    runner.build_generator, runner.build_scorer = build_generator, build_scorer
    if code != 0:
        raise SystemExit(f"ttc-infer exited with {code}")
    output_dir = Path(rest[rest.index("--output_dir") + 1]) if "--output_dir" in rest else None
    rows = []
    if output_dir is not None and (output_dir / "results.jsonl").is_file():
        rows = [json.loads(line) for line in (output_dir / "results.jsonl").read_text().splitlines() if line]
    strategies = sorted({row["strategy"] for row in rows})
    record = {"kind": "infer", "name": args.name, "rows": len(rows), "strategies": strategies,
              "problems": len({row["problem_id"] for row in rows}), "n": sorted({row["n"] for row in rows}),
              "policy_tokens": sum(row["compute"]["policy_tokens"] for row in rows),
              "prm_tokens": sum(row["compute"]["prm_tokens"] for row in rows),
              "wall_seconds": round(wall, 1), **_device_facts()}
    for name, timer in timers.items():  # generate: new tokens decoded; score: tokens through the PRM
        record[f"{name}_seconds"] = round(timer.seconds, 1)
        record[f"{name}_tokens_per_second"] = round(timer.tokens / timer.seconds) if timer.seconds else None
    _append(args.results, record)


# ---------------------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------------------


def _append(path: str, record: dict[str, Any]) -> None:
    print(json.dumps(record))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def report(args: argparse.Namespace) -> None:
    records = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    trains = [r for r in records if r["kind"] == "train"]
    infers = [r for r in records if r["kind"] == "infer"]
    if trains:
        print("| run | device | trainable / total params | batch x length | s/step | tokens/s | model TFLOP/s "
              "| peak allocated (GiB) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in trains:
            print(f"| {r['name']} | {r['device']} | {r['trainable'] / 1e9:.3f} B / {r['parameters'] / 1e9:.2f} B "
                  f"| {r['batch']} x {r['max_length']} | {r['step_seconds']} | {r['tokens_per_second']:,} "
                  f"| {r['model_tflops_per_second']} ({r['flops_convention']}) | {r.get('peak_allocated_gib', '-')} |")
    if infers:
        print()
        print("| run | device | problems | strategies | N | wall (s) | generate: s, new tokens/s "
              "| PRM score: s, tokens/s | peak allocated (GiB) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in infers:
            print(f"| {r['name']} | {r['device']} | {r['problems']} | {', '.join(r['strategies'])} | {r['n']} "
                  f"| {r['wall_seconds']} | {r.get('generate_seconds')}, {r.get('generate_tokens_per_second')} "
                  f"| {r.get('score_seconds')}, {r.get('score_tokens_per_second')} "
                  f"| {r.get('peak_allocated_gib', '-')} |")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="random-weight 8B PRM, 1B policy and long training rows")
    build_parser.add_argument("--out", required=True, help="directory for the models and train.jsonl")
    build_parser.add_argument("--math500", required=True, help="MATH-500 JSONL (text for the rows and prompts)")
    build_parser.add_argument("--device", default="cuda", help="where the weights are initialised (cuda or cpu)")
    build_parser.add_argument("--rows", type=int, default=96, help="training rows to write")
    build_parser.add_argument("--min_tokens", type=int, default=2048, help="every row is at least this long")
    build_parser.add_argument("--smoke", action="store_true", help="small body, same vocabulary: a CPU check")
    for name, text in (("train", "train_prm.py with a step timer; arguments after -- go to train_prm.py"),
                       ("infer", "ttc-infer with wall time and peak memory; arguments after -- go to ttc-infer")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--results", required=True, help="JSONL file the measurement is appended to")
        sub.add_argument("--name", required=True, help="name of the row in the report")
        if name == "train":
            sub.add_argument("--warmup_steps", type=int, default=2, help="first steps left out of the timing")
    report_parser = commands.add_parser("report", help="Markdown tables of a results file")
    report_parser.add_argument("--results", required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        rest = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = make_parser().parse_args(argv)
    {"build": lambda: build(args), "train": lambda: train(args, rest), "infer": lambda: infer(args, rest),
     "report": lambda: report(args)}[args.command]()


if __name__ == "__main__":
    main()
