"""How much work each pipeline stage does: the Scale record and the smoke / default / large scales."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Scale:
    """How much work each stage does (every field by keyword: ten integers in a row are easy to misplace)."""

    label_problems_per_level: int
    """Train problems per level whose policy solutions the oracle labels (and that the corrupted data draws on)."""
    label_solutions: int
    """Policy solutions per labelled problem."""
    mc_problems_per_level: int
    """Train problems per level labelled by Monte Carlo rollouts (slower than the oracle)."""
    mc_rollouts: int
    """Rollouts per step of the Monte Carlo labeller."""
    prm_epochs: int
    test_problems_per_level: int
    max_n_sampling: int
    """Largest N of majority / best-of-N / weighted best-of-N (smaller N are subsets of the same samples)."""
    max_n_tree: int
    """Largest N of beam search and DVTS (a search run per N)."""
    processbench_problems_per_level: int
    corrupted_test_problems_per_level: int
    """Held-out problems per level whose gold and two corrupted solutions test the PRMs' arithmetic check."""


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        label_problems_per_level=2, label_solutions=2, mc_problems_per_level=1, mc_rollouts=2, prm_epochs=1,
        test_problems_per_level=2, max_n_sampling=4, max_n_tree=4, processbench_problems_per_level=2,
        corrupted_test_problems_per_level=8,
    ),
    "default": Scale(
        label_problems_per_level=40, label_solutions=4, mc_problems_per_level=12, mc_rollouts=8, prm_epochs=2,
        test_problems_per_level=20, max_n_sampling=64, max_n_tree=16, processbench_problems_per_level=20,
        corrupted_test_problems_per_level=40,
    ),
    "large": Scale(
        label_problems_per_level=100, label_solutions=8, mc_problems_per_level=40, mc_rollouts=16, prm_epochs=2,
        test_problems_per_level=60, max_n_sampling=256, max_n_tree=64, processbench_problems_per_level=60,
        corrupted_test_problems_per_level=100,
    ),
}
