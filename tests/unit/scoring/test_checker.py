"""The exact-checker PRM scores exactly the steps before the first wrong one, and only on synthetic problems."""

import random

import pytest

from data_prep.synthetic import corrupted_steps, generate_problems, gold_steps
from inference.config import RunConfig, parse_config
from inference.runner import build_scorer, check_prm_path
from inference.scoring.loader import load_scorer
from inference.scoring.checker import SYNTHETIC_CHECKER, SyntheticCheckerScorer


def test_scores_every_step_before_the_first_wrong_one():
    problem = generate_problems("test", 1, seed=0, levels=(3,))[0]
    gold = gold_steps(problem)  # 4 operations + the final-answer step
    wrong_at_2 = corrupted_steps(problem, 2, random.Random(0))
    early_box = gold[:2] + [gold[-1]]  # the right answer boxed before operations 3 and 4
    scores = SyntheticCheckerScorer().score([problem.problem] * 4, [gold, wrong_at_2, early_box, gold + ["More."]])
    assert [s.step_scores for s in scores] == [
        (1.0, 1.0, 1.0, 1.0, 1.0),
        (1.0, 1.0, 0.0, 0.0, 0.0),
        (1.0, 1.0, 0.0),
        (1.0, 1.0, 1.0, 1.0, 1.0, 0.0),
    ]
    assert all(s.num_tokens == 0 for s in scores)  # no model: search with it spends no PRM compute


def test_a_prefix_of_right_steps_scores_all_ones():
    # Tree search scores partial solutions: right so far means every score is 1.
    problem = generate_problems("test", 1, seed=0, levels=(5,))[0]
    assert SyntheticCheckerScorer().score([problem.problem], [gold_steps(problem)[:3]])[0].step_scores == (1.0,) * 3


def test_non_synthetic_problem_is_an_error_naming_the_prm_path():
    with pytest.raises(ValueError, match=r"prm.path='synthetic-checker' checks synthetic-world problems only.*"
                                         r"What is 2\+2"):
        SyntheticCheckerScorer().score(["What is 2+2?"], [["4"]])


def test_run_config_selects_it_without_a_checkpoint():
    config = parse_config(RunConfig, None, {"prm.path": SYNTHETIC_CHECKER, "prm.name": "perfect-verifier"})
    check_prm_path(config)  # no directory needed
    scorer = build_scorer(config)
    assert isinstance(scorer, SyntheticCheckerScorer) and scorer.name == "perfect-verifier"
    assert scorer.num_parameters == 0


def test_options_for_a_model_are_refused_not_ignored():
    with pytest.raises(ValueError, match="synthetic-checker is not a model; remove prm_style, step_tag"):
        load_scorer(SYNTHETIC_CHECKER, prm_style="step_tag", step_tag="ki")
    config = parse_config(RunConfig, None, {"prm.path": SYNTHETIC_CHECKER, "prm.prefix_cache_gib": 0.5})
    with pytest.raises(ValueError, match="remove prefix_cache_bytes"):
        build_scorer(config)
