"""What the pipeline prints when it finishes: six lines of headline numbers, from the eval and ProcessBench outputs.

The facts (best arm, the cheapest arm reaching policy-large's greedy accuracy, greedy accuracies, the paired 95%
intervals of the claims) are `inference.reporting.headline`'s, the same the HTML report states; only the wording
is the pipeline's. Each comparison (weighted best-of-N vs majority and beam search vs policy-large greedy at the tree
budget, with the PRM trained in the run; the same beam search guided by the untrained read-out of its backbone;
best-of-N at the largest N vs N = 4; the arm reaching policy-large greedy and the best overall arm vs policy-large
greedy) is paired per problem from the eval directories' outcomes.jsonl.
"""

from __future__ import annotations

from pathlib import Path

from inference.evaluation.evaluations import (
    METRICS_FILE,
    ModelEvaluation,
    read_evaluations,
)
from inference.evaluation.metrics import PASS_AT_N
from inference.evaluation.processbench import ProcessBenchReport
from inference.pipeline.stages import LIKELIHOOD_HEAD_PRM, LIKELIHOOD_VERIFIER, PipelineOptions
from inference.reporting.headline import (
    FALL_FROM_N,
    Arm,
    accuracy_at,
    arms,
    best_arm,
    compare,
    comparison_text,
    first_reaching,
    greedy_accuracy,
    greedy_outcomes,
    per_problem,
    percent,
    point_at,
)
from inference.scoring.checker import SYNTHETIC_CHECKER

SEARCH_POLICY = "policy-small"
REFERENCE_POLICY = "policy-large"
MAIN_VERIFIER = LIKELIHOOD_HEAD_PRM
"""The verifier whose points the summary reports by default (majority's, which reads no scores, among them): the
PRM trained in the run over policy-large's read-out, set against that untrained read-out and the classifier PRM."""
CLASSIFIER_VERIFIER = "prm-oracle"
"""The token-classification PRM of the run (fine-tuned from the shipped verifier on oracle labels)."""


def read_eval_dir(eval_dir: Path) -> list[ModelEvaluation]:
    """The evaluations of a `ttc-infer eval` output directory; none where that stage has not run yet."""
    return read_evaluations(eval_dir) if (eval_dir / METRICS_FILE).is_file() else []


def reference_accuracies(run_dir: Path) -> dict[str, float]:
    """The greedy accuracies drawn as reference lines (policy-large's first), by '<policy> greedy'."""
    references = {}
    for name, eval_dir in ((REFERENCE_POLICY, run_dir / "eval-large"), (SEARCH_POLICY, run_dir / "eval")):
        accuracy = greedy_accuracy(read_eval_dir(eval_dir), name)
        if accuracy is not None:
            references[f"{name} greedy"] = accuracy
    return references


def summary_lines(opts: PipelineOptions) -> list[str]:
    """Six lines of headline numbers from the eval stages' metrics and the ProcessBench stages' reports."""
    run = opts.run_dir
    eval_dir, large_dir = run / "eval", run / "eval-large"
    small = {e.prm: e for e in read_eval_dir(eval_dir) if e.policy == SEARCH_POLICY}
    by_verifier = {prm: e.points for prm, e in small.items()}
    n_sampling, n_tree = opts.scale.max_n_sampling, opts.scale.max_n_tree

    def acc(strategy: str, n: int, prm: str = MAIN_VERIFIER) -> str:
        return _pct(accuracy_at(by_verifier.get(prm, ()), strategy, n))

    def outcomes(prm: str, strategy: str, n: int) -> dict[str, float] | None:
        found = point_at(by_verifier.get(prm, ()), strategy, n)
        return None if found is None else per_problem(small[prm], found, where=str(eval_dir))

    def versus_text(arm: tuple[str, str, int], against: tuple[str, str, int], against_text: str) -> str:
        """'within noise of majority: +0.8 points, ...': arm vs against, each (verifier, strategy, N) of
        policy-small; '' where either did not run."""
        a, b = outcomes(*arm), outcomes(*against)
        if a is None or b is None:
            return ""
        comparison = compare(a, b, arm_name="{1} at N={2} ({0})".format(*arm) + f" in {eval_dir}",
                             against_name="{1} at N={2} ({0})".format(*against) + f" in {eval_dir}")
        return comparison_text(comparison, against_text)

    def versus(arm: tuple[str, str, int], against: tuple[str, str, int], against_text: str) -> str:
        """The same in parentheses after the accuracy it qualifies: ' (within noise of majority: ...)'."""
        text = versus_text(arm, against, against_text)
        return f" ({text})" if text else ""

    references = reference_accuracies(run)
    large = references.get(f"{REFERENCE_POLICY} greedy")
    small_greedy = references.get(f"{SEARCH_POLICY} greedy")
    large_outcomes = greedy_outcomes(read_eval_dir(large_dir), REFERENCE_POLICY, where=str(large_dir))

    def versus_large(arm: Arm, against_text: str) -> str:
        """'<verdict> of policy-large greedy: ...' for an arm of the summary's candidates."""
        point = arm.point
        a = per_problem(small[arm.verifier], point, where=str(eval_dir))
        comparison = compare(a, large_outcomes, arm_name=f"{_arm(arm)} at N={point.n} in {eval_dir}",
                             against_name=f"{REFERENCE_POLICY} greedy in {large_dir}")
        return comparison_text(comparison, against_text)

    def beam_versus_large(prm: str) -> str:
        found = point_at(by_verifier.get(prm, ()), "beam_search", n_tree)
        if found is None or large_outcomes is None:
            return ""
        return f" ({versus_large(Arm(found, prm), f'{REFERENCE_POLICY} greedy')})"

    candidates = arms(by_verifier)
    best = best_arm(candidates)
    match = None if large is None else first_reaching(candidates, large)
    match_text = (f"{_arm(match)} reaches it at N = {match.point.n} ({percent(match.point.accuracy)}; "
                  f"{versus_large(match, 'it')})" if match else "no strategy reaches it within this budget")
    best_text = "n/a" if best is None else f"{_arm(best)}@{best.point.n} {percent(best.point.accuracy)}"
    if best is not None and large_outcomes is not None:
        best_text += f" ({versus_large(best, f'{REFERENCE_POLICY} greedy')})"
    majority_tree = (MAIN_VERIFIER, "majority", n_tree)
    fall = (versus((MAIN_VERIFIER, "best_of_n", n_sampling), (MAIN_VERIFIER, "best_of_n", FALL_FROM_N),
                   f"its {acc('best_of_n', FALL_FROM_N)} at N={FALL_FROM_N}") if n_sampling > FALL_FROM_N else "")

    def trained_versus(strategy: str, baseline: str) -> str:
        """' (prm-... ahead of it: ...)': the main verifier's arm at the tree budget minus the same arm guided by
        `baseline`, worded after the baseline's accuracy."""
        text = versus_text((MAIN_VERIFIER, strategy, n_tree), (baseline, strategy, n_tree), "it")
        return f" ({MAIN_VERIFIER} {text})" if text else ""

    def token_share(strategy: str, baseline: str, n: int) -> str:
        """' with 40% of majority's policy tokens': the strategy's mean policy tokens over the baseline's at N."""
        found, base = (point_at(by_verifier.get(MAIN_VERIFIER, ()), name, n) for name in (strategy, baseline))
        if found is None or base is None or not base.policy_tokens:
            return ""
        return f" with {100 * found.policy_tokens / base.policy_tokens:.0f}% of {baseline}'s policy tokens"

    bench = [*_processbench(run / "processbench"), *_processbench(run / "processbench-likelihood")]
    corrupted = [*_processbench(run / "processbench-corrupted", auroc_only=True),
                 *_processbench(run / "processbench-corrupted-likelihood", auroc_only=True)]
    return [
        f"{SEARCH_POLICY} greedy {_pct(small_greedy)} | {REFERENCE_POLICY} greedy {_pct(large)}",
        f"{SEARCH_POLICY} at N={n_tree} with {MAIN_VERIFIER} (trained): majority {acc('majority', n_tree)}, "
        f"best-of-N {acc('best_of_n', n_tree)}, weighted best-of-N {acc('weighted_best_of_n', n_tree)}"
        + versus((MAIN_VERIFIER, "weighted_best_of_n", n_tree), majority_tree, "majority")
        + f", beam search {acc('beam_search', n_tree)}{beam_versus_large(MAIN_VERIFIER)}, DVTS {acc('dvts', n_tree)}",
        f"{SEARCH_POLICY} at N={n_sampling} with {MAIN_VERIFIER}: majority {acc('majority', n_sampling)}, weighted "
        f"best-of-N {acc('weighted_best_of_n', n_sampling)}, best-of-N {acc('best_of_n', n_sampling)}{fall}, pass@N "
        f"{acc(PASS_AT_N, n_sampling)}; at N={n_tree} untrained {LIKELIHOOD_VERIFIER}: weighted best-of-N "
        f"{acc('weighted_best_of_n', n_tree, LIKELIHOOD_VERIFIER)}, beam search "
        f"{acc('beam_search', n_tree, LIKELIHOOD_VERIFIER)}"
        + trained_versus("beam_search", LIKELIHOOD_VERIFIER)
        + f"; {CLASSIFIER_VERIFIER}: weighted best-of-N {acc('weighted_best_of_n', n_tree, CLASSIFIER_VERIFIER)}, "
        f"beam search {acc('beam_search', n_tree, CLASSIFIER_VERIFIER)}",
        f"{REFERENCE_POLICY} greedy {_pct(large)}: {match_text}; best overall {best_text}; ceiling (beam search "
        f"with the exact checker as PRM) at N={n_tree}: " + acc("beam_search", n_tree, prm=SYNTHETIC_CHECKER),
        "Verifiers (ProcessBench-style F1 / step AUROC on policy solutions): " + (", ".join(bench) if bench else "n/a")
        + "; step AUROC on held-out gold vs corrupted steps: " + (", ".join(corrupted) if corrupted else "n/a"),
        f"Beyond the reference with {MAIN_VERIFIER} at N={n_tree}: particle filtering {acc('particle_filtering', n_tree)}"
        + versus((MAIN_VERIFIER, "particle_filtering", n_tree), (MAIN_VERIFIER, "beam_search", n_tree), "beam search")
        + f", MCTS {acc('mcts', n_tree)}"
        + versus((MAIN_VERIFIER, "mcts", n_tree), (MAIN_VERIFIER, "beam_search", n_tree), "beam search")
        + f"; adaptive majority at N<={n_sampling} {acc('adaptive_majority', n_sampling)}"
        + token_share("adaptive_majority", "majority", n_sampling)
        + versus((MAIN_VERIFIER, "adaptive_majority", n_sampling), (MAIN_VERIFIER, "majority", n_sampling),
                 f"majority@{n_sampling}"),
    ]


def _arm(arm: Arm) -> str:
    """A strategy and the verifier it ran with (none for majority, which reads no scores)."""
    strategy = arm.point.strategy
    return f"{strategy} ({arm.verifier})" if arm.verifier and strategy != "majority" else strategy


def _pct(value: float | None) -> str:
    return "n/a" if value is None else percent(value)


def _processbench(directory: Path, auroc_only: bool = False) -> list[str]:
    """'<scorer> F1 0.45 / AUROC 0.67' (or '<scorer> 0.67') for each ProcessBench report in `directory`."""
    found = []
    for path in sorted(directory.glob("processbench-*.json")):
        report = ProcessBenchReport.load(path)
        auroc = "n/a" if report.step_auroc is None else f"{report.step_auroc:.2f}"
        found.append(f"{report.scorer} {auroc}" if auroc_only else f"{report.scorer} F1 {report.tuned.f1:.2f} / AUROC {auroc}")
    return found
