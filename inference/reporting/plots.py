"""Report figures (matplotlib Figure objects, Agg backend, no display): accuracy vs N and FLOPs, levels, PRMs.

Figures are built with `matplotlib.figure.Figure`, never pyplot: no global figure state, no GUI backend, and
`savefig` renders PNGs with Agg whatever backend the process has chosen. Every function returns a Figure
with a title, labelled axes (with units) and a legend, so callers and tests can inspect it before
`save_figure` writes the PNG.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

from data_prep.io import atomic_output
from inference.evaluation.compute_optimal import COMPUTE_OPTIMAL, ComputeOptimalReport
from inference.evaluation.metrics import PASS_AT_N, BinKind, MetricPoint, select, strategy_rank
from inference.evaluation.processbench import ProcessBenchReport
from inference.strategies import STRATEGIES

DPI = 120
_STYLE = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "legend.fontsize": 9.5,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_SUMMARY_COLORS = {COMPUTE_OPTIMAL: "black", PASS_AT_N: "tab:gray"}
"""Colours of the lines that are not strategies; a strategy's colour and marker are its registry entry's."""
_EXTRA_COLORS = ("tab:pink", "gold", "navy", "teal", "salmon", "darkkhaki")
_BAND = "std-band"
"""gid of the shaded ±1 std bands (the legend explains them when present)."""
_BIN_NAMES = {"level": "Level", "oracle": "Oracle difficulty bin", "predicted": "Predicted difficulty bin"}


def _figure(width: float = 8.0, height: float = 5.0, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _series(points: Sequence[MetricPoint]) -> dict[str, list[MetricPoint]]:
    """Points grouped by label, labels in the usual strategy order, each sorted by N."""
    groups: dict[str, list[MetricPoint]] = defaultdict(list)
    for p in points:
        groups[p.label].append(p)

    def rank(label: str) -> tuple:
        return (strategy_rank(groups[label][0].strategy), label)

    return {label: sorted(groups[label], key=lambda p: p.n) for label in sorted(groups, key=rank)}


def _color(strategy: str, label: str, used: dict[str, str]) -> str:
    if label not in used:
        taken = set(used.values())
        entry = STRATEGIES.get(strategy)
        base = entry.color if entry is not None else _SUMMARY_COLORS.get(strategy)
        used[label] = base if base and base not in taken else next(
            (c for c in _EXTRA_COLORS if c not in taken), "tab:gray")
    return used[label]


def _percent_axis(ax: Axes, *, fit_limits: bool = True) -> None:
    """Percent ticks; with `fit_limits`, limits inside [-2, 102] and at least 10 points tall (flat lines)."""
    # Whole-percent ticks only: a tick at 12.5 would be labelled "12%" by the integer formatter.
    ax.yaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}%" if abs(v) >= 0.5 else "0%"))
    if not fit_limits:
        return
    low, high = ax.get_ylim()
    low, high = max(low, -2.0), min(high, 102.0)
    if high - low < 10:
        low = min(max(0.0, (low + high) / 2 - 5), 92.0)
        high = low + 10
    ax.set_ylim(low, high)


def _log2_axis(ax: Axes) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _plot_lines(ax: Axes, points: Sequence[MetricPoint], x: str, colors: dict[str, str], prefix: str = "") -> None:
    for label, series in _series(points).items():
        xs = [getattr(p, x) for p in series]
        ys = [100 * p.accuracy for p in series]
        strategy = series[0].strategy
        color = _color(strategy, prefix + label, colors)
        if strategy == PASS_AT_N:
            ax.plot(xs, ys, ":", color=color, linewidth=2, label=f"{prefix}pass@N (ceiling)")
            continue
        width = 2.8 if strategy == COMPUTE_OPTIMAL else 1.8
        ax.plot(xs, ys, "-", marker=STRATEGIES[strategy].marker if strategy in STRATEGIES else "o", color=color, linewidth=width, markersize=4,
                label=prefix + label)
        stds = [p.accuracy_std for p in series]
        if all(s is not None for s in stds) and any(stds):
            band = ax.fill_between(xs, [y - 100 * s for y, s in zip(ys, stds)],
                                   [y + 100 * s for y, s in zip(ys, stds)], color=color, alpha=0.15, linewidth=0)
            band.set_gid(_BAND)


def _references(ax: Axes, references: Mapping[str, float] | None) -> None:
    styles = ("--", "-.", (0, (5, 2, 1, 2)))
    for i, (name, accuracy) in enumerate((references or {}).items()):
        ax.axhline(100 * accuracy, linestyle=styles[i % len(styles)], color="dimgray", linewidth=1.4,
                   label=f"{name} ({100 * accuracy:.1f}%)")


def _legend(ax: Axes, *, outside: bool = False) -> None:
    """Legend inside at the best spot; outside on the right for bar charts and crowded plots."""
    handles, labels = ax.get_legend_handles_labels()
    banded = any(c.get_gid() == _BAND for c in ax.collections)
    title = "shaded: ±1 std over subsets / seeds" if banded else None
    if outside or len(labels) > 9:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9, title=title,
                  title_fontsize=8.5)
    else:
        ax.legend(handles, labels, loc="best", framealpha=0.85, title=title, title_fontsize=8.5)


def _scope(title: str, level: int | None, bin_kind: BinKind | None) -> str:
    return title if level is None else f"{title}: {_BIN_NAMES.get(bin_kind or '', 'Bin')} {level}"


def plot_accuracy_vs_n(
    points: Sequence[MetricPoint],
    *,
    references: Mapping[str, float] | None = None,
    title: str = "Accuracy vs generation budget",
    level: int | None = None,
    bin_kind: BinKind | None = None,
) -> Figure:
    """Accuracy vs N (log2 axis) per strategy; pass@N dotted; references (e.g. a larger model's greedy) dashed."""
    fig, (ax,) = _figure()
    _plot_lines(ax, select(points, level=level, bin_kind=bin_kind), "n", {})
    _references(ax, references)
    _log2_axis(ax)
    _percent_axis(ax)
    ax.set_xlabel("Generation budget N (solutions per problem, log2 scale)")
    ax.set_ylabel("Accuracy (% of problems)")
    ax.set_title(_scope(title, level, bin_kind))
    _legend(ax)
    return fig


def plot_accuracy_vs_compute(
    points: Sequence[MetricPoint],
    *,
    x: str = "flops",
    references: Mapping[str, float] | None = None,
    title: str = "Accuracy vs compute",
) -> Figure:
    """Accuracy vs mean FLOPs (or policy + PRM tokens, x="tokens") per problem, log x axis."""
    overall = [p for p in select(points) if p.strategy != PASS_AT_N]
    if x == "flops":
        missing = sorted({p.label for p in overall if p.flops is None})
        if missing:
            raise ValueError(f"no FLOPs for {missing}: pass policy_params and prm_params to compute_metrics, "
                             "or plot x='tokens'")
        shown = overall
        xlabel = "Compute per problem (FLOPs, log scale; 2 x params x tokens)"
    elif x == "tokens":
        from dataclasses import replace

        shown = [replace(p, flops=p.policy_tokens + p.prm_tokens) for p in overall]
        xlabel = "Tokens per problem (policy + PRM, log scale)"
    else:
        raise ValueError(f"x must be 'flops' or 'tokens', got {x!r}")
    fig, (ax,) = _figure()
    _plot_lines(ax, shown, "flops", {})
    _references(ax, references)
    ax.set_xscale("log")
    _percent_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Accuracy (% of problems)")
    ax.set_title(title)
    _legend(ax)
    return fig


def plot_accuracy_by_level(
    points: Sequence[MetricPoint], *, n: int, bin_kind: BinKind = "level", title: str | None = None
) -> Figure:
    """Grouped bars: accuracy per level (or bin) for each strategy at budget N."""
    at_n = [p for p in points if p.n == n and p.bin_kind == bin_kind and p.level is not None]
    if not at_n:
        raise ValueError(f"no {bin_kind} points at N={n}; pick an N that the strategies were evaluated at")
    levels = sorted({p.level for p in at_n})
    series = _series(at_n)
    fig, (ax,) = _figure(width=max(8.0, 1.3 * len(levels) + 4))
    width = 0.8 / len(series)
    colors: dict[str, str] = {}
    for i, (label, group) in enumerate(series.items()):
        by_level = {p.level: p for p in group}
        xs = [j + (i - (len(series) - 1) / 2) * width for j, level in enumerate(levels) if level in by_level]
        ys = [100 * by_level[level].accuracy for level in levels if level in by_level]
        strategy = group[0].strategy
        name = "pass@N (ceiling)" if strategy == PASS_AT_N else label
        ax.bar(xs, ys, width=width, color=_color(strategy, label, colors), label=name,
               hatch="//" if strategy == PASS_AT_N else None, alpha=0.6 if strategy == PASS_AT_N else 1.0)
    ax.set_xticks(range(len(levels)), [str(level) for level in levels])
    ax.set_ylim(0, 105)
    _percent_axis(ax, fit_limits=False)
    ax.set_xlabel(f"{_BIN_NAMES[bin_kind]} (1 = easiest)")
    ax.set_ylabel("Accuracy (% of problems)")
    ax.set_title(title or f"Accuracy by {_BIN_NAMES[bin_kind].lower()} at N = {n}")
    ax.grid(axis="x", visible=False)
    _legend(ax, outside=True)
    return fig


def plot_prm_comparison(
    points_by_prm: Mapping[str, Sequence[MetricPoint]],
    *,
    strategies: Sequence[str] = ("weighted_best_of_n", "beam_search"),
    title: str = "PRM comparison",
    references: Mapping[str, float] | None = None,
) -> Figure:
    """Side by side, one panel per strategy: accuracy vs N with one line per PRM (and beam width), and the
    reference models' accuracies as horizontal lines (which verifier lifts the policy past them)."""
    if len(points_by_prm) < 1:
        raise ValueError("plot_prm_comparison needs the points of at least one PRM")
    fig, axes = _figure(width=6.0 * len(strategies), height=5.0, ncols=len(strategies))
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
    for ax, strategy in zip(axes, strategies):
        for i, (prm, points) in enumerate(points_by_prm.items()):
            for j, (label, series) in enumerate(_series(select(points, strategy=strategy)).items()):
                suffix = label[len(strategy):].strip()
                ax.plot([p.n for p in series], [100 * p.accuracy for p in series], marker="o", markersize=4,
                        color=palette[i % len(palette)], linestyle=("-", "--", ":")[j % 3],
                        label=f"{prm} {suffix}".strip())
        if ax.get_legend_handles_labels()[0]:
            _references(ax, references)
        _log2_axis(ax)
        _percent_axis(ax)
        ax.set_xlabel("Generation budget N (log2 scale)")
        ax.set_ylabel("Accuracy (% of problems)")
        ax.set_title(strategy)
        if ax.get_legend_handles_labels()[0]:
            _legend(ax)
        else:
            ax.text(0.5, 0.5, f"no {strategy} results", transform=ax.transAxes, ha="center", va="center")
    fig.suptitle(title, fontsize=14)
    return fig


def plot_processbench(
    reports: Sequence[ProcessBenchReport], *, title: str = "PRM robustness (ProcessBench-style)"
) -> Figure:
    """Grouped bars per PRM: F1 at the tuned threshold, F1 at 0.5, and step-level AUROC."""
    if not reports:
        raise ValueError("plot_processbench needs at least one report")
    fig, (ax,) = _figure(width=max(7.0, 2.2 * len(reports) + 3))
    metrics = [
        ("F1, tuned threshold", lambda r: r.tuned.f1, "tab:green"),
        ("F1, threshold 0.5", lambda r: r.fixed.f1, "tab:olive"),
        ("Step AUROC", lambda r: r.step_auroc, "tab:blue"),
    ]
    width = 0.8 / len(metrics)
    for i, (name, get, color) in enumerate(metrics):
        values = [get(r) for r in reports]
        xs = [j + (i - 1) * width for j in range(len(reports))]
        bars = ax.bar(xs, [100 * (v or 0.0) for v in values], width=width, color=color, label=name)
        ax.bar_label(bars, labels=["n/a" if v is None else f"{100 * v:.0f}" for v in values], fontsize=9, padding=2)
    ax.set_xticks(range(len(reports)), [r.scorer or f"PRM {i + 1}" for i, r in enumerate(reports)])
    ax.set_ylim(0, 110)
    _percent_axis(ax, fit_limits=False)
    ax.set_xlabel("Process reward model")
    ax.set_ylabel("Score (%)")
    ax.set_title(title)
    ax.grid(axis="x", visible=False)
    _legend(ax)
    return fig


def plot_compute_optimal(report: ComputeOptimalReport, *, title: str | None = None) -> Figure:
    """Held-out accuracy vs N: compute-optimal routing (thick black) against each single strategy."""
    shown = [p for p in select(report.points) if p.strategy != PASS_AT_N]
    fig, (ax,) = _figure()
    _plot_lines(ax, shown, "n", {})
    _log2_axis(ax)
    _percent_axis(ax)
    ax.set_xlabel("Generation budget N (solutions per problem, log2 scale)")
    ax.set_ylabel("Held-out accuracy (% of problems)")
    ax.set_title(title or f"Compute-optimal ({report.bin_kind} bins) vs single strategies\n"
                          f"{report.heldout_description}")
    _legend(ax)
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write `fig` as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        fig.savefig(temporary, dpi=dpi, format="png")
    return path
