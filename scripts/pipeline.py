"""The main job on the embedded default, in one command: world -> labels -> PRMs -> search -> eval -> report.

Every stage is one of ttc's own commands (`ttc-data`, `ttc-infer`, `accelerate launch training/train_prm.py`),
run as a subprocess so the training and inference arms stay independent. A stage is skipped when its cache key
(its command line, the content of the config files it reads and the keys of the stages it depends on) matches
the key recorded when it last finished; so a second run starts at the first changed stage, and a run stopped
with Ctrl-C resumes at the interrupted stage (whose own command resumes where it can). `--force` redoes all.

    python scripts/pipeline.py                    # default scale, about 20 minutes on 2 CPU cores
    python scripts/pipeline.py --scale smoke      # every stage on a handful of problems (tests)
    python scripts/pipeline.py --scale large      # more problems and a larger budget, for a patient user
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from inference.scoring.checker import SYNTHETIC_CHECKER
from inference.scoring.likelihood import LIKELIHOOD_STYLE

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGE_MARKER_DIR = ".stages"
LIKELIHOOD_VERIFIER = "policy-large-likelihood"
"""Name in result rows of the verifier that reads policy-large's token probabilities (no trained head)."""


@dataclass(frozen=True)
class Scale:
    """How much work each stage does."""

    label_problems_per_level: int
    label_solutions: int
    mc_problems_per_level: int
    mc_rollouts: int
    prm_epochs: int
    test_problems_per_level: int
    max_n_sampling: int
    """Largest N of majority / best-of-N / weighted best-of-N (smaller N are subsets of the same samples)."""
    max_n_tree: int
    """Largest N of beam search and DVTS (a search run per N)."""
    processbench_problems_per_level: int
    corrupted_test_problems_per_level: int
    """Held-out problems per level whose gold and two corrupted solutions test the PRMs' arithmetic check."""


SCALES: dict[str, Scale] = {
    "smoke": Scale(2, 2, 1, 2, 1, 2, 4, 4, 2, 8),
    "default": Scale(40, 4, 12, 8, 2, 20, 64, 16, 20, 40),
    "large": Scale(100, 8, 40, 16, 2, 60, 256, 64, 60, 100),
}


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: a command, what it reads, what it depends on."""

    name: str
    description: str
    command: list[str]
    reads: tuple[str, ...] = ()
    """Files whose content is part of the cache key (configs, shipped checkpoints' manifests)."""
    after: tuple[str, ...] = ()
    """Stages whose results this one uses (their keys are part of this key)."""
    clean_on_rerun: tuple[str, ...] = ()
    """Paths removed before the stage reruns after a change (outputs a changed input invalidates)."""
    late_args: Callable[["PipelineOptions"], list[str]] | None = None
    """Arguments known only once earlier stages ran (measured accuracies, parameter counts)."""


@dataclass
class PipelineOptions:
    run_dir: Path
    scale: Scale
    small_policy: str
    large_policy: str
    force: bool
    retrain_policies: bool
    wandb: bool
    seed: int
    prm_base: str = "checkpoints/prm-verifier"
    retrain_verifier: bool = False


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _ttc_infer(*args: str) -> list[str]:
    return _python("-m", "inference.cli", *args)


def build_stages(opts: PipelineOptions) -> list[Stage]:
    """The stages in run order."""
    run, s = opts.run_dir, opts.scale
    stages: list[Stage] = [
        Stage(
            "world",
            "synthetic world splits (for inspection; every stage draws the same seeded problems)",
            _python("-m", "data_prep.cli", "synth", "--out", f"{run}/world",
                    "--num-per-level-train", str(s.label_problems_per_level),
                    "--num-per-level-test", str(s.test_problems_per_level), "--seed", str(opts.seed)),
        )
    ]
    stages += _policy_stages(opts)
    stages.append(_verifier_stage(opts))
    policy_stages = ("policies",)
    for labeller, config in (("oracle", "configs/label/tiny_oracle.yaml"), ("mc", "configs/label/tiny_mc.yaml")):
        per_level = s.label_problems_per_level if labeller == "oracle" else s.mc_problems_per_level
        extra = ["--rollouts_per_step", str(s.mc_rollouts)] if labeller == "mc" else []
        stages.append(Stage(
            f"labels-{labeller}",
            f"{labeller} step labels on policy-small's solutions to synthetic train problems",
            _ttc_infer("label", "--config", config, "--policy.model_name_or_path", opts.small_policy,
                       "--benchmark.num_per_level", str(per_level), "--num_solutions", str(s.label_solutions),
                       "--output", f"{run}/labels/{labeller}.jsonl", "--seed", str(opts.seed), *extra),
            reads=(config,), after=policy_stages, clean_on_rerun=(f"{run}/labels/{labeller}.jsonl",),
        ))
    stages.append(Stage(
        "labels-test",
        "oracle-labelled policy solutions to test problems (ProcessBench-style PRM evaluation)",
        _ttc_infer("label", "--config", "configs/label/tiny_oracle.yaml", "--policy.model_name_or_path",
                   opts.small_policy, "--benchmark.name_or_path", "synthetic-test",
                   "--benchmark.num_per_level", str(s.processbench_problems_per_level),
                   "--benchmark.seed", str(opts.seed), "--num_solutions", str(s.label_solutions),
                   "--output", f"{run}/labels/test_oracle.jsonl", "--seed", str(opts.seed)),
        reads=("configs/label/tiny_oracle.yaml",), after=policy_stages,
        clean_on_rerun=(f"{run}/labels/test_oracle.jsonl",),
    ))
    stages.append(Stage(
        "corrupted-train",
        "gold and corrupted solutions of the labelled train problems, labelled by the checker (no model): mixed "
        "into each PRM's data so fine-tuning on policy samples keeps the verifier's arithmetic check",
        _python("-m", "data_prep.cli", "corrupt", "--split", "train", "--out", f"{run}/labels/train_corrupted.jsonl",
                "--num-per-level", str(s.label_problems_per_level), "--corrupted-per-problem", "3",
                "--seed", str(opts.seed)),
    ))
    for labeller in ("oracle", "mc"):
        stages.append(Stage(
            f"prm-{labeller}",
            f"tiny PRM fine-tuned from the shipped verifier on {labeller} labels (accelerate launch train_prm.py)",
            [*_accelerate_launch(), "training/train_prm.py", "--config", "configs/prm/tiny.yaml",
             "--model_name_or_path", opts.prm_base,
             "--train_files", f"{run}/labels/{labeller}.jsonl", f"{run}/labels/train_corrupted.jsonl",
             "--num_train_epochs", str(s.prm_epochs), "--output_dir", f"{run}/prm-{labeller}",
             "--run_name", f"prm-{labeller}", "--seed", str(opts.seed)],
            reads=("configs/prm/tiny.yaml", "configs/accelerate/cpu.yaml"),
            after=(f"labels-{labeller}", "corrupted-train", "verifier"),
            clean_on_rerun=(f"{run}/prm-{labeller}",),
        ))
    stages += _inference_stages(opts)
    stages += _evaluation_stages(opts)
    return stages


def _accelerate_launch() -> list[str]:
    return _python("-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu.yaml")


def _policy_stages(opts: PipelineOptions) -> list[Stage]:
    if not opts.retrain_policies:
        return [Stage(
            "policies",
            "check the shipped tiny policies against their manifests",
            _python("-c", "import sys; from training.policy import PolicyManifest; "
                          "[print(p, PolicyManifest.load(p).greedy_accuracy) for p in sys.argv[1:]]",
                    opts.small_policy, opts.large_policy),
            reads=(f"{opts.small_policy}/ttc_policy_manifest.json", f"{opts.large_policy}/ttc_policy_manifest.json"),
        )]
    return [Stage(
        "policies",
        "retrain both tiny policies (20-40 minutes each on 2 cores)",
        ["bash", "-c",
         f"{sys.executable} training/train_policy.py --config configs/policy/small.yaml --output_dir {opts.small_policy}"
         f" && {sys.executable} training/train_policy.py --config configs/policy/large.yaml "
         f"--output_dir {opts.large_policy}"],
        reads=("configs/policy/small.yaml", "configs/policy/large.yaml"),
    )]


def _verifier_stage(opts: PipelineOptions) -> Stage:
    """The PRMs' starting point: the shipped verifier (checked against its manifest) or a retrained one."""
    manifest = f"{opts.prm_base}/ttc_prm_manifest.json"
    if not opts.retrain_verifier:
        return Stage(
            "verifier",
            "check the shipped verifier PRM (the in-run PRMs' starting point) against its manifest",
            _python("scripts/ship_verifier.py", "--out", opts.prm_base, "--describe", opts.large_policy),
            reads=(manifest, f"{opts.large_policy}/ttc_policy_manifest.json"),
        )
    return Stage(
        "verifier",
        "retrain the verifier PRM from policy-large on checker-labelled data (about 90 minutes on 2 cores)",
        _python("scripts/ship_verifier.py", "--retrain", "--out", opts.prm_base),
        reads=("configs/prm/tiny_corrupted.yaml",), after=("policies",),
    )


def _inference_stages(opts: PipelineOptions) -> list[Stage]:
    run, s = opts.run_dir, opts.scale
    common = ("--config", "configs/infer/tiny.yaml", "--benchmark.num_per_level", str(s.test_problems_per_level),
              "--seed", str(opts.seed))
    stages = []
    searches = [
        # (stage, PRM, strategies, largest N): the MC-labelled PRM is compared on the PRM-guided strategies.
        ("search-oracle", "oracle", ["majority", "best_of_n", "weighted_best_of_n"], s.max_n_sampling),
        ("tree-oracle", "oracle", ["beam_search", "dvts"], s.max_n_tree),
        ("search-mc", "mc", ["best_of_n", "weighted_best_of_n"], s.max_n_sampling),
        ("tree-mc", "mc", ["beam_search"], s.max_n_tree),
    ]
    for name, labeller, strategies, max_n in searches:
        stages.append(Stage(
            name,
            f"ttc-infer: policy-small + PRM({labeller}), {', '.join(strategies)} at N <= {max_n}",
            _ttc_infer("run", *common, "--policy.model_name_or_path", opts.small_policy,
                       "--prm.path", f"{run}/prm-{labeller}", "--prm.name", f"prm-{labeller}",
                       "--sweep.strategies", *strategies, "--sweep.max_n", str(max_n),
                       "--output_dir", f"{run}/search/{name}"),
            reads=("configs/infer/tiny.yaml",), after=(f"prm-{labeller}",),
            clean_on_rerun=(f"{run}/search/{name}",),
        ))
    stages.append(Stage(
        "tree-checker",
        f"ttc-infer: policy-small + the exact step checker as PRM (a perfect verifier), beam search at N <= "
        f"{s.max_n_tree}: the ceiling of PRM-guided search with this policy",
        _ttc_infer("run", *common, "--policy.model_name_or_path", opts.small_policy,
                   "--prm.path", SYNTHETIC_CHECKER, "--sweep.strategies", "beam_search", "--sweep.max_n",
                   str(s.max_n_tree), "--output_dir", f"{run}/search/tree-checker"),
        reads=("configs/infer/tiny.yaml",), after=("policies",),
        clean_on_rerun=(f"{run}/search/tree-checker",),
    ))
    stages.append(Stage(
        "search-likelihood",
        f"ttc-infer: policy-small + policy-large's token probabilities as verifier (no trained head; a step scores "
        f"its least likely token, solutions the minimum), best-of-N and weighted best-of-N at N <= {s.max_n_sampling}",
        _ttc_infer("run", *common, "--policy.model_name_or_path", opts.small_policy,
                   "--prm.path", opts.large_policy, "--prm.prm_style", LIKELIHOOD_STYLE,
                   "--prm.name", LIKELIHOOD_VERIFIER,
                   "--sweep.strategies", "best_of_n", "weighted_best_of_n", "--sweep.max_n", str(s.max_n_sampling),
                   "--strategies.best_of_n.aggregation", "min", "--strategies.weighted_best_of_n.aggregation", "min",
                   "--output_dir", f"{run}/search/search-likelihood"),
        reads=("configs/infer/tiny.yaml",), after=("policies",),
        clean_on_rerun=(f"{run}/search/search-likelihood",),
    ))
    for size, policy in (("small", opts.small_policy), ("large", opts.large_policy)):
        stages.append(Stage(
            f"greedy-{size}",
            f"ttc-infer: policy-{size} greedy decoding (the reference line)",
            _ttc_infer("run", *common, "--policy.model_name_or_path", policy, "--sweep.strategies", "majority",
                       "--sweep.max_n", "1", "--strategies.majority.temperature", "0",
                       "--strategies.majority.score_with_prm", "false", "--output_dir", f"{run}/search/{size}-greedy"),
            reads=("configs/infer/tiny.yaml",), after=("policies",),
            clean_on_rerun=(f"{run}/search/{size}-greedy",),
        ))
    return stages


def _processbench_stage(run: Path, name: str, data_stage: str, data: str, description: str) -> Stage:
    """`ttc-infer processbench` of both PRMs on one labelled file, written to `<run>/<name>`."""
    return _processbench_call(run, name, data_stage, data, description,
                              {"prm-oracle": f"{run}/prm-oracle", "prm-mc": f"{run}/prm-mc"}, ("prm-oracle", "prm-mc"))


def _likelihood_processbench_stage(opts: PipelineOptions, name: str, data_stage: str, data: str) -> Stage:
    """The same evaluation of the likelihood verifier (its own call: prm_style applies to every PRM of a call)."""
    return _processbench_call(opts.run_dir, name, data_stage, data,
                              f"ttc-infer processbench: {LIKELIHOOD_VERIFIER} on the data of the {data_stage} stage",
                              {LIKELIHOOD_VERIFIER: opts.large_policy}, ("policies",), prm_style=LIKELIHOOD_STYLE)


def _processbench_call(run: Path, name: str, data_stage: str, data: str, description: str, prms: dict[str, str],
                       made_by: tuple[str, ...], prm_style: str | None = None) -> Stage:
    """One `ttc-infer processbench` stage: `prms` (name -> checkpoint, made by the `made_by` stages) on `data`."""
    style = ["--prm_style", prm_style] if prm_style else []
    return Stage(
        name,
        description,
        _ttc_infer("processbench", "--config", "configs/eval/processbench_tiny.yaml",
                   "--data", data, "--output_dir", f"{run}/{name}", *style, "--prms", json.dumps(prms)),
        reads=("configs/eval/processbench_tiny.yaml",), after=(data_stage, *made_by),
    )


def _evaluation_stages(opts: PipelineOptions) -> list[Stage]:
    run = opts.run_dir
    searches = ("search-oracle", "tree-oracle", "search-mc", "tree-mc", "tree-checker", "search-likelihood")
    report_args = ["--eval_dir", f"{run}/eval", "--output_dir", f"{run}/report", "--main_prm", "prm-oracle",
                   "--processbench", f"{run}/processbench/processbench-prm-oracle.json",
                   f"{run}/processbench/processbench-prm-mc.json",
                   f"{run}/processbench-likelihood/processbench-{LIKELIHOOD_VERIFIER}.json",
                   "--title", "ttc on the embedded default: policy-small + search vs policy-large greedy"]
    if opts.wandb:
        report_args += ["--wandb", "true", "--wandb_dir", f"{run}/wandb"]
    return [
        _processbench_stage(run, "processbench", "labels-test", f"{run}/labels/test_oracle.jsonl",
                            "ProcessBench-style comparison of the two PRMs on oracle-labelled test solutions"),
        Stage(
            "corrupted-test",
            "gold and corrupted solutions of held-out test problems, labelled by the checker (no model)",
            _python("-m", "data_prep.cli", "corrupt", "--split", "test", "--out", f"{run}/labels/test_corrupted.jsonl",
                    "--num-per-level", str(opts.scale.corrupted_test_problems_per_level),
                    "--corrupted-per-problem", "2", "--seed", str(opts.seed)),
        ),
        _processbench_stage(run, "processbench-corrupted", "corrupted-test", f"{run}/labels/test_corrupted.jsonl",
                            "the two PRMs on held-out gold vs corrupted steps: do they verify the arithmetic?"),
        _likelihood_processbench_stage(opts, "processbench-likelihood", "labels-test",
                                       f"{run}/labels/test_oracle.jsonl"),
        _likelihood_processbench_stage(opts, "processbench-corrupted-likelihood", "corrupted-test",
                                       f"{run}/labels/test_corrupted.jsonl"),
        Stage(
            "eval",
            "accuracy at N per strategy, level and compute; difficulty bins; compute-optimal routing",
            _ttc_infer("eval", "--inputs", *(f"{run}/search/{name}" for name in searches),
                       f"{run}/search/small-greedy", "--output_dir", f"{run}/eval",
                       "--seed", str(opts.seed), "--derive_sampling", "true"),
            after=(*searches, "greedy-small"),
            late_args=lambda o: ["--policy_params", str(count_parameters(o.small_policy)), "--prm_params", json.dumps(
                {**{f"prm-{name}": count_parameters(o.run_dir / f"prm-{name}") for name in ("oracle", "mc")},
                 SYNTHETIC_CHECKER: 0, LIKELIHOOD_VERIFIER: count_parameters(o.large_policy)})],
        ),
        Stage(
            "eval-large",
            "accuracy of the reference policy's greedy run",
            _ttc_infer("eval", "--inputs", f"{run}/search/large-greedy", "--output_dir", f"{run}/eval-large",
                       "--seed", str(opts.seed), "--compute_optimal", "false"),
            after=("greedy-large",),
            late_args=lambda o: ["--policy_params", str(count_parameters(o.large_policy))],
        ),
        Stage(
            "report",
            "plots, one HTML page and W&B offline runs",
            _ttc_infer("report", *report_args, "--policy", "policy-small"),
            after=("eval", "eval-large", "processbench", "processbench-likelihood"),
            late_args=lambda o: ["--references", json.dumps(reference_accuracies(o.run_dir))],
        ),
    ]


def count_parameters(checkpoint_dir: str | Path) -> int:
    """Parameters stored in a checkpoint's safetensors files (read from their headers, no weights loaded)."""
    from safetensors import safe_open

    files = sorted(Path(checkpoint_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{checkpoint_dir}: no *.safetensors files to count parameters from")
    total = 0
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                count = 1
                for size in handle.get_slice(name).get_shape():
                    count *= size
                total += count
    return total


def reference_accuracies(run_dir: Path) -> dict[str, float]:
    """The greedy accuracies drawn as reference lines."""
    references = {}
    for name, eval_dir in (("policy-large", run_dir / "eval-large"), ("policy-small", run_dir / "eval")):
        accuracy = greedy_accuracy(eval_dir, name)
        if accuracy is not None:
            references[f"{name} greedy"] = accuracy
    return references


# --- running -------------------------------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    if not path.exists():
        return "missing"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_key(stage: Stage, keys: dict[str, str]) -> str:
    # The interpreter enters the key as its environment (sys.prefix), not as typed: `python` and `python3` of one
    # environment (quickstart.sh runs python3) must share the cache.
    payload = {
        "command": [sys.prefix if part == sys.executable else part for part in stage.command],
        "reads": {name: _file_digest(REPO_ROOT / name) for name in stage.reads},
        "after": {name: keys[name] for name in stage.after},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class StageRecord:
    key: str
    seconds: float
    finished_at: str
    extra: dict = field(default_factory=dict)


def _marker(run_dir: Path, stage: Stage) -> Path:
    return run_dir / STAGE_MARKER_DIR / f"{stage.name}.json"


def _is_done(run_dir: Path, stage: Stage, key: str) -> bool:
    marker = _marker(run_dir, stage)
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["key"] == key
    except (ValueError, KeyError):
        return False


def _mark_done(run_dir: Path, stage: Stage, key: str, seconds: float) -> None:
    marker = _marker(run_dir, stage)
    marker.parent.mkdir(parents=True, exist_ok=True)
    record = {"key": key, "seconds": round(seconds, 1), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, marker)


def _previous_key(run_dir: Path, stage: Stage) -> str | None:
    marker = _marker(run_dir, stage)
    try:
        return json.loads(marker.read_text())["key"]
    except (OSError, ValueError, KeyError):
        return None


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if not env.get("WANDB_API_KEY"):
        env["WANDB_MODE"] = "offline"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_stage(stage: Stage, opts: PipelineOptions) -> None:
    command = stage.command + (stage.late_args(opts) if stage.late_args else [])
    log_path = opts.run_dir / "logs" / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(command)}\n")
    # Output goes to the terminal (progress bars with ETAs) and is teed into the stage's log file.
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0
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


class StageFailed(RuntimeError):
    def __init__(self, stage: Stage, status: int, log_path: Path) -> None:
        super().__init__(f"stage {stage.name!r} failed with exit status {status}; its log: {log_path}")
        self.status = status


# --- summary -------------------------------------------------------------------------------------------------


def _metrics(eval_dir: Path) -> list[dict]:
    path = eval_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _overall(points: list[dict], policy: str, strategy: str, n: int | None = None, prm: str | None = None) -> list[dict]:
    return [
        p for p in points
        if p["policy"] == policy and p["strategy"] == strategy and p["level"] is None
        and (n is None or p["n"] == n) and (prm is None or p["prm"] == prm)
    ]


def greedy_accuracy(eval_dir: Path, policy: str) -> float | None:
    """Accuracy of a policy's greedy run (majority at N = 1, temperature 0)."""
    points = _overall(_metrics(eval_dir), policy, "majority", n=1)
    greedy = [p for p in points if p["prm"] in ("", None, "none")] or points
    return greedy[0]["accuracy"] if greedy else None


def summary_lines(opts: PipelineOptions) -> list[str]:
    """Five lines of headline numbers from the eval stage's metrics."""
    eval_dir = opts.run_dir / "eval"
    points = _metrics(eval_dir)
    n_sampling, n_tree = opts.scale.max_n_sampling, opts.scale.max_n_tree

    def acc(strategy: str, n: int, prm: str = "prm-oracle") -> str:
        found = _overall(points, "policy-small", strategy, n=n, prm=prm)
        return f"{found[0]['accuracy']:.1%}" if found else "n/a"

    large = greedy_accuracy(opts.run_dir / "eval-large", "policy-large")
    small = greedy_accuracy(eval_dir, "policy-small")
    # pass@N and the exact checker are ceilings (they know the right answers), not strategies a user can run.
    reachable = [p for p in points if p["policy"] == "policy-small" and p["level"] is None
                 and p["strategy"] != "pass@n" and p["prm"] != SYNTHETIC_CHECKER]
    best = max(reachable, key=lambda p: p["accuracy"], default=None)
    matching = sorted((p for p in reachable if large is not None and p["accuracy"] >= large),
                      key=lambda p: (p["n"], -p["accuracy"]))
    match_text = (f"{_arm(matching[0])} reaches it at N = {matching[0]['n']} ({matching[0]['accuracy']:.1%})"
                  if matching else "no strategy reaches it within this budget")
    bench = [*_processbench_f1(opts.run_dir / "processbench"),
             *_processbench_f1(opts.run_dir / "processbench-likelihood")]
    corrupted = [*_processbench_f1(opts.run_dir / "processbench-corrupted", auroc_only=True),
                 *_processbench_f1(opts.run_dir / "processbench-corrupted-likelihood", auroc_only=True)]
    return [
        f"policy-small greedy {_pct(small)} | policy-large greedy {_pct(large)}",
        f"policy-small at N={n_tree}: majority {acc('majority', n_tree)}, best-of-N {acc('best_of_n', n_tree)}, "
        f"weighted best-of-N {acc('weighted_best_of_n', n_tree)}, beam search {acc('beam_search', n_tree)}, "
        f"DVTS {acc('dvts', n_tree)}",
        f"policy-small at N={n_sampling}: majority {acc('majority', n_sampling)}, weighted best-of-N "
        f"{acc('weighted_best_of_n', n_sampling)}, pass@N {acc('pass@n', n_sampling)}; with {LIKELIHOOD_VERIFIER} "
        f"as verifier at N={n_tree} / {n_sampling}: weighted best-of-N "
        f"{acc('weighted_best_of_n', n_tree, LIKELIHOOD_VERIFIER)} / "
        f"{acc('weighted_best_of_n', n_sampling, LIKELIHOOD_VERIFIER)}",
        f"policy-large greedy {_pct(large)}: {match_text}; best overall "
        + (f"{_arm(best)}@{best['n']} {best['accuracy']:.1%}" if best else "n/a")
        + f"; ceiling (beam search with the exact checker as PRM) at N={n_tree}: "
        + acc("beam_search", n_tree, prm=SYNTHETIC_CHECKER),
        "Verifiers (ProcessBench-style F1 / step AUROC on policy solutions): " + (", ".join(bench) if bench else "n/a")
        + "; step AUROC on held-out gold vs corrupted steps: " + (", ".join(corrupted) if corrupted else "n/a"),
    ]


def _arm(point: dict) -> str:
    """A strategy and the verifier it ran with (none for majority, which reads no scores)."""
    prm = point.get("prm")
    return f"{point['strategy']} ({prm})" if prm and point["strategy"] != "majority" else point["strategy"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _processbench_f1(directory: Path, auroc_only: bool = False) -> list[str]:
    found = []
    for path in sorted(directory.glob("processbench-*.json")):
        data = json.loads(path.read_text())
        tuned = data.get("tuned") or {}
        auroc = "n/a" if data.get("step_auroc") is None else f"{data['step_auroc']:.2f}"
        name = data.get("scorer", path.stem)
        f1 = f"{tuned.get('f1', float('nan')):.2f}"
        found.append(f"{name} {auroc}" if auroc_only else f"{name} F1 {f1} / AUROC {auroc}")
    return found


# --- main ----------------------------------------------------------------------------------------------------


def stage_names() -> list[str]:
    """The stage names in run order (they do not depend on the options)."""
    options = PipelineOptions(Path("runs/default"), SCALES["default"], "checkpoints/policy-small",
                              "checkpoints/policy-large", force=False, retrain_policies=False, wandb=True, seed=0)
    return [stage.name for stage in build_stages(options)]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline.py",
        description=__doc__.split("\n\n")[0],
        epilog=f"Stages: {', '.join(stage_names())}. Logs: <run-dir>/logs/<stage>.log.",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="default",
                        help="how much work: smoke (tests, ~2 min), default (~20 min on 2 cores), large (patient users)")
    parser.add_argument("--run-dir", default=None, help="where everything goes (default: runs/<scale>)")
    parser.add_argument("--small-policy", default="checkpoints/policy-small", help="the policy that searches")
    parser.add_argument("--large-policy", default="checkpoints/policy-large",
                        help="the reference policy (greedy decoding); the verifier stage notes whether the verifier "
                             "grew from it (--retrain-verifier grows one from configs/prm/tiny_corrupted.yaml's "
                             "model_name_or_path, checkpoints/policy-large)")
    parser.add_argument("--retrain-policies", action="store_true",
                        help="train both tiny policies with training/train_policy.py instead of using the shipped ones "
                        "(writes into --small-policy/--large-policy)")
    parser.add_argument("--prm-base", default="checkpoints/prm-verifier",
                        help="the in-run PRMs' initial weights: the shipped verifier PRM (see its manifest)")
    parser.add_argument("--retrain-verifier", action="store_true",
                        help="retrain the verifier PRM with scripts/ship_verifier.py --retrain (about 90 minutes on "
                        "2 cores) instead of using the shipped one (writes into --prm-base)")
    parser.add_argument("--force", action="store_true", help="redo every stage, ignoring the cache")
    parser.add_argument("--no-wandb", action="store_true", help="skip the W&B offline runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="run only these stages (and skip the rest)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    opts = PipelineOptions(
        run_dir=Path(args.run_dir or f"runs/{args.scale}"), scale=SCALES[args.scale],
        small_policy=args.small_policy, large_policy=args.large_policy, force=args.force,
        retrain_policies=args.retrain_policies, wandb=not args.no_wandb, seed=args.seed,
        prm_base=args.prm_base, retrain_verifier=args.retrain_verifier,
    )
    os.chdir(REPO_ROOT)
    stages = build_stages(opts)
    keys: dict[str, str] = {}
    started = time.time()
    try:
        for index, stage in enumerate(stages, start=1):
            keys[stage.name] = stage_key(stage, keys)
            prefix = f"[{index}/{len(stages)}] {stage.name}"
            if args.only is not None and stage.name not in args.only:
                print(f"{prefix}: skipped (--only)", flush=True)
                continue
            if not opts.force and _is_done(opts.run_dir, stage, keys[stage.name]):
                print(f"{prefix}: cached", flush=True)
                continue
            if opts.force or _previous_key(opts.run_dir, stage) not in (None, keys[stage.name]):
                # Inputs changed (or --force): old outputs would be resumed from; remove them.
                for path in stage.clean_on_rerun:
                    shutil.rmtree(path, ignore_errors=True) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)
            print(f"{prefix}: {stage.description}  (elapsed {time.time() - started:.0f}s)", flush=True)
            stage_started = time.time()
            run_stage(stage, opts)
            _mark_done(opts.run_dir, stage, keys[stage.name], time.time() - stage_started)
            print(f"{prefix}: done in {time.time() - stage_started:.0f}s", flush=True)
    except StageFailed as error:
        print(f"pipeline: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\npipeline: interrupted; run the same command again to resume at the interrupted stage",
              file=sys.stderr)
        return 130
    print(f"\nfinished in {time.time() - started:.0f}s. Report: {opts.run_dir / 'report' / 'report.html'}")
    for line in summary_lines(opts):
        print("  " + line)
    return 0


if __name__ == "__main__":
    # A plain SIGTERM behaves like Ctrl-C: stop and leave the finished stages cached. SIGINT too, even when the
    # pipeline starts from a background job of a script, which hands it SIGINT ignored (Python then installs no
    # KeyboardInterrupt handler and `kill -INT` would be lost).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
