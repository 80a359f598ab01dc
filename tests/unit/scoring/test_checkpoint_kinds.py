"""A checkpoint of the wrong kind is refused by name in either role, before any weights load or text is generated."""

from __future__ import annotations

import json
import shutil

import pytest

from data_prep.checkpoints import POLICY_MANIFEST_FILENAME, checkpoint_kind, require_policy_checkpoint
from inference import cli
from inference.config import PolicyConfig
from inference.generation import build_policy_generator
from inference.scoring import load_scorer


@pytest.fixture
def policy_dir(causal_lm_dir, tmp_path):
    """A causal LM carrying a policy manifest, as train_policy.py writes it."""
    directory = tmp_path / "policy"
    shutil.copytree(causal_lm_dir, directory)
    (directory / POLICY_MANIFEST_FILENAME).write_text("{}\n", encoding="utf-8")
    return directory


def test_kinds_are_read_from_ttc_files_and_architectures(token_classifier_dir, causal_lm_dir, policy_dir, tmp_path):
    assert checkpoint_kind(token_classifier_dir)[0] == "prm"
    assert checkpoint_kind(policy_dir)[0] == "policy"
    assert checkpoint_kind(causal_lm_dir) == ("unknown", "")  # a plain causal LM may be either (RLHFlow's PRMs are)
    qwen_prm = tmp_path / "qwen-prm"
    qwen_prm.mkdir()
    (qwen_prm / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForProcessRewardModel"]}))
    assert checkpoint_kind(qwen_prm) == ("prm", "its config.json declares Qwen2ForProcessRewardModel, a reward head")


def test_a_prm_as_the_policy_is_refused_before_loading(token_classifier_dir, monkeypatch):
    import inference.generation as generation

    monkeypatch.setattr(generation, "load_generator", lambda *a, **k: pytest.fail("the PRM's weights were loaded"))
    with pytest.raises(ValueError, match=r"policy.model_name_or_path='.*' is a PRM checkpoint, not a policy "
                                         r"\(it holds ttc_prm.json, written by training/train_prm.py\)"):
        build_policy_generator(PolicyConfig(model_name_or_path=str(token_classifier_dir)), seed=0)
    require_policy_checkpoint("meta-llama/Llama-3.2-1B-Instruct")  # a hub id is not a directory: left to the loader


def test_ttc_infer_run_with_a_prm_as_policy_exits_with_one_line_and_no_rows(token_classifier_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", "--policy.model_name_or_path", str(token_classifier_dir), "--benchmark.num_per_level", "1",
                     "--sweep.strategies", "majority", "--sweep.max_n", "1", "--strategies.majority.score_with_prm",
                     "false", "--output_dir", str(out)])
    error = capsys.readouterr().err.strip()
    assert code == 1
    assert error.startswith("ttc-infer: error: policy.model_name_or_path=") and "is a PRM checkpoint" in error
    assert len(error.splitlines()) == 1
    assert not list(out.glob("results*.jsonl"))


def test_a_policy_as_a_judgement_prm_is_refused(policy_dir):
    for style in ("chat_plus_minus", "step_tag"):
        with pytest.raises(ValueError, match=rf"is a policy checkpoint, not a PRM \(it holds {POLICY_MANIFEST_FILENAME}"
                                             rf".*set prm_style lm_likelihood"):
            load_scorer(policy_dir, prm_style=style, device="cpu")
    assert load_scorer(policy_dir, prm_style="lm_likelihood", device="cpu").name == "policy"  # the verifier role fits


def test_pickle_only_weights_are_refused_in_either_role(causal_lm_dir, tmp_path, monkeypatch):
    import inference.generation as generation

    pickled = tmp_path / "pickled"
    shutil.copytree(causal_lm_dir, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.rename(weights.with_name("pytorch_model.bin"))
    monkeypatch.setattr(generation, "load_generator", lambda *a, **k: pytest.fail("pickled weights were loaded"))
    with pytest.raises(ValueError, match=r"policy.model_name_or_path=.* holds weights as pickle files only "
                                         r"\(pytorch_model.bin\); ttc loads safetensors only"):
        build_policy_generator(PolicyConfig(model_name_or_path=str(pickled)), seed=0)
    with pytest.raises(ValueError, match=r"prm.path=.* holds weights as pickle files only"):
        load_scorer(pickled, prm_style="lm_likelihood", device="cpu")


def test_trust_remote_code_is_asked_for_and_warned_about(caplog):
    from inference.generation.common import model_load_options

    assert model_load_options(False, "policy x") == {"use_safetensors": True, "trust_remote_code": False}
    assert caplog.text == ""
    with caplog.at_level("WARNING"):
        assert model_load_options(True, "policy x")["trust_remote_code"] is True
    assert "policy x: trust_remote_code is on" in caplog.text
