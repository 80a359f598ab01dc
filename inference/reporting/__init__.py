"""Reports of the inference arm: figures, one self-contained HTML page, optional W&B logging."""

from __future__ import annotations

from inference.reporting.config import ReportConfig

__all__ = ["ReportConfig", "make_report"]


# Not named `report`: importing the submodule inference.reporting.report rebinds that attribute of the package.
def make_report(config: ReportConfig) -> str:
    """`ttc-infer report` (matplotlib and wandb load only when a report is made)."""
    from inference.reporting.report import run_report

    return run_report(config)
