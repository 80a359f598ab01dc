"""The synthetic world's exact step checker as a PRM: the perfect verifier, for ceilings of search, not a model."""

from __future__ import annotations

from data_prep.synthetic import check_solution
from inference.types import PRMScore

SYNTHETIC_CHECKER = "synthetic-checker"
"""The `prm.path` that selects this scorer instead of a checkpoint."""


class SyntheticCheckerScorer:
    """Scores step k 1.0 when steps 1..k are all right by the synthetic world's checker, else 0.0.

    What search would reach with a verifier that never errs: beam search guided by it is limited only by the
    policy (whether any sampled candidate of a step is right). It costs no model compute, so its PRM tokens are 0.
    Synthetic-world problems only: any other problem text is an error.
    """

    name = SYNTHETIC_CHECKER
    num_parameters = 0

    def score(self, problems: list[str], step_lists: list[list[str]]) -> list[PRMScore]:
        if len(problems) != len(step_lists):
            raise ValueError(f"{len(problems)} problems but {len(step_lists)} step lists; pass one per problem")
        scores = []
        for problem, steps in zip(problems, step_lists):
            try:
                first_wrong = check_solution(problem, list(steps)).first_wrong_step
            except ValueError as error:
                raise ValueError(
                    f"prm.path={SYNTHETIC_CHECKER!r} checks synthetic-world problems only ({error}); use a PRM "
                    "checkpoint for other benchmarks"
                ) from error
            right = len(steps) if first_wrong is None else first_wrong
            scores.append(PRMScore(step_scores=tuple(1.0 if k < right else 0.0 for k in range(len(steps))),
                                   num_tokens=0))
        return scores
