"""The strategy registry: names, settings classes, kinds, PRM use, subsampling, drawing, unknown names and keys."""

import pytest

from inference.strategies import (
    STRATEGIES,
    adaptive_majority,
    beam_search,
    best_of_n,
    dvts,
    get_strategy,
    is_subsampled,
    kind_of,
    majority,
    make_settings,
    mcts,
    particle_filtering,
    subsampled_strategies,
)

ALL = ["majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "particle_filtering", "mcts",
       "adaptive_majority"]


def test_registry_names_and_entries():
    assert list(STRATEGIES) == ALL
    assert get_strategy("weighted_best_of_n").run is best_of_n.run_weighted
    assert get_strategy("best_of_n").run is best_of_n.run
    assert get_strategy("majority").settings is majority.Settings
    assert get_strategy("beam_search").settings is beam_search.Settings
    assert get_strategy("dvts").run is dvts.run
    assert get_strategy("particle_filtering").run is particle_filtering.run
    assert get_strategy("mcts").settings is mcts.Settings
    assert get_strategy("adaptive_majority").run is adaptive_majority.run


def test_registry_says_kind_subsampling_and_drawing():
    assert {name: kind_of(name) for name in ALL} == {
        "majority": "sampling", "best_of_n": "sampling", "weighted_best_of_n": "sampling", "beam_search": "tree",
        "dvts": "tree", "particle_filtering": "tree", "mcts": "tree", "adaptive_majority": "adaptive",
    }
    assert subsampled_strategies() == ("majority", "best_of_n", "weighted_best_of_n")
    assert [get_strategy(n).subset_selection for n in subsampled_strategies()] == ["vote", "best", "weighted"]
    assert not is_subsampled("adaptive_majority") and not is_subsampled("pass@n") and kind_of("pass@n") is None
    colors = [entry.color for entry in STRATEGIES.values()]
    assert len(set(colors)) == len(colors)  # every strategy its own colour


def test_uses_prm_follows_settings():
    assert get_strategy("majority").uses_prm(majority.Settings(score_with_prm=True))
    assert not get_strategy("majority").uses_prm(majority.Settings(score_with_prm=False))
    assert not get_strategy("adaptive_majority").uses_prm(adaptive_majority.Settings())
    assert get_strategy("adaptive_majority").uses_prm(adaptive_majority.Settings(weighted=True))
    assert get_strategy("particle_filtering").uses_prm(particle_filtering.Settings())


def test_unknown_strategy_lists_known():
    with pytest.raises(KeyError, match="unknown strategy 'rstar'; known strategies: " + ", ".join(ALL)):
        get_strategy("rstar")


def test_make_settings_builds_and_rejects_unknown_keys():
    assert make_settings("beam_search", {"n": 8, "beam_width": 2}) == beam_search.Settings(n=8, beam_width=2)
    with pytest.raises(ValueError, match="unknown setting\\(s\\) beam_width for strategy 'best_of_n'"):
        make_settings("best_of_n", {"n": 8, "beam_width": 2})
    with pytest.raises(ValueError, match="n=6 is not a multiple of beam_width=4"):
        make_settings("dvts", {"n": 6, "beam_width": 4})
    with pytest.raises(ValueError, match="unknown setting\\(s\\) beam_width for strategy 'particle_filtering'"):
        make_settings("particle_filtering", {"n": 8, "beam_width": 2})


def test_one_registry_line_is_all_a_new_strategy_needs(monkeypatch, tmp_path):
    """A strategy registered under a new name (here majority's vote, renamed) is run, subsampled, ordered and drawn
    from its entry alone: no other file names it."""
    from dataclasses import replace

    from data_prep.records import Problem
    from inference.config import RunConfig, SweepConfig
    from inference.evaluation.metrics import aggregate, problem_outcomes, strategy_rank
    from inference.reporting import plots
    from inference.runner import needs_prm, run_sweep
    from inference.results import read_results
    from inference.strategies import Strategy
    from tests.fakes import ScriptedGenerator

    def vote_again(problems, generator, scorer, settings):
        return [replace(row, strategy="vote_again") for row in majority.run(problems, generator, scorer, settings)]

    monkeypatch.setitem(STRATEGIES, "vote_again", Strategy(
        "vote_again", majority.Settings, vote_again, "sampling", "gold", "*", "vote", lambda s: s.score_with_prm))
    problems = [Problem(id=f"r/{i}", problem=f"What is {i} + 1?", answer=str(i + 1), source="toy") for i in range(3)]
    generator = ScriptedGenerator(lambda problem, prefix, n: ["$\\boxed{1}$", "$\\boxed{2}$", "$\\boxed{2}$",
                                                              "$\\boxed{3}$"][:n])
    config = RunConfig(sweep=SweepConfig(strategies=("majority", "vote_again"), max_n=4),
                       strategies={"majority": {"score_with_prm": False}, "vote_again": {"score_with_prm": False}},
                       output_dir=str(tmp_path))
    assert not needs_prm(config)
    run_sweep(config, problems, generator, None, tmp_path / "results.jsonl", progress=False)
    # It shared majority's samples (one generate call at the largest N), and evaluation subsamples it the same way.
    assert len(generator.calls) == 1
    outcomes = problem_outcomes(read_results(tmp_path / "results.jsonl"), num_subsamples=8)
    by = {(o.strategy, o.problem_id, o.n): (o.accuracy, o.policy_tokens, o.prm_tokens) for o in outcomes}
    assert {k[1:]: v for k, v in by.items() if k[0] == "vote_again"} == {
        k[1:]: v for k, v in by.items() if k[0] == "majority"}
    assert strategy_rank("vote_again") < strategy_rank("compute_optimal")
    fig = plots.plot_accuracy_vs_n(aggregate(outcomes))
    line = next(l for l in fig.axes[0].get_lines() if l.get_label() == "vote_again")
    assert (line.get_color(), line.get_marker()) == ("gold", "*")
