"""MCTS: UCT scores and choices, backup, duplicate merging, widening and dead ends on hand-built trees; scripted runs."""

import math
from collections import Counter

import pytest

from data_prep.records import Problem
from inference.strategies import make_settings, mcts
from inference.strategies.common import Ledger
from inference.strategies.tree import Partial
from inference.types import SamplingParams
from tests.fakes import ScriptedGenerator, TablePRMScorer


def leaf(name, ended=False):
    return Partial(owner=0, steps=(name,), ended=ended)


def hand_built_tree(c1_ended=False, c2_ended=False):
    """root -> A (.6), B (.3), C (.9); C -> C1 (.9), C2 (.8)."""
    root = mcts.Node(Partial(owner=0))
    a, b, c = mcts.add_children(root, [leaf("A"), leaf("B"), leaf("C")], [0.6, 0.3, 0.9])
    c1, c2 = mcts.add_children(c, [leaf("C1", c1_ended), leaf("C2", c2_ended)], [0.9, 0.8])
    return root, a, b, c, c1, c2


def test_backup_adds_children_visits_and_values_to_every_ancestor():
    root, a, b, c, c1, c2 = hand_built_tree()
    assert [(n.visits, n.value_sum) for n in (a, b, c1, c2)] == [(1, 0.6), (1, 0.3), (1, 0.9), (1, 0.8)]
    assert (c.visits, c.value_sum) == (3, pytest.approx(2.6))  # its own visit + two children
    assert (root.visits, root.value_sum) == (5, pytest.approx(3.5))
    assert c.q == pytest.approx(2.6 / 3)


def test_uct_scores_and_choice_depend_on_exploration():
    root, a, _, c, c1, _ = hand_built_tree()
    assert mcts.uct(a, root.visits, 1.0) == pytest.approx(0.6 + math.sqrt(math.log(5)))
    assert mcts.uct(c, root.visits, 1.0) == pytest.approx(2.6 / 3 + math.sqrt(math.log(5) / 3))
    # c = 1: A's exploration bonus (1.27) beats C's better mean -> A; c = 0: greedy on Q -> C, then C1 (.9 > .8).
    assert mcts.select_leaf(root, 1.0) is a
    assert mcts.select_leaf(root, 0.0) is c1
    assert mcts.uct(mcts.Node(leaf("new")), 5, 1.0) == math.inf


def test_terminal_children_are_skipped_and_exhaust_their_parent():
    root, a, b, c, c1, c2 = hand_built_tree(c1_ended=True)
    assert c1.exhausted and not c.exhausted and mcts.select_leaf(root, 0.0) is c2
    root, a, b, c, c1, c2 = hand_built_tree(c1_ended=True, c2_ended=True)
    assert c.exhausted and not root.exhausted and mcts.select_leaf(root, 0.0) is a
    assert mcts.best_path_leaf(root) is c1  # most visited: C (3), then the higher Q of two single visits
    assert mcts.terminal_nodes(root) == [c1, c2]


def test_a_duplicate_sample_is_a_visit_of_the_existing_child_not_a_new_node():
    root = mcts.Node(Partial(owner=0))
    a, b = mcts.add_children(root, [leaf("A"), leaf("A"), leaf("B")], [0.6, 0.6, 0.3], merge=True)
    assert root.children == [a, b] and (a.visits, a.value_sum) == (2, pytest.approx(1.2))
    assert (root.visits, root.value_sum) == (3, pytest.approx(1.5))
    # A later expansion that samples A again adds to it and creates only the new C.
    (c,) = mcts.add_children(root, [leaf("A"), leaf("C")], [0.6, 0.7], merge=True)
    assert root.children == [a, b, c] and a.visits == 3 and root.visits == 5
    # Without merging (the default) every sample is its own node.
    assert len(mcts.add_children(mcts.Node(Partial(owner=0)), [leaf("A"), leaf("A")], [0.6, 0.6])) == 2


def test_a_node_whose_children_are_all_dead_ends_widens_up_to_its_limit():
    root = mcts.Node(Partial(owner=0))
    (a,) = mcts.add_children(root, [leaf("A")], [0.6], max_expansions=2)
    dead = mcts.add_children(a, [leaf("A1"), leaf("A2")], [0.0, 0.0], max_expansions=2)
    assert all(node.exhausted for node in dead) and mcts.can_widen(a, 2) and mcts.select_leaf(root, 1.0, 2) is a and mcts.next_in_simulation(a, 2) is a
    mcts.add_children(a, [leaf("A3"), leaf("A4")], [0.0, 0.0], max_expansions=2)
    assert not mcts.can_widen(a, 2) and a.exhausted and root.exhausted  # two expansions: the limit
    # A live child, however much worse than its parent, is descended into rather than widened past (soft PRMs).
    root = mcts.Node(Partial(owner=0))
    (b,) = mcts.add_children(root, [leaf("B")], [0.9], max_expansions=4)
    _, b2 = mcts.add_children(b, [leaf("B1"), leaf("B2")], [0.0, 0.1], max_expansions=4)
    assert not mcts.can_widen(b, 4) and mcts.next_in_simulation(b, 4) is b2 and mcts.select_leaf(root, 1.0, 4) is b2


def test_a_zero_valued_child_is_a_dead_end_and_a_parent_of_dead_ends_is_exhausted_once_it_cannot_widen():
    root = mcts.Node(Partial(owner=0))
    a, b = mcts.add_children(root, [leaf("A"), leaf("B")], [0.0, 0.5])
    assert a.exhausted and not b.exhausted and mcts.select_leaf(root, 5.0) is b  # A's bonus never counts
    root = mcts.Node(Partial(owner=0))
    mcts.add_children(root, [leaf("A"), leaf("B")], [0.0, 0.0], max_expansions=2)
    assert not root.exhausted and mcts.next_in_simulation(root, 2) is root
    mcts.add_children(root, [leaf("A"), leaf("C")], [0.0, 0.0], max_expansions=2)
    assert root.exhausted and mcts.select_leaf(root, 1.0, 2) is None and mcts.next_in_simulation(root, 2) is None


CHECKED = Problem(id="m/1", problem="What is 1 + 4?", answer="5", source="toy")
ROUNDS = {
    # Each prefix's scripted samples, one list per time it is expanded (the root: first two wrong first steps).
    "": [["W1 wrong\n\n", "W2 wrong\n\n"], ["R right\n\n", "W1 wrong\n\n"]],
    "R right\n\n": [["Ans $\\boxed{5}$", "Ans $\\boxed{5}$"]],
    "W1 wrong\n\n": [["Ans $\\boxed{4}$"]],
}
CHECKER_TABLE = {"W1 wrong": 0.0, "W2 wrong": 0.0, "R right": 1.0, "Ans $\\boxed{5}$": 1.0, "Ans $\\boxed{4}$": 0.0}


def rounds_generator():
    expanded = Counter()

    def script(problem, prefix, n):
        expanded[prefix] += 1
        return ROUNDS[prefix][expanded[prefix] - 1]

    return ScriptedGenerator(script)


@pytest.mark.parametrize(("max_node_expansions", "expanded", "pred", "texts"), [
    # Widening: both first steps are dead ends (0), so the root is sampled again and finds R; R's two identical
    # answers are one terminal node of two visits, hence two completions.
    (4, ["", "", "R right\n\n"], "5", ["R right\n\nAns $\\boxed{5}$"] * 2),
    # Without widening the root's tree is exhausted after one expansion: the greedy completion of W1 answers 4.
    (1, ["", "W1 wrong\n\n"], "4", ["W1 wrong\n\nAns $\\boxed{4}$"]),
])
def test_with_an_exact_verifier_widening_past_dead_first_steps_finds_the_right_answer(
        max_node_expansions, expanded, pred, texts):
    generator = rounds_generator()
    settings = mcts.Settings(n=3, expansion_width=2, max_node_expansions=max_node_expansions)
    row = mcts.run([CHECKED], generator, TablePRMScorer(CHECKER_TABLE), settings)[0]
    assert [call.requests[0].prefix for call in generator.calls] == expanded
    assert (row.pred, [c.text for c in row.completions]) == (pred, texts)
    # Policy tokens: 2 words per sample; 6 samples with widening, 2 + 1 greedy step without.
    assert row.compute.policy_tokens == 2 * (6 if max_node_expansions > 1 else 3)

P = Problem(id="m/0", problem="What is 2 + 3?", answer="5", source="toy")
SCRIPT = {
    (P.problem, ""): ["A good\n\n", "B $\\boxed{4}$"],
    (P.problem, "A good\n\n"): ["A1 $\\boxed{5}$", "A2 mid\n\n"],
}
SCORES = {"A good": 0.9, "B $\\boxed{4}$": 0.4, "A1 $\\boxed{5}$": 0.8, "A2 mid": 0.5}


def test_run_expands_within_budget_and_answers_from_terminal_nodes():
    generator, scorer = ScriptedGenerator(SCRIPT), TablePRMScorer(SCORES)
    row = mcts.run([P], generator, scorer, mcts.Settings(n=2, expansion_width=2, seed=5))[0]
    # Budget 2: the root, then A (B is terminal); the best path ends in A1, which has its answer.
    assert [(call.requests[0].prefix, call.n) for call in generator.calls] == [("", 2), ("A good\n\n", 2)]
    assert [c.answer for c in row.completions] == ["4", "5"]
    assert (row.pred, row.correct, row.strategy, row.beam_width) == ("5", True, "mcts", None)
    # Policy: 4 steps of 2 words; PRM: 2 x (5 + 2) + 2 x (5 + 4); 2 generate + 2 score calls.
    assert (row.compute.policy_tokens, row.compute.prm_tokens, row.compute.model_calls) == (8, 32, 4)


def test_run_completes_an_unfinished_best_path_greedily():
    generator, scorer = ScriptedGenerator(SCRIPT), TablePRMScorer(SCORES)
    row = mcts.run([P], generator, scorer, mcts.Settings(n=1, expansion_width=2, seed=5))[0]
    assert generator.calls[1].params == SamplingParams(0.0, 1.0, 512, 5)
    assert [(call.requests[0].prefix, call.n) for call in generator.calls] == [("", 2), ("A good\n\n", 1)]
    assert [c.text for c in row.completions] == ["B $\\boxed{4}$", "A good\n\nA1 $\\boxed{5}$"]
    assert [c.agg_score for c in row.completions] == [0.4, 0.8]
    # Policy: 2 x 2 + 2 words; PRM: 2 x (5 + 2) + (5 + 4); 2 generate + 2 score calls.
    assert (row.pred, row.compute.policy_tokens, row.compute.prm_tokens, row.compute.model_calls) == ("5", 6, 23, 4)


DEEP = {
    (P.problem, ""): ["A s\n\n", "B s\n\n"],
    (P.problem, "A s\n\n"): ["A1 s\n\n", "A2 s\n\n"],
    (P.problem, "A s\n\nA1 s\n\n"): ["A11 $\\boxed{5}$", "A12 $\\boxed{5}$"],
    (P.problem, "B s\n\n"): ["B1 $\\boxed{5}$", "B2 x\n\n"],
}
DEEP_SCORES = {"A s": 0.9, "B s": 0.8, "A1 s": 0.3, "A2 s": 0.2, "A11 $\\boxed{5}$": 0.6, "A12 $\\boxed{5}$": 0.5,
               "B1 $\\boxed{5}$": 0.7, "B2 x": 0.1}


@pytest.mark.parametrize(("descend", "expanded", "answers"), [
    # Descending: after A (.9) the simulation goes on into its best child A1 (.3, first of the new children).
    (True, ["", "A s\n\n", "A s\n\nA1 s\n\n"], ["5", "5"]),
    # One expansion per simulation: UCT at the root then prefers B: .8 + sqrt(ln 4) over A's (.9 + .3 + .2) / 3
    # + sqrt(ln 4 / 3). The most visited path is then B (ties on 3 visits, higher Q) to its terminal B1.
    (False, ["", "A s\n\n", "B s\n\n"], ["5"]),
])
def test_descend_follows_the_best_new_child_until_a_terminal_node(descend, expanded, answers):
    generator = ScriptedGenerator(DEEP)
    settings = mcts.Settings(n=3, expansion_width=2, descend=descend, max_node_expansions=1)  # no widening
    roots = mcts.search(Ledger([P], generator, TablePRMScorer(DEEP_SCORES)), settings)
    assert [call.requests[0].prefix for call in generator.calls] == expanded
    row = mcts.run([P], ScriptedGenerator(DEEP), TablePRMScorer(DEEP_SCORES), settings)[0]
    assert [c.answer for c in row.completions] == answers
    assert roots[0].visits == 6


@pytest.mark.parametrize(("options", "message"), [
    ({"expansion_width": 0}, "expansion_width must be an integer >= 1"),
    ({"exploration": -1}, "exploration must be >= 0"),
    ({"expansions_per_n": 0}, "expansions_per_n must be an integer >= 1"),
    ({"max_node_expansions": 0}, "max_node_expansions must be an integer >= 1"),
    ({"beam_width": 4}, "unknown setting\\(s\\) beam_width for strategy 'mcts'"),
])
def test_bad_settings_name_the_setting(options, message):
    with pytest.raises(ValueError, match=message):
        make_settings("mcts", {"n": 4, **options})
