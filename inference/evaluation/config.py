"""The config of `ttc-infer eval` (YAML file + CLI flags, unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass

from inference.config import ConfigError


@dataclass(frozen=True)
class EvalConfig:
    """`ttc-infer eval`: accuracy at N per strategy, level and compute; difficulty bins; compute-optimal routing."""

    inputs: tuple[str, ...] = ()
    """Result files, glob patterns, or directories (each contributes its results*.jsonl); search-and-learn's result
    files (JSONL or Parquet) too."""
    search_and_learn_policy: str | None = None
    """Policy name of search-and-learn rows; null: the directory search-and-learn wrote them into (named after its
    policy, as ttc names a policy), so a ttc run of that policy shares the report."""
    search_and_learn_prm: str | None = None
    """Verifier name of search-and-learn rows (its files do not name their PRM); null: 'search-and-learn'."""
    output_dir: str = ""
    """Directory for metrics.jsonl, outcomes.jsonl, compute_optimal.json and routers/ (read by `ttc-infer report`)."""
    ns: tuple[int, ...] | None = None
    """Budgets N at which sampling strategies are subsampled; null uses 1, 2, 4, ... up to the stored N."""
    num_subsamples: int = 32
    """Random size-N subsets of the stored samples averaged per problem (all subsets when there are fewer)."""
    seed: int = 0
    """Seed of the subsets and of the fit / held-out split of problems."""
    derive_sampling: bool = False
    """Compute majority, best_of_n and weighted_best_of_n from any one sampling row of a problem when the
    others are missing (they differ only in how the answer is selected)."""
    policy_params: int | None = None
    """Parameters of the policy, for FLOPs (2 x parameters x tokens); null leaves FLOPs out."""
    prm_params: dict[str, int] | None = None
    """Parameters of each PRM by its name in the rows, for FLOPs (0 for the exact checker; an implicit PRM's model
    and reference model together, both run every token); null leaves PRM FLOPs out."""
    compute_optimal: bool = True
    """Fit and compare compute-optimal routing (oracle bins, and predicted bins when predicted_k is set)."""
    folds: int | None = 5
    """Cross-fitting folds for the held-out comparison: each fold is routed by a router fitted on the others, so
    every problem is held out once (more fitting and more held-out problems than one split); null uses one split."""
    fit_fraction: float = 0.5
    """With folds: null, the share of problems the router is fitted on; the rest are held out."""
    min_gain: float | None = 0.1
    """A difficulty bin overrides the strategy that is best over all fitting problems at a budget only when its own
    best beats it on the bin's fitting problems by more than this accuracy (0.1 = 10 points); null: per bin alone.
    A fold's bin holds about 16 of 100 problems, one problem about 6 points: per bin alone, the trained PRM's
    predicted-bin router fell measurably behind best-of-N@8 on the main job (benchmarks/RESULTS.md)."""
    predicted_k: int | None = 4
    """Predicted difficulty = mean PRM score of each problem's first k samples (needs scored samples);
    null skips predicted bins."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("eval needs --inputs: result files, globs or directories written by `ttc-infer run`")
        if not self.output_dir:
            raise ConfigError("eval needs --output_dir: where to write metrics.jsonl and the compute-optimal results")
        if self.ns is not None and (not self.ns or min(self.ns) < 1):
            raise ConfigError(f"ns must be budgets >= 1, got {list(self.ns)}; e.g. ns: [1, 2, 4, 8]")
        if self.num_subsamples < 1:
            raise ConfigError(f"num_subsamples must be >= 1, got {self.num_subsamples}")
        if not 0 < self.fit_fraction < 1:
            raise ConfigError(f"fit_fraction must be in (0, 1), got {self.fit_fraction}; e.g. 0.5")
        if self.min_gain is not None and not 0 <= self.min_gain <= 1:
            raise ConfigError(f"min_gain must be an accuracy in [0, 1] or null, got {self.min_gain}; e.g. 0.05")
        if self.folds is not None and self.folds < 2:
            raise ConfigError(f"folds must be >= 2 or null (one fit / held-out split), got {self.folds}; e.g. 5")
        if self.predicted_k is not None and self.predicted_k < 1:
            raise ConfigError(f"predicted_k must be >= 1 or null, got {self.predicted_k}")
        if self.policy_params is not None and self.policy_params < 1:
            raise ConfigError(f"policy_params must be a positive parameter count, got {self.policy_params}")
        for name, value in (self.prm_params or {}).items():
            # 0 is a verifier without a model (prm.path synthetic-checker): it adds no FLOPs.
            if value is None or value < 0:
                raise ConfigError(f"prm_params: {name} must be a parameter count >= 0, got {value}")
