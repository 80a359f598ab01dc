"""Two arms on the same problems: the mean per-problem difference and its paired 95% interval (one definition).

With ~100 problems one problem is one point of accuracy, so a claim that one arm beats another needs an interval.
The interval is the normal approximation of the paired per-problem differences: mean +- 1.96 standard errors,
the standard error being the sample standard deviation (ddof=1) over sqrt(number of problems). Pairing by problem
removes the problem-to-problem spread that both arms share, which an unpaired interval would count twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Z_95 = 1.96
"""Standard normal quantile of a two-sided 95% interval."""


@dataclass(frozen=True)
class PairedDifference:
    """Arm A minus arm B, paired over the same problems."""

    difference: float
    """Mean over problems of (A's accuracy - B's accuracy); > 0: A is ahead."""
    low: float
    high: float
    """95% interval of the mean difference (-inf / +inf with a single problem: no spread to estimate)."""
    num_problems: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or entirely below zero: a difference beyond noise."""
        return self.low > 0 or self.high < 0


def paired_difference(
    a: Mapping[str, float], b: Mapping[str, float], *, a_name: str = "arm A", b_name: str = "arm B"
) -> PairedDifference:
    """A minus B from problem id -> accuracy of each arm; the two must cover exactly the same problems."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(
            f"cannot pair {a_name} ({len(a)} problems) with {b_name} ({len(b)} problems): their problem sets differ "
            f"({len(only_a)} only in {a_name}, e.g. {only_a[:1]}; {len(only_b)} only in {b_name}, e.g. {only_b[:1]}); "
            "evaluate both arms on the same problems"
        )
    if not a:
        raise ValueError(f"cannot pair {a_name} with {b_name}: neither has a per-problem result")
    differences = np.array([a[pid] - b[pid] for pid in sorted(a)], dtype=float)
    mean = float(differences.mean())
    if len(differences) == 1:
        return PairedDifference(mean, -np.inf, np.inf, 1)
    half_width = float(Z_95 * differences.std(ddof=1) / np.sqrt(len(differences)))
    return PairedDifference(mean, mean - half_width, mean + half_width, len(differences))
