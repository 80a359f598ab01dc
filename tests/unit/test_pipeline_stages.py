"""The pipeline's stage graph: the PRMs start from the shipped verifier, mix in checker-labelled data, and rerun
when the verifier changes; --retrain-verifier swaps the check for the recipe."""

from pathlib import Path

import pytest

from tests.repo_files import load_repo_file


@pytest.fixture(scope="module")
def pipeline():
    return load_repo_file("scripts/pipeline.py", "ttc_pipeline")


def _stages(pipeline, **overrides):
    opts = pipeline.PipelineOptions(
        run_dir=Path("runs/x"), scale=pipeline.SCALES["smoke"], small_policy="checkpoints/policy-small",
        large_policy="checkpoints/policy-large", force=False, retrain_policies=False, wandb=False, seed=0,
        **overrides,
    )
    return {stage.name: stage for stage in pipeline.build_stages(opts)}


def test_prm_stages_fine_tune_the_shipped_verifier_on_a_mixture(pipeline):
    stages = _stages(pipeline)
    verifier = stages["verifier"]
    assert verifier.reads == ("checkpoints/prm-verifier/ttc_prm_manifest.json",)
    for labeller in ("oracle", "mc"):
        command = stages[f"prm-{labeller}"].command
        assert command[command.index("--model_name_or_path") + 1] == "checkpoints/prm-verifier"
        files = command[command.index("--train_files") + 1: command.index("--train_files") + 3]
        assert files == [f"runs/x/labels/{labeller}.jsonl", "runs/x/labels/train_corrupted.jsonl"]
        assert {"verifier", "corrupted-train", f"labels-{labeller}"} <= set(stages[f"prm-{labeller}"].after)
    corrupt = stages["corrupted-train"].command
    assert corrupt[corrupt.index("--split") + 1] == "train"


def test_a_changed_verifier_changes_the_prm_stage_keys(pipeline):
    stages = _stages(pipeline)
    keys = {}
    for name, stage in stages.items():
        keys[name] = pipeline.stage_key(stage, keys)
    changed = dict(keys, verifier="another-verifier")
    assert pipeline.stage_key(stages["prm-oracle"], changed) != keys["prm-oracle"]
    assert pipeline.stage_key(stages["labels-oracle"], changed) == keys["labels-oracle"]


def test_retrain_verifier_runs_the_recipe_into_prm_base(pipeline):
    stages = _stages(pipeline, retrain_verifier=True, prm_base="runs/x/verifier")
    command = stages["verifier"].command
    assert command[1:] == ["scripts/ship_verifier.py", "--retrain", "--out", "runs/x/verifier"]
    assert stages["verifier"].after == ("policies",)
    prm = stages["prm-oracle"].command
    assert prm[prm.index("--model_name_or_path") + 1] == "runs/x/verifier"
