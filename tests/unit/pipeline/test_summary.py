"""The pipeline's printed summary: every headline claim carries its paired 95% interval, worded by it; a ceiling
never "reaches" policy-large; arms on different problem sets or without per-problem outcomes are refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from inference.evaluation.evaluations import ModelEvaluation, read_evaluations, write_evaluations
from inference.evaluation.metrics import ProblemOutcome, aggregate
from inference.pipeline.scales import SCALES
from inference.pipeline.stages import PipelineOptions
from inference.pipeline.summary import summary_lines

PROBLEMS = ("q0", "q1", "q2", "q3", "q4")


def outcomes(strategy: str, n: int, accuracies: tuple[float, ...], beam_width: int | None = None,
             problems: tuple[str, ...] = PROBLEMS) -> list[ProblemOutcome]:
    """One outcome per problem, in the order of `problems`."""
    return [ProblemOutcome(pid, 1, strategy, n, beam_width, accuracy, None, 10.0 * n, 0.0)
            for pid, accuracy in zip(problems, accuracies, strict=True)]


def evaluation(policy: str, prm: str, *arms: list[ProblemOutcome]) -> ModelEvaluation:
    found = tuple(o for arm in arms for o in arm)
    return ModelEvaluation(policy, prm, found, tuple(aggregate(found, include_overall=True)))


def options(run_dir: Path, max_n_sampling: int = 8) -> PipelineOptions:
    return PipelineOptions(run_dir=run_dir, scale=replace(SCALES["smoke"], max_n_sampling=max_n_sampling),
                           small_policy="s", large_policy="l", force=False, retrain_policies=False, wandb=False,
                           seed=0)


def write_run(run_dir: Path, large_problems: tuple[str, ...] = PROBLEMS) -> None:
    write_evaluations([
        evaluation("policy-small", "", outcomes("majority", 1, (1, 0, 0, 0, 1))),
        evaluation("policy-small", "prm-likelihood-head",
                   outcomes("majority", 4, (0, 0, 0, 0.5, 1)), outcomes("weighted_best_of_n", 4, (1, 0, 0, 0.5, 1)),
                   outcomes("best_of_n", 4, (1, 1, 1, 1, 0)), outcomes("majority", 8, (0, 0, 1, 0.5, 1)),
                   outcomes("weighted_best_of_n", 8, (1, 0, 1, 0.5, 1)), outcomes("best_of_n", 8, (0, 0, 0, 0.5, 0)),
                   outcomes("pass@n", 8, (1, 1, 1, 1, 1)), outcomes("beam_search", 4, (1, 1, 0, 1, 1), beam_width=4)),
        evaluation("policy-small", "policy-large-likelihood",
                   # problems listed in another order: pairing goes by problem id
                   outcomes("weighted_best_of_n", 4, (0.5, 1, 1, 1, 1), problems=tuple(reversed(PROBLEMS))),
                   outcomes("weighted_best_of_n", 8, (1, 1, 1, 1, 1)),
                   outcomes("beam_search", 4, (1, 0, 0, 1, 1), beam_width=4)),
        evaluation("policy-small", "prm-oracle", outcomes("weighted_best_of_n", 4, (0, 0, 1, 1, 1))),
        evaluation("policy-small", "synthetic-checker", outcomes("beam_search", 4, (1, 1, 1, 1, 1), beam_width=4)),
    ], run_dir / "eval")
    write_evaluations([evaluation("policy-large", "", outcomes("majority", 1, (0, 1, 1, 0, 1),
                                                               problems=large_problems))], run_dir / "eval-large")


def test_each_claim_carries_its_paired_interval_worded_by_it(tmp_path):
    write_run(tmp_path)
    lines = summary_lines(options(tmp_path))
    # Weighted best-of-N - majority at N=4: 1, 0, 0, 0, 0 -> mean 0.2, sample variance 0.2, standard error
    # sqrt(0.2 / 5) = 0.2, half width 1.96 * 0.2 = 0.392: -0.192 to +0.592, within noise.
    # Its beam search - policy-large greedy (0, 1, 1, 0, 1): 1, 0, -1, 1, 0 -> mean 0.2, sample variance 0.7,
    # standard error sqrt(0.14) = 0.37417, half width 0.73337: -0.533 to +0.933.
    assert lines[1] == ("policy-small at N=4 with prm-likelihood-head (trained): majority 30.0%, best-of-N 80.0%, "
                        "weighted best-of-N 50.0% (within noise of majority: +20.0 points, 95% CI -19.2 to +59.2, "
                        "n=5), beam search 80.0% (within noise of policy-large greedy: +20.0 points, 95% CI -53.3 to "
                        "+93.3, n=5), DVTS n/a")
    # Best-of-N at N=8 - at N=4: -1, -1, -1, -0.5, 0 -> mean -0.7, variance 0.2, half width 0.392: behind.
    # The trained PRM's beam search - the untrained read-out's (1, 0, 0, 1, 1): 0, 1, 0, 0, 0 -> mean 0.2,
    # variance 0.2, half width 0.392.
    assert lines[2] == ("policy-small at N=8 with prm-likelihood-head: majority 50.0%, weighted best-of-N 70.0%, "
                        "best-of-N 10.0% (behind its 80.0% at N=4: -70.0 points, 95% CI -109.2 to -30.8, n=5), pass@N "
                        "100.0%; at N=4 untrained policy-large-likelihood: weighted best-of-N 90.0%, beam search 60.0% "
                        "(prm-likelihood-head within noise of it: +20.0 points, 95% CI -19.2 to +59.2, n=5); "
                        "prm-oracle: weighted best-of-N 60.0%, beam search n/a")
    # Against policy-large greedy (0, 1, 1, 0, 1), a run of another policy paired by problem id. The arm reaching
    # it: 1, 0, 0, 1, -0.5 -> mean 0.3, variance 0.45, standard error 0.3, half width 0.588. The best overall:
    # 1, 0, 0, 1, 0 -> mean 0.4, variance 0.3, standard error sqrt(0.06) = 0.24495, half width 0.4801.
    assert lines[3] == ("policy-large greedy 60.0%: weighted_best_of_n (policy-large-likelihood) reaches it at N = 4 "
                        "(90.0%; within noise of it: +30.0 points, 95% CI -28.8 to +88.8, n=5); best overall "
                        "weighted_best_of_n (policy-large-likelihood)@8 100.0% (within noise of policy-large greedy: "
                        "+40.0 points, 95% CI -8.0 to +88.0, n=5); ceiling (beam search with the exact checker as "
                        "PRM) at N=4: 100.0%")
    assert lines[0] == "policy-small greedy 40.0% | policy-large greedy 60.0%" and len(lines) == 6
    # Not run here: the strategies beyond the reference read n/a.
    assert lines[5] == ("Beyond the reference with prm-likelihood-head at N=4: particle filtering n/a, MCTS n/a; "
                        "adaptive majority at N<=8 n/a")


def test_strategies_beyond_the_reference_are_set_against_beam_search_and_majority(tmp_path):
    write_run(tmp_path)
    extra = [*outcomes("particle_filtering", 4, (1, 1, 1, 1, 0)), *outcomes("mcts", 4, (1, 1, 0, 0, 1)),
             *(replace(o, policy_tokens=20.0) for o in outcomes("adaptive_majority", 8, (0, 0, 1, 0.5, 1)))]
    evaluations = [e for e in read_evaluations(tmp_path / "eval")]
    head = next(e for e in evaluations if e.prm == "prm-likelihood-head")
    found = head.outcomes + tuple(extra)
    evaluations[evaluations.index(head)] = replace(head, outcomes=found, points=tuple(aggregate(found)))
    write_evaluations(evaluations, tmp_path / "eval")
    # PF - beam search (1, 1, 0, 1, 1): 0, 0, 1, 0, -1 -> mean 0, variance 0.5, half width 0.6198.
    # MCTS - beam search: 0, 0, 0, -1, 0 -> mean -0.2, variance 0.2, half width 0.392. Adaptive - majority at 8:
    # all 0; 20 of majority's 80 tokens per problem.
    assert summary_lines(options(tmp_path))[5] == (
        "Beyond the reference with prm-likelihood-head at N=4: particle filtering 80.0% (within noise of beam search: "
        "+0.0 points, 95% CI -62.0 to +62.0, n=5), MCTS 60.0% (within noise of beam search: -20.0 points, 95% CI "
        "-59.2 to +19.2, n=5); adaptive majority at N<=8 50.0% with 25% of majority's policy tokens (within noise "
        "of majority@8: +0.0 points, 95% CI +0.0 to +0.0, n=5)")


def test_no_fall_of_best_of_n_is_claimed_where_the_largest_n_is_the_small_one(tmp_path):
    write_run(tmp_path)
    line = summary_lines(options(tmp_path, max_n_sampling=4))[2]
    assert line.startswith("policy-small at N=4 with prm-likelihood-head: majority 30.0%, weighted best-of-N 50.0%, "
                           "best-of-N 80.0%, pass@N n/a; at N=4 untrained")


def test_a_ceiling_never_reaches_policy_large(tmp_path):
    # A perfect-verifier row above policy-large's greedy accuracy is reported as the ceiling, never as "reaches it".
    write_evaluations([
        evaluation("policy-small", "", outcomes("majority", 1, (0, 0, 0, 0, 1))),
        evaluation("policy-small", "prm-oracle", outcomes("dvts", 4, (1, 0, 0, 0, 1), beam_width=4)),
        evaluation("policy-small", "synthetic-checker", outcomes("beam_search", 4, (1, 1, 1, 1, 0), beam_width=4)),
    ], tmp_path / "eval")
    write_evaluations([evaluation("policy-large", "", outcomes("majority", 1, (1, 1, 1, 0, 0)))],
                      tmp_path / "eval-large")
    # Best overall (dvts) - policy-large greedy: 0, -1, -1, 0, 1 -> mean -0.2, variance 0.7, half width 0.73337.
    assert summary_lines(options(tmp_path))[3] == (
        "policy-large greedy 60.0%: no strategy reaches it within this budget; best overall dvts (prm-oracle)@4 "
        "40.0% (within noise of policy-large greedy: -20.0 points, 95% CI -93.3 to +53.3, n=5); ceiling (beam "
        "search with the exact checker as PRM) at N=4: 80.0%")


def test_arms_on_different_problem_sets_are_refused_naming_both_eval_dirs(tmp_path):
    write_run(tmp_path, large_problems=("q0", "q1", "q2", "q3", "other"))
    with pytest.raises(ValueError, match=(
            rf"cannot pair weighted_best_of_n \(policy-large-likelihood\) at N=4 in {tmp_path}/eval \(5 problems\) "
            rf"with policy-large greedy in {tmp_path}/eval-large \(5 problems\): their problem sets differ \(1 only "
            r"in weighted_best_of_n .*, e.g. \['q4'\]; 1 only in policy-large greedy .*, e.g. \['other'\]\)")):
        summary_lines(options(tmp_path))


def test_an_eval_dir_without_per_problem_outcomes_is_refused(tmp_path):
    write_run(tmp_path)
    (tmp_path / "eval-large" / "outcomes.jsonl").write_text("")
    with pytest.raises(ValueError, match=rf"^{tmp_path}/eval-large: no per-problem outcome of policy-large: "
                                         r"majority at N=1, expected one per problem in outcomes.jsonl"):
        summary_lines(options(tmp_path))
