"""What the pipeline prints when it finishes: five lines of headline numbers, from the eval and ProcessBench outputs.

The facts (best arm, the cheapest arm reaching policy-large's greedy accuracy, greedy accuracies) are
`inference.reporting.headline`'s, the same the HTML report states; only the wording is the pipeline's.
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
from inference.pipeline.stages import LIKELIHOOD_VERIFIER, PipelineOptions
from inference.reporting.headline import (
    Arm,
    accuracy_at,
    arms,
    best_arm,
    first_reaching,
    greedy_accuracy,
    percent,
)
from inference.scoring.checker import SYNTHETIC_CHECKER

SEARCH_POLICY = "policy-small"
REFERENCE_POLICY = "policy-large"


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
    """Five lines of headline numbers from the eval stages' metrics and the ProcessBench stages' reports."""
    run = opts.run_dir
    by_verifier = {e.prm: e.points for e in read_eval_dir(run / "eval") if e.policy == SEARCH_POLICY}
    n_sampling, n_tree = opts.scale.max_n_sampling, opts.scale.max_n_tree

    def acc(strategy: str, n: int, prm: str = "prm-oracle") -> str:
        return _pct(accuracy_at(by_verifier.get(prm, ()), strategy, n))

    references = reference_accuracies(run)
    large = references.get(f"{REFERENCE_POLICY} greedy")
    small = references.get(f"{SEARCH_POLICY} greedy")
    candidates = arms(by_verifier)
    best = best_arm(candidates)
    match = None if large is None else first_reaching(candidates, large)
    match_text = (f"{_arm(match)} reaches it at N = {match.point.n} ({percent(match.point.accuracy)})"
                  if match else "no strategy reaches it within this budget")
    bench = [*_processbench(run / "processbench"), *_processbench(run / "processbench-likelihood")]
    corrupted = [*_processbench(run / "processbench-corrupted", auroc_only=True),
                 *_processbench(run / "processbench-corrupted-likelihood", auroc_only=True)]
    return [
        f"{SEARCH_POLICY} greedy {_pct(small)} | {REFERENCE_POLICY} greedy {_pct(large)}",
        f"{SEARCH_POLICY} at N={n_tree}: majority {acc('majority', n_tree)}, best-of-N {acc('best_of_n', n_tree)}, "
        f"weighted best-of-N {acc('weighted_best_of_n', n_tree)}, beam search {acc('beam_search', n_tree)}, "
        f"DVTS {acc('dvts', n_tree)}",
        f"{SEARCH_POLICY} at N={n_sampling}: majority {acc('majority', n_sampling)}, weighted best-of-N "
        f"{acc('weighted_best_of_n', n_sampling)}, pass@N {acc(PASS_AT_N, n_sampling)}; with {LIKELIHOOD_VERIFIER} "
        f"as verifier at N={n_tree} / {n_sampling}: weighted best-of-N "
        f"{acc('weighted_best_of_n', n_tree, LIKELIHOOD_VERIFIER)} / "
        f"{acc('weighted_best_of_n', n_sampling, LIKELIHOOD_VERIFIER)}",
        f"{REFERENCE_POLICY} greedy {_pct(large)}: {match_text}; best overall "
        + (f"{_arm(best)}@{best.point.n} {percent(best.point.accuracy)}" if best else "n/a")
        + f"; ceiling (beam search with the exact checker as PRM) at N={n_tree}: "
        + acc("beam_search", n_tree, prm=SYNTHETIC_CHECKER),
        "Verifiers (ProcessBench-style F1 / step AUROC on policy solutions): " + (", ".join(bench) if bench else "n/a")
        + "; step AUROC on held-out gold vs corrupted steps: " + (", ".join(corrupted) if corrupted else "n/a"),
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
