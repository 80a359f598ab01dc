"""The strategy registry: names, settings classes, unknown names and unknown settings keys."""

import pytest

from inference.strategies import STRATEGIES, beam_search, best_of_n, dvts, get_strategy, majority, make_settings


def test_registry_names_and_entries():
    assert list(STRATEGIES) == ["majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts"]
    assert get_strategy("weighted_best_of_n").run is best_of_n.run_weighted
    assert get_strategy("best_of_n").run is best_of_n.run
    assert get_strategy("majority").settings is majority.Settings
    assert get_strategy("beam_search").settings is beam_search.Settings
    assert get_strategy("dvts").run is dvts.run


def test_unknown_strategy_lists_known():
    with pytest.raises(KeyError, match="unknown strategy 'mcts'; known strategies: majority, best_of_n, "
                                       "weighted_best_of_n, beam_search, dvts"):
        get_strategy("mcts")


def test_make_settings_builds_and_rejects_unknown_keys():
    assert make_settings("beam_search", {"n": 8, "beam_width": 2}) == beam_search.Settings(n=8, beam_width=2)
    with pytest.raises(ValueError, match="unknown setting\\(s\\) beam_width for strategy 'best_of_n'"):
        make_settings("best_of_n", {"n": 8, "beam_width": 2})
    with pytest.raises(ValueError, match="n=6 is not a multiple of beam_width=4"):
        make_settings("dvts", {"n": 6, "beam_width": 4})
