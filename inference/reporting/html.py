"""One self-contained HTML report: headline numbers, figures embedded as base64 PNG, metric tables, run config."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from data_prep.io import atomic_write_text
from inference.evaluation.compute_optimal import COMPUTE_OPTIMAL, ComputeOptimalReport
from inference.evaluation.evaluations import ModelEvaluation
from inference.evaluation.metrics import PASS_AT_N, MetricPoint, accuracy_table, select
from inference.evaluation.processbench import ProcessBenchReport
from inference.reporting import plots
from inference.reporting.headline import (
    CEILING_VERIFIERS,
    FALL_FROM_N,
    Arm,
    best_arm,
    ceiling,
    compare,
    comparison_text,
    first_reaching,
    matches_by_verifier,
    per_problem,
    percent,
    point_at,
    runnable,
    signed_points,
    tree_budget,
)

logger = logging.getLogger(__name__)

REPORT_FILENAME = "report.html"
_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.headline { background: #f3f7fb; border-left: 4px solid #2a6fb0; padding: 0.6em 1.2em; }
.headline li { margin: 0.25em 0; font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
"""


def figure_png(fig: Figure, *, dpi: int = plots.DPI) -> bytes:
    """PNG bytes of a figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    if isinstance(value, (dict, list, tuple)):
        return html.escape(json.dumps(value, default=str))
    return html.escape("" if value is None else str(value))


def render_table(rows: Sequence[Mapping[str, object]]) -> str:
    """An HTML table of dicts (columns: union of keys, in first-seen order)."""
    if not rows:
        return "<p><em>no rows</em></p>"
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(
    *,
    title: str,
    headline: Sequence[str],
    figures: Mapping[str, bytes | Path] | None = None,
    tables: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
    config: Mapping[str, object] | None = None,
) -> str:
    """The page: headline list, figures (PNG bytes or paths, embedded as data URIs), tables, config."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
        '<h2>Headline</h2><ul class="headline">' + "".join(f"<li>{html.escape(line)}</li>" for line in headline) + "</ul>",
    ]
    figures, tables = figures or {}, tables or {}
    if figures:
        parts.append("<h2>Figures</h2>")
    for caption, png in figures.items():
        data = png.read_bytes() if isinstance(png, Path) else png
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts.append(f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    for name, rows in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>{render_table(rows)}")
    if config is not None:
        parts.append("<h2>Run configuration</h2><pre>" + html.escape(json.dumps(config, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def headline(
    points: Sequence[MetricPoint],
    *,
    references: Mapping[str, float] | None = None,
    compute_optimal: Sequence[ComputeOptimalReport] = (),
    processbench: Sequence[ProcessBenchReport] = (),
    other_verifiers: Mapping[str, Sequence[MetricPoint]] | None = None,
    evaluations: Mapping[str, ModelEvaluation] | None = None,
    main_prm: str | None = None,
    reference_outcomes: Mapping[str, Mapping[str, float]] | None = None,
) -> list[str]:
    """The few sentences at the top of the report (the facts are `inference.reporting.headline`'s).

    `points` are the main PRM's; `other_verifiers` (name -> points) are searched for a reference the main PRM does
    not match, so the page says which verifier gets the policy there (ceilings, pass@N and the exact checker, never
    count as matching). With `evaluations` (verifier name -> its evaluation, `main_prm` the one of `points`) the
    claims carry paired 95% intervals: weighted best-of-N vs majority at the tree budget per verifier, best-of-N's
    fall from N = 4, and, for each reference with per-problem correctness in `reference_outcomes` (name -> problem
    id -> correctness), the best arm and each arm matching it against it.
    """
    unknown = sorted(set(reference_outcomes or {}) - set(references or {}))
    if unknown:
        raise ValueError(f"reference_outcomes names {unknown}, which are not in references {sorted(references or {})}")
    pairing = _Pairing(evaluations or {}, main_prm, reference_outcomes or {})
    main = [Arm(p, main_prm or "") for p in runnable(points)]
    lines = []
    best = best_arm(main)
    if best is not None:
        p = best.point
        against = "; ".join(pairing.versus_reference(best, name, name) for name in (references or {})
                            if pairing.has_reference(name))
        lines.append(f"Best accuracy: {p.label} at N={p.n}: {percent(p.accuracy)} on {p.num_problems} problems"
                     + (f" ({against})." if against else "."))
        singles = [a.point for a in main if a.point.n == 1]
        if singles:
            lines.append(f"One sample (N=1): {percent(max(p.accuracy for p in singles))}.")
    if pairing.active:
        lines += pairing.search_lines(points, other_verifiers or {})
    top = ceiling(points)
    if top is not None:
        lines.append(f"Ceiling pass@{top.n} (any correct among {top.n} samples): {percent(top.accuracy)}.")
    for name, accuracy in (references or {}).items():
        first = first_reaching(main, accuracy)
        if first is not None:
            p = first.point
            lines.append(f"{name} ({percent(accuracy)}) is matched by {p.label} at N={p.n} "
                         f"({percent(p.accuracy)}{pairing.reference_clause(first, name)}).")
            continue
        scope = " with the main PRM" if other_verifiers else ""
        lines.append(f"{name} ({percent(accuracy)}) is not matched by any strategy{scope} up to "
                     f"N={max((a.point.n for a in main), default=0)}.")
        for verifier, match in matches_by_verifier(other_verifiers or {}, accuracy).items():
            p = match.point
            lines.append(f"With {verifier} as verifier, {name} is matched by {p.label} at N={p.n} "
                         f"({percent(p.accuracy)}{pairing.reference_clause(match, name)}).")
    for report in compute_optimal:
        lines += _compute_optimal_lines(report)
    for r in processbench:
        auroc = "n/a" if r.step_auroc is None else f"{r.step_auroc:.3f}"
        lines.append(f"{r.scorer or 'PRM'}: ProcessBench-style F1 {percent(r.tuned.f1)} at tuned threshold "
                     f"{r.tuned.threshold:.3g} ({percent(r.fixed.f1)} at 0.5), step AUROC {auroc}.")
    return lines or ["No results."]


class _Pairing:
    """The per-problem results behind the headline's claims, and the paired comparisons drawn from them."""

    def __init__(self, evaluations: Mapping[str, ModelEvaluation], main_prm: str | None,
                 reference_outcomes: Mapping[str, Mapping[str, float]]) -> None:
        if evaluations and main_prm not in evaluations:
            raise ValueError(f"main_prm {main_prm!r} is not among the evaluations {sorted(evaluations)}; "
                             "name the PRM whose points head the report")
        if reference_outcomes and not evaluations:
            raise ValueError(f"the references {sorted(reference_outcomes)} have per-problem results but there are "
                             "no evaluations to pair them with; pass evaluations too")
        self.evaluations, self.main_prm, self.references = evaluations, main_prm, reference_outcomes

    @property
    def active(self) -> bool:
        return bool(self.evaluations)

    def has_reference(self, name: str) -> bool:
        return self.active and name in self.references

    def outcomes(self, arm: Arm) -> dict[str, float]:
        if arm.verifier not in self.evaluations:
            raise ValueError(f"no evaluation of verifier {arm.verifier!r} among {sorted(self.evaluations)} to pair "
                             f"{arm.point.label} at N={arm.point.n} with; pass every verifier's evaluation")
        return per_problem(self.evaluations[arm.verifier], arm.point, where=f"evaluation of {arm.verifier}")

    def versus_reference(self, arm: Arm, name: str, against_text: str) -> str:
        comparison = compare(self.outcomes(arm), self.references[name],
                             arm_name=f"{arm.point.label} at N={arm.point.n} ({arm.verifier})", against_name=name)
        return comparison_text(comparison, against_text)

    def reference_clause(self, arm: Arm, name: str) -> str:
        """'; within noise of it: ...' after a matching arm's accuracy, where the reference has per-problem results."""
        return f"; {self.versus_reference(arm, name, 'it')}" if self.has_reference(name) else ""

    def search_lines(self, points: Sequence[MetricPoint], other_verifiers: Mapping[str, Sequence[MetricPoint]]
                     ) -> list[str]:
        """Weighted best-of-N vs majority at the tree budget (each verifier; without a tree search, at the largest N
        both ran), best-of-N's fall from N = 4."""
        lines = []
        weighted_ns = {p.n for p in select(points, strategy="weighted_best_of_n")}
        n = tree_budget(points) or max(weighted_ns & {p.n for p in select(points, strategy="majority")}, default=None)
        majority = None if n is None else point_at(points, "majority", n)
        # A verifier that knows the answers shows a ceiling, not a claim about search.
        verifiers = [self.main_prm, *(v for v in sorted(other_verifiers)
                                      if v != self.main_prm and v not in CEILING_VERIFIERS)]
        for verifier in verifiers if majority is not None else ():
            weighted = point_at(points if verifier == self.main_prm else other_verifiers[verifier],
                                "weighted_best_of_n", n)
            if weighted is None:
                continue
            versus = self._versus(Arm(weighted, verifier), Arm(majority, self.main_prm), "majority")
            subject = "Weighted" if verifier == self.main_prm else f"With {verifier} as verifier, weighted"
            lines.append(f"{subject} best-of-N vs majority at N={n}: {percent(weighted.accuracy)} vs "
                         f"{percent(majority.accuracy)} ({versus}).")
        largest = max((p.n for p in select(points, strategy="best_of_n")), default=None)
        small = point_at(points, "best_of_n", FALL_FROM_N)
        if largest is not None and small is not None and largest > FALL_FROM_N:
            top = point_at(points, "best_of_n", largest)
            versus = self._versus(Arm(top, self.main_prm), Arm(small, self.main_prm),
                                  f"its {percent(small.accuracy)} at N={FALL_FROM_N}")
            lines.append(f"Best-of-N at N={largest}: {percent(top.accuracy)} ({versus}).")
        return lines

    def _versus(self, arm: Arm, against: Arm, against_text: str) -> str:
        comparison = compare(self.outcomes(arm), self.outcomes(against),
                             arm_name=f"{arm.point.label} at N={arm.point.n} ({arm.verifier})",
                             against_name=f"{against.point.label} at N={against.point.n} ({against.verifier})")
        return comparison_text(comparison, against_text)


def _compute_optimal_lines(report: ComputeOptimalReport) -> list[str]:
    """Compute-optimal vs the best single strategy at the largest budget, and the compute it saves."""
    where = f"Compute-optimal with {report.bin_kind} bins on {report.heldout_description}"
    overall = select(report.points)
    routed = [p for p in overall if p.strategy == COMPUTE_OPTIMAL]
    if not routed:
        return []
    top = max(routed, key=lambda p: p.n)
    rivals = [p for p in runnable(overall) if p.n == top.n]
    line = f"{where}: {percent(top.accuracy)} at N={top.n}"
    if rivals:
        rival = max(rivals, key=lambda p: p.accuracy)
        line += f" vs {percent(rival.accuracy)} for the best single strategy there, {rival.label}"
    lines = [line + "."]
    if report.gaps:
        ahead = sum(g.low > 0 for g in report.gaps)
        behind = sum(g.high < 0 for g in report.gaps)
        worst = min(report.gaps, key=lambda g: (g.difference, g.n, g.reference))
        lines.append(
            f"{where} against each single strategy at equal N ({len(report.gaps)} paired comparisons, 95% "
            f"intervals): ahead in {ahead}, behind in {behind}, within noise in "
            f"{len(report.gaps) - ahead - behind}; its largest shortfall is {signed_points(worst.difference)} "
            f"points against {worst.reference} at N={worst.n} ({signed_points(worst.low)} to "
            f"{signed_points(worst.high)})."
        )
    reached = [s for s in report.savings if s.compute_optimal_n is not None and s.reference_accuracy > 0]
    if report.savings and report.savings[0].compute_optimal_n is None:
        s = report.savings[0]
        lines.append(f"{where} does not reach the best single strategy's accuracy ({s.reference}, "
                     f"{percent(s.reference_accuracy)} at N={s.reference_n}).")
    if reached:
        s = reached[0]
        ratio = s.flops_ratio if s.flops_ratio is not None else s.token_ratio
        unit = "FLOPs" if s.flops_ratio is not None else "tokens"
        saving = "" if ratio is None else f": {ratio:.1f}x {'less' if ratio >= 1 else 'more'} compute ({unit})"
        lines.append(f"{where} reaches {s.reference}'s best {percent(s.reference_accuracy)} (N={s.reference_n}) "
                     f"at N={s.compute_optimal_n}{saving}.")
    return lines


def _gap_table(report: ComputeOptimalReport) -> list[dict]:
    """One row per N, one column per single strategy: compute-optimal minus it, with the 95% interval."""
    rows: dict[int, dict] = {}
    for g in report.gaps:
        rows.setdefault(g.n, {"N": g.n})[g.reference] = (
            f"{signed_points(g.difference)} [{signed_points(g.low)}, {signed_points(g.high)}]")
    columns = sorted({k for row in rows.values() for k in row if k != "N"})
    return [{"N": n} | {c: row.get(c, "") for c in columns} for n, row in sorted(rows.items())]


def _level_table(points: Sequence[MetricPoint], n: int) -> list[dict]:
    table: dict[str, dict] = {}
    for p in points:
        if p.n == n and p.bin_kind == "level" and p.level is not None:
            table.setdefault(p.label, {"strategy": p.label})[f"level {p.level}"] = f"{100 * p.accuracy:.1f}"
    columns = sorted({k for row in table.values() for k in row if k != "strategy"})
    return [{"strategy": k} | {c: row.get(c, "") for c in columns} for k, row in table.items()]


def _compute_table(points: Sequence[MetricPoint]) -> list[dict]:
    return [
        {"strategy": p.label, "N": p.n, "accuracy %": 100 * p.accuracy, "policy tokens": p.policy_tokens,
         "PRM tokens": p.prm_tokens, "FLOPs": p.flops, "problems": p.num_problems}
        for p in select(points)
    ]


def build_report(
    out_dir: str | Path,
    *,
    points: Sequence[MetricPoint],
    title: str = "ttc test-time compute report",
    references: Mapping[str, float] | None = None,
    prm_points: Mapping[str, Sequence[MetricPoint]] | None = None,
    processbench: Sequence[ProcessBenchReport] = (),
    compute_optimal: Sequence[ComputeOptimalReport] = (),
    config: Mapping[str, object] | None = None,
    level_n: int | None = None,
    dpi: int = plots.DPI,
    evaluations: Mapping[str, ModelEvaluation] | None = None,
    main_prm: str | None = None,
    reference_outcomes: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Make every figure that the inputs allow, write them as PNGs under `out_dir/figures`, and the HTML page.

    `level_n` picks the N of the per-level bars (default: the largest N that a sampling strategy reached).
    `evaluations`, `main_prm` and `reference_outcomes` give the headline's claims their paired intervals
    (see `headline`). Returns the path of `report.html`.
    """
    out_dir = Path(out_dir)
    figures: dict[str, Figure] = {
        "Accuracy vs generation budget N": plots.plot_accuracy_vs_n(points, references=references),
    }
    overall = select(points)
    if overall and all(p.flops is not None for p in overall):
        figures["Accuracy vs FLOPs per problem"] = plots.plot_accuracy_vs_compute(points, references=references)
    elif overall:
        figures["Accuracy vs tokens per problem"] = plots.plot_accuracy_vs_compute(points, x="tokens", references=references)
    level_points = [p for p in points if p.bin_kind == "level"]
    if level_points:
        if level_n is None:
            sampled = [p.n for p in level_points if p.strategy == PASS_AT_N]
            level_n = max(sampled or [p.n for p in level_points])
        figures[f"Accuracy per level at N={level_n}"] = plots.plot_accuracy_by_level(points, n=level_n)
    if prm_points and len(prm_points) > 1:
        figures["PRM comparison"] = plots.plot_prm_comparison(prm_points, references=references)
    if processbench:
        figures["PRM robustness (ProcessBench-style)"] = plots.plot_processbench(processbench)
    for report in compute_optimal:
        figures[f"Compute-optimal with {report.bin_kind} bins (held-out)"] = plots.plot_compute_optimal(report)
    pngs = {}
    for index, (caption, fig) in enumerate(figures.items()):
        path = plots.save_figure(fig, out_dir / "figures" / f"{index:02d}_{_slug(caption)}.png", dpi=dpi)
        pngs[caption] = path
    tables: dict[str, list[dict]] = {"Accuracy, all problems (%)": accuracy_table(points)}
    if level_points:
        tables[f"Accuracy per level at N={level_n} (%)"] = _level_table(points, level_n)
    tables["Compute per problem"] = _compute_table(points)
    for report in compute_optimal:
        tables[f"Router ({report.bin_kind} bins)"] = [
            {"bin": b, "N": n, "strategy": c.label, "fit accuracy %": 100 * c.fit_accuracy,
             "fit problems": c.num_fit_problems}
            for (b, n), c in sorted(report.router.choice.items())
        ]
        if report.gaps:
            tables[f"Compute-optimal minus each single strategy at equal N, points [95% interval] "
                   f"({report.bin_kind} bins)"] = _gap_table(report)
        tables[f"Compute saved ({report.bin_kind} bins)"] = [
            {"single strategy": s.reference, "its N": s.reference_n, "its best accuracy %": 100 * s.reference_accuracy,
             "compute-optimal N": s.compute_optimal_n, "token ratio": s.token_ratio, "FLOPs ratio": s.flops_ratio}
            for s in report.savings
        ]
    if processbench:
        tables["ProcessBench-style PRM evaluation"] = [
            {"PRM": r.scorer, "threshold": r.tuned.threshold, "error acc %": 100 * r.tuned.error_accuracy,
             "correct acc %": 100 * r.tuned.correct_accuracy, "F1 %": 100 * r.tuned.f1, "F1 @0.5 %": 100 * r.fixed.f1,
             "step AUROC": r.step_auroc, "fit / eval records": f"{r.num_fit} / {r.num_eval}"}
            for r in processbench
        ]
    page = render_html(
        title=title,
        headline=headline(points, references=references, compute_optimal=compute_optimal, processbench=processbench,
                          other_verifiers=prm_points, evaluations=evaluations, main_prm=main_prm,
                          reference_outcomes=reference_outcomes),
        figures=pngs, tables=tables, config=config,
    )
    path = atomic_write_text(out_dir / REPORT_FILENAME, page)
    logger.info("wrote %s (%d figures)", path, len(pngs))
    return path


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")[:60]
