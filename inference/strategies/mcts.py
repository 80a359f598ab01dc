"""Monte-Carlo tree search over steps: UCT selection, PRM step scores as values, a budget of node expansions.

One search tree per problem; its nodes are partial solutions. Each round, every problem with budget left
selects a leaf by UCT from its root (a child's score is Q + c * sqrt(ln N(parent) / N(child)), Q its mean
backed-up value, N its visits, c `exploration`; ties go to the first child), and all selected leaves are
expanded together into `expansion_width` one-step children each (one generate call) and scored (one PRM call).
A child's value is its aggregated step scores (`aggregation`; the last step's score by default): the PRM's
estimate bootstraps the value instead of a rollout, as in value-guided step-level MCTS (rStar-Math, ReST-MCTS*).
With `descend` (the default) a simulation does not stop at one expansion: the best-valued new child (first of
ties) is expanded in the next round, and so on until that best child is terminal, so every simulation reaches an
answer; without it the budget would mostly widen the top of the tree and few solutions would ever finish.
Each child starts with one visit and its value; the expanded leaf and its ancestors gain the children's visits
and values (backup). A child that ended (final answer, end of sequence, max_step_tokens, empty step) is
terminal; a node whose children are all terminal or exhausted is exhausted, and selection skips exhausted
children, so every round costs one real expansion; nodes `max_iterations` steps deep are exhausted too. A
problem gets `n x expansions_per_n` expansions (fewer if its whole tree is exhausted).

The answer: after the budget, the most visited path (ties: higher Q, then the first child) is followed to a
leaf; a leaf that has not ended is completed greedily one step per call (all problems together, at most
`max_iterations` steps deep) and scored. Every terminal node found plus that completed path are the row's
completions, and `final_selection` picks the answer among them (weighted Best-of-N by default).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

from data_prep.records import Problem
from data_prep.steps import STEP_SEPARATOR
from inference.scoring.aggregate import aggregate
from inference.strategies.common import Ledger, StrategySettings, make_row, require
from inference.strategies.selection import FinalSelection, select_answer
from inference.strategies.tree import Partial, expand, extend, prefix_of, to_completion
from inference.types import Generator, PRMScorer, ResultRow, SamplingParams

logger = logging.getLogger(__name__)

NAME = "mcts"


@dataclass(frozen=True)
class Settings(StrategySettings):
    """MCTS settings: n x expansions_per_n node expansions per problem, expansion_width children each."""

    expansion_width: int = 4
    """Children generated per expansion (one step each)."""
    exploration: float = 1.0
    """c in UCT's Q + c * sqrt(ln N(parent) / N(child)) (Kocsis & Szepesvari 2006); 0 is greedy on Q."""
    expansions_per_n: int = 1
    """Node expansions per unit of N: with the default a budget of N expansions generates N x expansion_width
    steps, about what beam search at N generates over a few steps."""
    max_step_tokens: int = 512
    """Most new tokens per step; a step cut at this length ends its node."""
    max_iterations: int = 40
    """Most steps of a solution: nodes this deep are not expanded, and the final greedy completion stops here."""
    descend: bool = True
    """After expanding a UCT-selected leaf, keep expanding its best new child until a terminal node, each
    expansion counting against the budget: every simulation reaches an answer (rStar-Math's rollouts, grown from
    expansions). False expands one leaf per simulation, its value the PRM's alone."""
    final_selection: FinalSelection = "weighted"
    """How the answer is chosen among the terminal nodes and the completed best path."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.expansion_width, int) and self.expansion_width >= 1,
                f"expansion_width must be an integer >= 1, got {self.expansion_width!r}; e.g. expansion_width: 4")
        require(self.exploration >= 0, f"exploration must be >= 0, got {self.exploration!r}; e.g. exploration: 1.0")
        require(isinstance(self.expansions_per_n, int) and self.expansions_per_n >= 1,
                f"expansions_per_n must be an integer >= 1, got {self.expansions_per_n!r}")
        require(self.max_step_tokens >= 1, f"max_step_tokens must be >= 1, got {self.max_step_tokens}; e.g. 512")
        require(self.max_iterations >= 1, f"max_iterations must be >= 1, got {self.max_iterations}; e.g. 40")
        require(self.final_selection in ("weighted", "best"),
                f"final_selection must be 'weighted' or 'best', got {self.final_selection!r}")

    @property
    def budget(self) -> int:
        """Node expansions per problem."""
        return self.n * self.expansions_per_n


@dataclass(eq=False)
class Node:
    """A node of a search tree: a partial solution with its visit count and backed-up value."""

    partial: Partial
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    exhausted: bool = False
    """Terminal (its partial ended), or every child exhausted: selection no longer enters it."""

    @property
    def q(self) -> float:
        """Mean backed-up value (0 before any visit)."""
        return self.value_sum / self.visits if self.visits else 0.0

    def path(self) -> list[Node]:
        """This node and its ancestors, root last."""
        node, path = self, []
        while node is not None:
            path.append(node)
            node = node.parent
        return path


def uct(child: Node, parent_visits: int, exploration: float) -> float:
    """Q(child) + c * sqrt(ln N(parent) / N(child)); an unvisited child scores +inf."""
    if child.visits == 0:
        return math.inf
    return child.q + exploration * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select_leaf(root: Node, exploration: float) -> Node | None:
    """Descend by UCT among children that are not exhausted to a node without children; None when exhausted."""
    if root.exhausted:
        return None
    node = root
    while node.children:
        open_children = [child for child in node.children if not child.exhausted]
        node = max(open_children, key=lambda child: uct(child, node.visits, exploration))  # first of ties
    return node


def add_children(leaf: Node, children: list[Partial], values: list[float], max_depth: int | None = None) -> list[Node]:
    """Attach scored children to `leaf` (one visit each) and back their values up to the root.

    A child is exhausted when it ended or (with `max_depth`) has `max_depth` steps: it is never expanded."""
    nodes = [Node(partial, parent=leaf, visits=1, value_sum=value,
                  exhausted=partial.ended or (max_depth is not None and len(partial.steps) >= max_depth))
             for partial, value in zip(children, values)]
    leaf.children.extend(nodes)
    for node in leaf.path():
        node.visits += len(nodes)
        node.value_sum += sum(values)
        node.exhausted = all(child.exhausted for child in node.children)
    return nodes


def best_path_leaf(root: Node) -> Node:
    """Follow the most visited child (ties: higher Q, then the first) down to a node without children."""
    node = root
    while node.children:
        node = max(node.children, key=lambda child: (child.visits, child.q))
    return node


def _value(partial: Partial, settings: Settings) -> float:
    return aggregate(partial.step_scores, settings.aggregation) if partial.step_scores else 0.0


def _scored(ledger: Ledger, partials: list[Partial], settings: Settings) -> list[Partial]:
    results = ledger.score([p.owner for p in partials], [p.steps for p in partials])
    return [p if r is None else replace(p, step_scores=r.step_scores, rank=aggregate(r.step_scores, settings.aggregation))
            for p, r in zip(partials, results)]


def search(ledger: Ledger, settings: Settings) -> list[Node]:
    """Grow one tree per problem of `ledger` until each used its budget or is exhausted; the roots.

    With `descend`, a simulation that expanded a leaf goes on expanding its best-valued new child (first of ties)
    in the next rounds until that child is terminal; each expansion counts against the budget.
    """
    roots = [Node(Partial(owner=i)) for i in range(len(ledger.problems))]
    spent = [0] * len(roots)
    cursors: list[Node | None] = [None] * len(roots)
    """Per problem, the node its current simulation expands next (None: select a new leaf by UCT)."""
    round_index = 0
    while True:
        leaves = []
        for owner, root in enumerate(roots):
            if spent[owner] >= settings.budget:
                continue
            leaf = cursors[owner] if cursors[owner] is not None else select_leaf(root, settings.exploration)
            if leaf is not None:
                leaves.append(leaf)
                spent[owner] += 1
        if not leaves:
            break
        children = expand(ledger, [leaf.partial for leaf in leaves], settings.expansion_width, settings, round_index)
        scored = _scored(ledger, children, settings)
        width = settings.expansion_width
        for k, leaf in enumerate(leaves):
            group = scored[k * width:(k + 1) * width]
            nodes = add_children(leaf, group, [_value(p, settings) for p in group], settings.max_iterations)
            best = max(nodes, key=lambda node: node.value_sum)  # one visit each: its own value; first of ties
            cursors[leaf.partial.owner] = best if settings.descend and not best.exhausted else None
        round_index += 1
        logger.debug("mcts round %d: %d problems expanded", round_index, len(leaves))
    return roots


def _complete(ledger: Ledger, partials: list[Partial], settings: Settings) -> list[Partial]:
    """Greedy one-step extensions of each partial that has not ended, up to max_iterations steps; then scored."""
    done = list(partials)
    params = SamplingParams(0.0, 1.0, settings.max_step_tokens, settings.seed)
    while True:
        live = [i for i, p in enumerate(done) if not p.ended and len(p.steps) < settings.max_iterations]
        if not live:
            break
        outputs = ledger.generate([done[i].owner for i in live], [prefix_of(done[i].steps) for i in live], n=1,
                                  params=params, stop=[STEP_SEPARATOR])
        for i, out in zip(live, outputs):
            done[i] = extend(done[i], out[0])
    changed = [i for i, (before, after) in enumerate(zip(partials, done)) if before is not after]
    for i, partial in zip(changed, _scored(ledger, [done[i] for i in changed], settings)):
        done[i] = partial
    return done


def terminal_nodes(root: Node) -> list[Node]:
    """Nodes whose partial ended, in creation order (breadth of each expansion, depth first over expansions)."""
    found, stack = [], [root]
    while stack:
        node = stack.pop(0)
        if node is not root and node.partial.ended:
            found.append(node)
        stack.extend(node.children)
    return found


def run(problems: list[Problem], generator: Generator, scorer: PRMScorer, settings: Settings) -> list[ResultRow]:
    """MCTS over all problems at once; one ResultRow per problem with its terminal solutions and best path."""
    ledger = Ledger(problems, generator, scorer)
    roots = search(ledger, settings)
    best = [best_path_leaf(root) for root in roots]
    unfinished = [i for i, leaf in enumerate(best) if not leaf.partial.ended]
    completed = dict(zip(unfinished, _complete(ledger, [best[i].partial for i in unfinished], settings)))
    rows = []
    for index, (problem, root) in enumerate(zip(problems, roots)):
        finals = [node.partial for node in terminal_nodes(root)]
        if index in completed:
            finals.append(completed[index])
        completions = [to_completion(p, settings) for p in finals]
        pred = select_answer(completions, settings.final_selection)
        rows.append(make_row(problem, NAME, settings, completions, pred, ledger.compute[index],
                             policy=generator.name, prm=scorer.name))
    return rows
