"""The PRM style registry: the one list of styles the loader and the configs read, consistent with the styles
train_prm.py writes, and the architecture table behind the wrong-style errors."""

from __future__ import annotations

from typing import get_args

import pytest

from data_prep.checkpoints import PRM_ARCHITECTURE_SUFFIXES
from data_prep.prm_metadata import PRM_STYLES as TRAINED_STYLES
from inference.config import ConfigError, CliValue, PRMStyleName, RunConfig, parse_config
from inference.evaluation.processbench_job import ProcessBenchConfig
from inference.scoring.styles import STYLE_NAMES, STYLE_OPTIONS, STYLES, styles_reading


def test_registry_names_every_style_in_order():
    assert STYLE_NAMES == ("token_classification", "chat_plus_minus", "step_tag", "likelihood_head", "implicit",
                           "lm_likelihood", "qwen_prm", "skywork_prm")


def test_styles_train_prm_writes_are_exactly_the_trained_entries():
    # A checkpoint's ttc_prm.json names one of data_prep's PRM_STYLES; each needs a registry entry to load.
    assert sorted(name for name, spec in STYLES.items() if spec.trained_by_ttc) == sorted(TRAINED_STYLES)


def test_config_prm_style_is_the_registry():
    assert get_args(PRMStyleName) == STYLE_NAMES
    config = parse_config(RunConfig, None, {"prm.prm_style": CliValue("qwen_prm")})
    assert config.prm.prm_style == "qwen_prm"
    bench = parse_config(ProcessBenchConfig, None, {"prm_style": CliValue("skywork_prm"), "prms.sky": CliValue("ckpt"),
                                                    "data": CliValue("gsm8k.json"), "output_dir": CliValue("out")})
    assert bench.prm_style == "skywork_prm"
    with pytest.raises(ConfigError, match=r"prm.prm_style.*'qwen_prms' is not one of .*'qwen_prm', 'skywork_prm'"):
        parse_config(RunConfig, None, {"prm.prm_style": CliValue("qwen_prms")})


def test_every_entry_names_its_architectures_and_known_options():
    for name, spec in STYLES.items():
        assert spec.architectures, name
        assert set(spec.options) <= set(STYLE_OPTIONS), name
        assert callable(spec.load), name


@pytest.mark.parametrize(("architecture", "styles"), [
    ("Qwen2ForProcessRewardModel", ["qwen_prm"]),
    ("Qwen2ForPrmModel", ["skywork_prm"]),
    ("LlamaForTokenClassification", ["token_classification"]),
    ("LlamaForCausalLM", ["chat_plus_minus", "step_tag", "likelihood_head", "implicit", "lm_likelihood"]),
    ("Qwen2ForRewardModel", []),
])
def test_styles_reading_an_architecture(architecture, styles):
    assert styles_reading([architecture]) == styles


def test_public_prm_architectures_are_prm_kind_for_the_wrong_role_checks():
    # A Qwen or Skywork PRM given as the policy is refused by data_prep.checkpoints (reward-head architectures).
    for name in ("qwen_prm", "skywork_prm"):
        assert all(a.endswith(PRM_ARCHITECTURE_SUFFIXES) for a in STYLES[name].architectures)
