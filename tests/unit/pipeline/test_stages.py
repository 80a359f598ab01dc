"""The pipeline's stage graph: the PRMs start from the shipped verifier, mix in checker-labelled data, and rerun
when the verifier changes; --retrain_verifier swaps the check for the recipe."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from inference.pipeline.cache import stage_key
from inference.pipeline.scales import SCALES, Scale
from inference.pipeline.stages import PipelineOptions, build_stages


def _stages(**overrides):
    opts = PipelineOptions(
        run_dir=Path("runs/x"), scale=SCALES["smoke"], small_policy="checkpoints/policy-small",
        large_policy="checkpoints/policy-large", force=False, retrain_policies=False, wandb=False, seed=0,
        **overrides,
    )
    return {stage.name: stage for stage in build_stages(opts)}


def test_scales_are_written_by_keyword():
    with pytest.raises(TypeError):
        Scale(2, 2, 1, 2, 1, 2, 4, 4, 2, 8)  # ten integers in a row: which is which?
    assert SCALES["default"] == Scale(**asdict(SCALES["default"]))
    assert (SCALES["default"].max_n_sampling, SCALES["default"].max_n_tree) == (64, 16)


def test_policies_stage_checks_the_shipped_manifests_with_train_policy():
    stage = _stages()["policies"]
    assert stage.command[1:] == ["training/train_policy.py", "--describe", "checkpoints/policy-small",
                                 "checkpoints/policy-large"]
    assert stage.reads == ("checkpoints/policy-small/ttc_policy_manifest.json",
                           "checkpoints/policy-large/ttc_policy_manifest.json")


def test_prm_stages_fine_tune_the_shipped_verifier_on_a_mixture():
    stages = _stages()
    verifier = stages["verifier"]
    # The check reads policy-large's manifest too: a retrained policy-large reruns everything after it.
    assert verifier.reads == ("checkpoints/prm-verifier/ttc_prm_manifest.json",
                              "checkpoints/policy-large/ttc_policy_manifest.json")
    assert verifier.command[1:] == ["scripts/ship_verifier.py", "--out", "checkpoints/prm-verifier",
                                    "--describe", "checkpoints/policy-large"]
    for labeller in ("oracle", "mc"):
        command = stages[f"prm-{labeller}"].command
        assert command[command.index("--model_name_or_path") + 1] == "checkpoints/prm-verifier"
        files = command[command.index("--train_files") + 1: command.index("--train_files") + 3]
        assert files == [f"runs/x/labels/{labeller}.jsonl", "runs/x/labels/train_corrupted.jsonl"]
        assert {"verifier", "corrupted-train", f"labels-{labeller}"} <= set(stages[f"prm-{labeller}"].after)
    corrupt = stages["corrupted-train"].command
    assert corrupt[corrupt.index("--split") + 1] == "train"


def test_a_changed_verifier_changes_the_prm_stage_keys():
    stages = _stages()
    keys = {}
    for name, stage in stages.items():
        keys[name] = stage_key(stage, keys)
    changed = dict(keys, verifier="another-verifier")
    assert stage_key(stages["prm-oracle"], changed) != keys["prm-oracle"]
    assert stage_key(stages["labels-oracle"], changed) == keys["labels-oracle"]


def test_retrain_verifier_runs_the_recipe_into_prm_base():
    stages = _stages(retrain_verifier=True, prm_base="runs/x/verifier")
    command = stages["verifier"].command
    assert command[1:] == ["scripts/ship_verifier.py", "--retrain", "--out", "runs/x/verifier"]
    assert stages["verifier"].after == ("policies",)
    prm = stages["prm-oracle"].command
    assert prm[prm.index("--model_name_or_path") + 1] == "runs/x/verifier"


def test_checker_stage_feeds_eval_and_is_a_ceiling_not_a_strategy():
    stages = _stages()
    checker = stages["tree-checker"].command
    assert checker[checker.index("--prm.path") + 1] == "synthetic-checker"
    assert "tree-checker" in stages["eval"].after and "runs/x/search/tree-checker" in stages["eval"].command
    # The summary reports it as a ceiling, never as reaching policy-large: tests/unit/pipeline/test_summary.py.


def test_likelihood_stage_reads_policy_large_as_verifier_and_feeds_eval():
    stages = _stages()
    command = stages["search-likelihood"].command

    def value(flag):
        return command[command.index(flag) + 1]

    assert (value("--prm.path"), value("--prm.prm_style")) == ("checkpoints/policy-large", "lm_likelihood")
    assert value("--policy.model_name_or_path") == "checkpoints/policy-small"
    # The last step (the boxed answer) is fluent whatever came before it: solutions are scored by their minimum.
    assert value("--strategies.best_of_n.aggregation") == value("--strategies.weighted_best_of_n.aggregation") == "min"
    assert stages["search-likelihood"].after == ("policies", "samples")
    assert "search-likelihood" in stages["eval"].after
    assert "runs/x/search/search-likelihood" in stages["eval"].command
    # ProcessBench-style, in calls of their own (prm_style applies to every PRM of one call), into the report.
    for name, data in (("processbench-likelihood", "test_oracle"), ("processbench-corrupted-likelihood",
                                                                     "test_corrupted")):
        bench = stages[name].command
        assert bench[bench.index("--prm_style") + 1] == "lm_likelihood"
        assert bench[bench.index("--data") + 1] == f"runs/x/labels/{data}.jsonl"
        assert json.loads(bench[bench.index("--prms") + 1]) == {"policy-large-likelihood": "checkpoints/policy-large"}
    assert "runs/x/processbench-likelihood/processbench-policy-large-likelihood.json" in stages["report"].command


def test_every_sampling_stage_scores_the_samples_stage_s_samples_and_tree_stages_draw_their_own():
    stages = _stages()

    def value(command, flag):
        return command[command.index(flag) + 1] if flag in command else None

    drawn = stages["samples"].command
    assert value(drawn, "--strategies.majority.score_with_prm") == "false" and "--prm.path" not in drawn
    sampling = [name for name in stages if name.startswith("search-")]
    assert len(sampling) == 4
    for name in sampling:
        command = stages[name].command
        assert value(command, "--samples_from") == "runs/x/search/samples" and "samples" in stages[name].after
        # The same policy, seed, problems and largest N as the samples were drawn with, or nothing would match.
        for flag in ("--policy.model_name_or_path", "--seed", "--benchmark.num_per_level", "--sweep.max_n"):
            assert value(command, flag) == value(drawn, flag), (name, flag)
    for name in (n for n in stages if n.startswith("tree-")):
        assert "--samples_from" not in stages[name].command and "samples" not in stages[name].after


def test_a_hyphenated_flag_is_refused_naming_its_underscore_spelling(capsys):
    from inference.pipeline.cli import main

    assert main(["--scale", "smoke", "--run-dir", "runs/x"]) == 2  # refused before any stage runs
    assert capsys.readouterr().err.strip() == (
        "pipeline.py: error: unrecognized flag --run-dir; flags use underscores: --run_dir"
    )


def test_trained_prm_stages_run_the_strategies_beyond_the_reference_at_the_largest_n_only():
    """Particle filtering and MCTS beside beam search, adaptive majority beside majority, each only at the stage's
    largest N (a run per N is their cost); the other verifiers' stages do not run them."""
    scale = SCALES["default"]
    opts = PipelineOptions(run_dir=Path("runs/x"), scale=scale, small_policy="checkpoints/policy-small",
                           large_policy="checkpoints/policy-large", force=False, retrain_policies=False, wandb=False,
                           seed=0)
    stages = {stage.name: stage for stage in build_stages(opts)}
    for stage, beyond, largest in (("tree-likelihood-head", ("particle_filtering", "mcts"), scale.max_n_tree),
                                   ("search-likelihood-head", ("adaptive_majority",), scale.max_n_sampling)):
        command = stages[stage].command
        swept = command[command.index("--sweep.strategies") + 1:command.index("--sweep.max_n")]
        assert set(beyond) <= set(swept) and command[command.index("--sweep.max_n") + 1] == str(largest)
        for name in beyond:
            assert command[command.index(f"--sweep.min_n_by_strategy.{name}") + 1] == str(largest)
    tree = stages["tree-likelihood-head"].command
    for name in ("particle_filtering", "mcts"):
        assert tree[tree.index(f"--strategies.{name}.aggregation") + 1] == "min"
    for other in ("tree-likelihood", "tree-oracle", "search-likelihood", "search-oracle", "tree-checker"):
        assert not {"particle_filtering", "mcts", "adaptive_majority"} & set(stages[other].command)


def _paths_in(command: list[str]) -> set[str]:
    """Every argument of a command that names a path under the run, JSON maps' values included."""
    paths = set()
    for token in command:
        values = [token]
        if token.startswith("{"):
            values = [v for v in json.loads(token).values() if isinstance(v, str)]
        paths.update(v for v in values if v.startswith("runs/x/"))
    return paths


def test_every_stage_runs_after_the_stages_whose_outputs_it_reads():
    """With --jobs a stage starts once the stages it runs `after` are done: one that reads another's output but
    does not name it could start before that output exists."""
    stages = _stages()
    owner = {}
    for stage in stages.values():
        command = stage.command
        outputs = set(stage.clean_on_rerun)
        outputs.update(command[i + 1] for i, token in enumerate(command) if token in ("--output_dir", "--out"))
        for path in outputs:
            owner[path.rstrip("/")] = stage.name

    def needs(name, seen=None):
        seen = set() if seen is None else seen
        for dependency in stages[name].after:
            if dependency not in seen:
                seen.add(dependency)
                needs(dependency, seen)
        return seen

    checked = 0
    for stage in stages.values():
        for path in _paths_in(stage.command):
            makers = {maker for output, maker in owner.items() if path == output or path.startswith(output + "/")}
            for maker in makers - {stage.name}:
                checked += 1
                assert maker in needs(stage.name), f"{stage.name} reads {path} ({maker}'s output) but does not run after it"
    assert checked >= 20  # the search, processbench, eval and report stages all read earlier outputs
