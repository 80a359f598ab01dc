"""Monte-Carlo tree search over steps: UCT selection, PRM step scores as values, a budget of node expansions.

One search tree per problem; its nodes are partial solutions. Each round, every problem with budget left
selects a node by UCT from its root (a child's score is Q + c * sqrt(ln N(parent) / N(child)), Q its mean
backed-up value, N its visits, c `exploration`; ties go to the first child; Kocsis & Szepesvari 2006), and all
selected nodes are expanded together into `expansion_width` one-step samples each (one generate call) and scored
(one PRM call). A child's value is its aggregated step scores (`aggregation`; the last step's score by default):
the PRM's estimate bootstraps the value instead of a rollout, as in value-guided step-level MCTS (rStar-Math,
ReST-MCTS*).

Dead ends and widening: a child valued 0 is a proven dead end (the PRM gives it no chance of leading to a right
answer; the exact checker's score of a wrong step). It is never expanded, as MCTS-Solver never enters a proven
loss (Winands et al. 2008). A node whose children are all dead ends is expanded again (widened) rather than
given up, up to `max_node_expansions` expansions: the root too, so a problem whose first samples all start
wrong gets up to `max_node_expansions` x `expansion_width` first steps, as beam search's first step samples N.
This is MCTSr's rule (Zhang et al. 2024: a node takes more children until one is at least as good as it) where
it is safe: with the exact checker the two coincide (a live node scores 1, a child as good is a right one); with
soft PRMs MCTSr's full rule widened on small drops of the score and measured no better (benchmarks/RESULTS.md),
so there a run is the plain UCT search. With `merge_duplicates`, a sample whose steps equal an existing child's
is that child again (the same state, a transposition): it adds a visit and its value instead of a node.

With `descend` (the default) a simulation does not stop at one expansion: the node is expanded again while it can
widen, else its best-valued child (first of ties) is expanded in the next round, and so on until that best child
is terminal or dead, so every simulation reaches an answer or a dead end (rStar-Math's rollouts, grown from
expansions); without it the budget would mostly widen the top of the tree and few solutions would ever finish.
Each child starts with one visit per sample and its value; the expanded node and its ancestors gain the samples'
visits and values (backup). A child that ended (final answer, end of sequence, max_step_tokens, empty step) is
terminal; a node that cannot widen and whose children are all terminal, dead or exhausted is exhausted, and
selection skips exhausted children, so every round costs one real expansion; nodes `max_iterations` steps deep
are exhausted too. A problem gets `n x expansions_per_n` expansions (fewer if its whole tree is exhausted).

The answer: after the budget, the most visited path (ties: higher Q, then the first child) is followed to a
leaf; a leaf that has not ended is completed greedily one step per call (all problems together, at most
`max_iterations` steps deep) and scored. Every terminal node found (once per time it was sampled) plus that
completed path are the row's completions, and `final_selection` picks the answer among them (weighted Best-of-N
by default).
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
    max_node_expansions: int = 4
    """Most expansions of one node: a node whose children are all dead ends (value 0) is expanded again up to this
    many times; 1 turns widening off."""
    merge_duplicates: bool = False
    """Merge a sample whose steps equal an existing child's into that child (a transposition) instead of adding a
    node: far fewer tokens with the exact checker, as accurate; with soft PRMs the smaller tree ends early."""
    descend: bool = True
    """After expanding a UCT-selected leaf, keep expanding it while it can widen, else its best child, until a
    terminal node or a dead end, each expansion counting against the budget: every simulation reaches an answer
    or a dead end (rStar-Math's rollouts, grown from expansions). False expands one node per simulation, its value
    the PRM's alone."""
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
        require(isinstance(self.max_node_expansions, int) and self.max_node_expansions >= 1,
                f"max_node_expansions must be an integer >= 1, got {self.max_node_expansions!r}; 1 turns widening off")
        require(self.final_selection in ("weighted", "best"),
                f"final_selection must be 'weighted' or 'best', got {self.final_selection!r}")

    @property
    def budget(self) -> int:
        """Node expansions per problem."""
        return self.n * self.expansions_per_n


@dataclass(eq=False)
class Node:
    """A node of a search tree: a partial solution with its own value, visit count and backed-up value."""

    partial: Partial
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    value: float = 0.0
    """Its PRM value (aggregated step scores); the root has none (0)."""
    visits: int = 0
    value_sum: float = 0.0
    expansions: int = 0
    """How many times it was expanded (more than once when it widened)."""
    exhausted: bool = False
    """Terminal (its partial ended), dead (value 0), too deep, or unable to widen with every child exhausted:
    selection no longer enters it."""

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


def can_widen(node: Node, max_expansions: int) -> bool:
    """Expanded fewer than `max_expansions` times and every child is a dead end (value <= 0)."""
    return node.expansions < max_expansions and all(child.value <= 0 for child in node.children)


def select_leaf(root: Node, exploration: float, max_expansions: int = 1) -> Node | None:
    """Descend by UCT among children that are not exhausted to a node without children or one that can widen;
    None when the tree is exhausted."""
    if root.exhausted:
        return None
    node = root
    while node.children and not can_widen(node, max_expansions):
        open_children = [child for child in node.children if not child.exhausted]
        node = max(open_children, key=lambda child: uct(child, node.visits, exploration))  # first of ties
    return node


def add_children(leaf: Node, children: list[Partial], values: list[float], max_depth: int | None = None,
                 max_expansions: int = 1, merge: bool = False) -> list[Node]:
    """Attach one expansion's scored samples to `leaf` and back their visits and values up to the root; the new
    nodes.

    With `merge`, a sample whose steps equal an existing child's adds a visit and its value to that child instead
    of a node. A new child is exhausted when it ended, is dead (value <= 0) or (with `max_depth`) has `max_depth`
    steps."""
    by_steps = {child.partial.steps: child for child in leaf.children} if merge else {}
    new = []
    for partial, value in zip(children, values):
        node = by_steps.get(partial.steps)
        if node is None:
            too_deep = max_depth is not None and len(partial.steps) >= max_depth
            node = Node(partial, parent=leaf, value=value, exhausted=partial.ended or value <= 0.0 or too_deep)
            leaf.children.append(node)
            if merge:
                by_steps[partial.steps] = node
            new.append(node)
        node.visits += 1
        node.value_sum += value
    leaf.expansions += 1
    for node in leaf.path():
        node.visits += len(children)
        node.value_sum += sum(values)
        node.exhausted = all(child.exhausted for child in node.children) and not can_widen(node, max_expansions)
    return new


def best_path_leaf(root: Node) -> Node:
    """Follow the most visited child (ties: higher Q, then the first) down to a node without children."""
    node = root
    while node.children:
        node = max(node.children, key=lambda child: (child.visits, child.q))
    return node


def next_in_simulation(node: Node, max_expansions: int) -> Node | None:
    """Where a descending simulation goes after expanding `node`: `node` again while it can widen, else its
    best-valued child (first of ties) unless that child is terminal, dead or exhausted (the simulation ends)."""
    if can_widen(node, max_expansions):
        return node
    best = max(node.children, key=lambda child: child.value, default=None)
    return None if best is None or best.exhausted else best


def _value(partial: Partial, settings: Settings) -> float:
    return aggregate(partial.step_scores, settings.aggregation) if partial.step_scores else 0.0


def _scored(ledger: Ledger, partials: list[Partial], settings: Settings) -> list[Partial]:
    results = ledger.score([p.owner for p in partials], [p.steps for p in partials])
    return [p if r is None else replace(p, step_scores=r.step_scores, rank=aggregate(r.step_scores, settings.aggregation))
            for p, r in zip(partials, results)]


def search(ledger: Ledger, settings: Settings) -> list[Node]:
    """Grow one tree per problem of `ledger` until each used its budget or is exhausted; the roots.

    With `descend`, a simulation that expanded a node goes on expanding it while it can widen, then its best-valued
    child (`next_in_simulation`), in the next rounds; each expansion counts against the budget.
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
            leaf = (cursors[owner] if cursors[owner] is not None
                    else select_leaf(root, settings.exploration, settings.max_node_expansions))
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
            add_children(leaf, group, [_value(p, settings) for p in group], settings.max_iterations,
                         settings.max_node_expansions, settings.merge_duplicates)
            cursors[leaf.partial.owner] = (next_in_simulation(leaf, settings.max_node_expansions)
                                           if settings.descend else None)
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
    """Nodes whose partial ended, breadth first (children in creation order)."""
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
        # A terminal node stands for every sample that wrote it: weighted selection counts each.
        finals = [node.partial for node in terminal_nodes(root) for _ in range(node.visits)]
        if index in completed:
            finals.append(completed[index])
        completions = [to_completion(p, settings) for p in finals]
        pred = select_answer(completions, settings.final_selection)
        rows.append(make_row(problem, NAME, settings, completions, pred, ledger.compute[index],
                             policy=generator.name, prm=scorer.name))
    return rows
