"""The pipeline's stage graph: Stage, PipelineOptions and the stages of each arm, in run order.

Every stage is one of ttc's own commands (`ttc-data`, `ttc-infer`, `accelerate launch training/train_prm.py`,
`training/train_policy.py`, `scripts/ship_verifier.py`), run as a subprocess from the repository root so the
training and inference arms stay independent.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_prep.checkpoints import POLICY_MANIFEST_FILENAME
from inference.pipeline.scales import SCALES, Scale
from inference.scoring.checker import SYNTHETIC_CHECKER
from inference.scoring.likelihood import LIKELIHOOD_STYLE

REPO_ROOT = Path(__file__).resolve().parents[2]
"""Where the stage commands run (their paths are relative to it)."""
LIKELIHOOD_VERIFIER = "policy-large-likelihood"
"""Name in result rows of the verifier that reads policy-large's token probabilities (no trained head)."""
LIKELIHOOD_HEAD_PRM = "prm-likelihood-head"
"""The PRM trained in the run over that read-out (prm_style likelihood_head, same backbone): it is compared with
the untrained read-out in every search and ProcessBench stage, so the run says whether training pays."""
CLASSIFIER_PRMS = ("prm-oracle", "prm-mc")
"""The token-classification PRMs fine-tuned from the shipped verifier on each label set."""
TRAINED_PRMS = (LIKELIHOOD_HEAD_PRM, *CLASSIFIER_PRMS)
MIN_AGGREGATION = ("best_of_n", "weighted_best_of_n", "beam_search", "dvts", "particle_filtering", "mcts")
"""Strategies whose `aggregation` the likelihood verifiers set to min: a solution is as good as its least likely
step (the boxed answer at the end is fluent whatever came before it)."""
SAMPLES_STAGE = "samples"
"""The stage that draws policy-small's samples of the test problems once; every sampling stage scores them."""
BEYOND_SAMPLING = ["adaptive_majority"]
"""Adaptive sampling run with the trained PRM at the largest sampling N (beside majority at that N)."""
BEYOND_TREE = ["particle_filtering", "mcts"]
"""Tree search beyond the reference's, run with the trained PRM at the largest tree N (beside beam search)."""


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
    late_args: Callable[[PipelineOptions], list[str]] | None = None
    """Arguments known only once earlier stages ran (measured accuracies, parameter counts)."""


@dataclass
class PipelineOptions:
    """What one pipeline run does and where (the command line's choices)."""

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
    jobs: int = 1
    """Stages run at once (each as soon as those it runs after are done)."""
    threads_per_stage: int | None = None
    """OMP_NUM_THREADS of each stage (None: the command's own default); a set OMP_NUM_THREADS wins."""


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _ttc_infer(*args: str) -> list[str]:
    return _python("-m", "inference.cli", *args)


def _ttc_data(*args: str) -> list[str]:
    return _python("-m", "data_prep.cli", *args)


def build_stages(opts: PipelineOptions) -> list[Stage]:
    """The stages in run order."""
    run, s = opts.run_dir, opts.scale
    stages: list[Stage] = [
        Stage(
            "world",
            "synthetic world splits (for inspection; every stage draws the same seeded problems)",
            _ttc_data("synth", "--out", f"{run}/world",
                      "--num_per_level_train", str(s.label_problems_per_level),
                      "--num_per_level_test", str(s.test_problems_per_level), "--seed", str(opts.seed)),
        )
    ]
    stages += _policy_stages(opts)
    stages.append(_verifier_stage(opts))
    stages += _label_stages(opts)
    stages += _prm_stages(opts)
    stages += _inference_stages(opts)
    stages += _evaluation_stages(opts)
    return stages


def stage_names() -> list[str]:
    """The stage names in run order (they do not depend on the options)."""
    options = PipelineOptions(Path("runs/default"), SCALES["default"], "checkpoints/policy-small",
                              "checkpoints/policy-large", force=False, retrain_policies=False, wandb=True, seed=0)
    return [stage.name for stage in build_stages(options)]


def _accelerate_launch() -> list[str]:
    return _python("-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu.yaml")


def _policy_stages(opts: PipelineOptions) -> list[Stage]:
    if not opts.retrain_policies:
        return [Stage(
            "policies",
            "check the shipped tiny policies against their manifests",
            _python("training/train_policy.py", "--describe", opts.small_policy, opts.large_policy),
            reads=(f"{opts.small_policy}/{POLICY_MANIFEST_FILENAME}", f"{opts.large_policy}/{POLICY_MANIFEST_FILENAME}"),
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
            reads=(manifest, f"{opts.large_policy}/{POLICY_MANIFEST_FILENAME}"),
        )
    return Stage(
        "verifier",
        "retrain the verifier PRM from policy-large on checker-labelled data (about 90 minutes on 2 cores)",
        _python("scripts/ship_verifier.py", "--retrain", "--out", opts.prm_base),
        reads=("configs/prm/tiny_corrupted.yaml",), after=("policies",),
    )


def _label_stages(opts: PipelineOptions) -> list[Stage]:
    """Step labels of policy-small's solutions (oracle, Monte Carlo, test) and the checker-labelled train mixture."""
    run, s = opts.run_dir, opts.scale
    policy_stages = ("policies",)
    stages = []
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
        _corrupt_command("train", f"{run}/labels/train_corrupted.jsonl", s.label_problems_per_level, 3, opts.seed),
    ))
    return stages


def _corrupt_command(split: str, out: str, per_level: int, corrupted_per_problem: int, seed: int) -> list[str]:
    """`ttc-data corrupt`: gold and corrupted solutions of `split` problems, labelled by the checker."""
    return _ttc_data("corrupt", "--split", split, "--out", out, "--num_per_level", str(per_level),
                     "--corrupted_per_problem", str(corrupted_per_problem), "--seed", str(seed))


def _prm_stages(opts: PipelineOptions) -> list[Stage]:
    """One tiny PRM per labeller, fine-tuned from the shipped (or retrained) verifier."""
    run, s = opts.run_dir, opts.scale
    return [
        Stage(
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
        )
        for labeller in ("oracle", "mc")
    ] + [Stage(
        LIKELIHOOD_HEAD_PRM,
        "likelihood-head PRM: policy-large's token probabilities (the untrained read-out) with a head trained on the "
        "oracle labels and corrupted-train (accelerate launch train_prm.py, configs/prm/tiny_likelihood_head.yaml)",
        [*_accelerate_launch(), "training/train_prm.py", "--config", "configs/prm/tiny_likelihood_head.yaml",
         "--model_name_or_path", opts.large_policy,
         "--train_files", f"{run}/labels/oracle.jsonl", f"{run}/labels/train_corrupted.jsonl",
         "--output_dir", f"{run}/{LIKELIHOOD_HEAD_PRM}", "--run_name", LIKELIHOOD_HEAD_PRM, "--seed", str(opts.seed)],
        reads=("configs/prm/tiny_likelihood_head.yaml", "configs/accelerate/cpu.yaml"),
        after=("labels-oracle", "corrupted-train", "policies"),
        clean_on_rerun=(f"{run}/{LIKELIHOOD_HEAD_PRM}",),
    )]


def _inference_stages(opts: PipelineOptions) -> list[Stage]:
    s = opts.scale
    searches = [
        # (stage, PRM, strategies, largest N): the MC-labelled PRM is compared on the PRM-guided strategies.
        ("search-oracle", "oracle", ["majority", "best_of_n", "weighted_best_of_n"], s.max_n_sampling),
        ("tree-oracle", "oracle", ["beam_search", "dvts"], s.max_n_tree),
        ("search-mc", "mc", ["best_of_n", "weighted_best_of_n"], s.max_n_sampling),
        ("tree-mc", "mc", ["beam_search"], s.max_n_tree),
    ]
    # The sampling stages score one set of policy-small samples: drawn once here, read by each through
    # samples_from (the same samples a stage would draw itself with the same seed, token counters included).
    samples = f"{opts.run_dir}/search/{SAMPLES_STAGE}"
    from_samples = ["--samples_from", samples]
    stages = [_search_stage(
        opts, SAMPLES_STAGE, f"ttc-infer: policy-small's {s.max_n_sampling} samples per test problem, drawn once "
        "(majority without a PRM) for the search stages to score", opts.small_policy,
        ["--sweep.strategies", "majority", "--sweep.max_n", str(s.max_n_sampling),
         "--strategies.majority.score_with_prm", "false"])]
    stages += [
        _search_stage(opts, name, f"ttc-infer: policy-small + PRM({labeller}), {', '.join(strategies)} at N <= {max_n}",
                      opts.small_policy, ["--prm.path", f"{opts.run_dir}/prm-{labeller}", "--prm.name",
                                          f"prm-{labeller}", "--sweep.strategies", *strategies, "--sweep.max_n",
                                          str(max_n), *(from_samples if name.startswith("search-") else [])],
                      after=(f"prm-{labeller}", *([SAMPLES_STAGE] if name.startswith("search-") else [])))
        for name, labeller, strategies, max_n in searches
    ]
    stages.append(_search_stage(
        opts, "tree-checker",
        f"ttc-infer: policy-small + the exact step checker as PRM (a perfect verifier), beam search at N <= "
        f"{s.max_n_tree}: the ceiling of PRM-guided search with this policy",
        opts.small_policy, ["--prm.path", SYNTHETIC_CHECKER, "--sweep.strategies", "beam_search", "--sweep.max_n",
                            str(s.max_n_tree)],
    ))
    untrained = ["--prm.path", opts.large_policy, "--prm.prm_style", LIKELIHOOD_STYLE, "--prm.name", LIKELIHOOD_VERIFIER]
    trained = ["--prm.path", f"{opts.run_dir}/{LIKELIHOOD_HEAD_PRM}", "--prm.name", LIKELIHOOD_HEAD_PRM]
    for name, verifier, what, after in (
        ("likelihood", untrained, "policy-large's token probabilities as verifier (no trained head; a step scores its "
         "least likely token, solutions the minimum)", ("policies",)),
        ("likelihood-head", trained, f"{LIKELIHOOD_HEAD_PRM} (the same read-out with a trained head; solutions the "
         "minimum)", (LIKELIHOOD_HEAD_PRM,)),
    ):
        # The trained PRM's run also draws majority from its own samples, so its comparisons pair on them; it also
        # runs the strategies beyond the reference at the largest N only (a run per N is their cost).
        trained_run = name == "likelihood-head"
        sampled = ["majority", "best_of_n", "weighted_best_of_n"] if trained_run else ["best_of_n", "weighted_best_of_n"]
        for kind, strategies, largest_only, max_n in (
            ("search", sampled, BEYOND_SAMPLING if trained_run else [], s.max_n_sampling),
            ("tree", ["beam_search", "dvts"], BEYOND_TREE if trained_run else [], s.max_n_tree),
        ):
            swept = [*strategies, *largest_only]
            minimum = [arg for strategy in swept if strategy in MIN_AGGREGATION
                       for arg in (f"--strategies.{strategy}.aggregation", "min")]
            only_largest = [arg for strategy in largest_only
                            for arg in (f"--sweep.min_n_by_strategy.{strategy}", str(max_n))]
            stages.append(_search_stage(
                opts, f"{kind}-{name}", f"ttc-infer: policy-small + {what}, {', '.join(strategies)} at N <= {max_n}"
                + (f", {', '.join(largest_only)} at N = {max_n}" if largest_only else ""),
                opts.small_policy, [*verifier, "--sweep.strategies", *swept, "--sweep.max_n", str(max_n),
                                    *minimum, *only_largest, *(from_samples if kind == "search" else [])],
                after=(*after, *([SAMPLES_STAGE] if kind == "search" else [])),
            ))
    for size, policy in (("small", opts.small_policy), ("large", opts.large_policy)):
        stages.append(_search_stage(
            opts, f"greedy-{size}", f"ttc-infer: policy-{size} greedy decoding (the reference line)", policy,
            ["--sweep.strategies", "majority", "--sweep.max_n", "1", "--strategies.majority.temperature", "0",
             "--strategies.majority.score_with_prm", "false"], output=f"{size}-greedy",
        ))
    return stages


def _search_stage(opts: PipelineOptions, name: str, description: str, policy: str, args: list[str],
                  after: tuple[str, ...] = ("policies",), output: str | None = None) -> Stage:
    """`ttc-infer run` of `policy` on the test problems with `args`, into `<run>/search/<output or name>`."""
    out = f"{opts.run_dir}/search/{output or name}"
    return Stage(
        name,
        description,
        _ttc_infer("run", "--config", "configs/infer/tiny.yaml", "--benchmark.num_per_level",
                   str(opts.scale.test_problems_per_level), "--seed", str(opts.seed),
                   "--policy.model_name_or_path", policy, *args, "--output_dir", out),
        reads=("configs/infer/tiny.yaml",), after=after, clean_on_rerun=(out,),
    )


def _processbench_stage(run: Path, name: str, data_stage: str, data: str, description: str) -> Stage:
    """`ttc-infer processbench` of the PRMs trained in the run on one labelled file, written to `<run>/<name>`."""
    return _processbench_call(run, name, data_stage, data, description,
                              {prm: f"{run}/{prm}" for prm in TRAINED_PRMS}, TRAINED_PRMS)


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
    from inference.pipeline.summary import reference_accuracies

    run = opts.run_dir
    searches = ("search-oracle", "tree-oracle", "search-mc", "tree-mc", "tree-checker", "search-likelihood",
                "tree-likelihood", "search-likelihood-head", "tree-likelihood-head")
    report_args = ["--eval_dir", f"{run}/eval", "--output_dir", f"{run}/report", "--main_prm", LIKELIHOOD_HEAD_PRM,
                   "--processbench", *(f"{run}/processbench/processbench-{prm}.json" for prm in TRAINED_PRMS),
                   f"{run}/processbench-likelihood/processbench-{LIKELIHOOD_VERIFIER}.json",
                   "--reference_eval_dirs", json.dumps({"policy-large greedy": f"{run}/eval-large"}),
                   "--title", "ttc on the embedded default: policy-small + search vs policy-large greedy"]
    if opts.wandb:
        report_args += ["--wandb", "true", "--wandb_dir", f"{run}/wandb"]
    return [
        _processbench_stage(run, "processbench", "labels-test", f"{run}/labels/test_oracle.jsonl",
                            "ProcessBench-style comparison of the two PRMs on oracle-labelled test solutions"),
        Stage(
            "corrupted-test",
            "gold and corrupted solutions of held-out test problems, labelled by the checker (no model)",
            _corrupt_command("test", f"{run}/labels/test_corrupted.jsonl",
                             opts.scale.corrupted_test_problems_per_level, 2, opts.seed),
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
                {**{prm: count_parameters(o.run_dir / prm) for prm in TRAINED_PRMS},
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
