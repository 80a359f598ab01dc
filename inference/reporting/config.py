"""The config of `ttc-infer report` (YAML file + CLI flags, unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.config import ConfigError


@dataclass(frozen=True)
class ReportConfig:
    """`ttc-infer report`: figures and one self-contained HTML page from the output of `ttc-infer eval`."""

    eval_dir: str = ""
    """The output directory of `ttc-infer eval` (metrics.jsonl, compute_optimal.json)."""
    output_dir: str | None = None
    """Where report.html and figures/ go; null writes them into eval_dir."""
    title: str = "ttc test-time compute report"
    """Title of the page."""
    policy: str | None = None
    """The policy to report when eval_dir holds several; null requires exactly one."""
    main_prm: str | None = None
    """The PRM whose results fill the report (all PRMs appear in the PRM comparison); null: the first by name."""
    references: dict[str, float] = field(default_factory=dict)
    """Accuracies (0-1) drawn as horizontal lines, e.g. {"Llama-3.1-8B greedy": 0.5}."""
    reference_eval_dirs: dict[str, str] = field(default_factory=dict)
    """Reference name (a key of references) -> the `ttc-infer eval` output directory of its greedy run, e.g.
    {"policy-large greedy": "runs/default/eval-large"}: the headline pairs its claims with that run per problem,
    with 95% intervals."""
    level_n: int | None = None
    """Budget N of the per-level bars; null uses the largest N of the sampling strategies."""
    processbench: tuple[str, ...] = ()
    """ProcessBench report files (JSON written by ProcessBenchReport.save) to include."""
    wandb: bool = False
    """Also log one W&B run per (policy, PRM), grouped by PRM; offline unless WANDB_API_KEY is set."""
    wandb_project: str = "ttc"
    """W&B project name."""
    wandb_dir: str | None = None
    """Directory for W&B run files; null uses WANDB_DIR or the working directory."""

    def __post_init__(self) -> None:
        if not self.eval_dir:
            raise ConfigError("report needs --eval_dir: the output directory of `ttc-infer eval`")
        for name, accuracy in self.references.items():
            if not 0 <= accuracy <= 1:
                raise ConfigError(f"references.{name} must be an accuracy in [0, 1], got {accuracy}; "
                                  "write 52% as 0.52")
        unknown = sorted(set(self.reference_eval_dirs) - set(self.references))
        if unknown:
            raise ConfigError(f"reference_eval_dirs names {unknown}, which are not in references "
                              f"{sorted(self.references)}; give each reference's accuracy in references too")
        if self.level_n is not None and self.level_n < 1:
            raise ConfigError(f"level_n must be >= 1 or null, got {self.level_n}")
