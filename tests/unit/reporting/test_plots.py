"""Every figure has a title, axis labels with units and a legend, and saves as a valid PNG."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

from inference.evaluation.metrics import PASS_AT_N, select
from inference.reporting import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, f"axes {ax.get_title()!r} has no legend"
    return [t.get_text() for t in legend.get_texts()]


def check_saved(fig, path) -> None:
    plots.save_figure(fig, path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        # 8 x 5 inches at 120 dpi (constrained layout keeps the canvas size).
        assert image.size[0] >= 800 and image.size[1] >= 500


def test_accuracy_vs_n(run, tmp_path):
    _, _, points = run
    fig = plots.plot_accuracy_vs_n(points, references={"Llama-3.1-8B greedy": 0.62})
    (ax,) = fig.axes
    assert ax.get_title() == "Accuracy vs generation budget"
    assert "log2" in ax.get_xlabel() and "N" in ax.get_xlabel()
    assert ax.get_ylabel() == "Accuracy (% of problems)"
    assert ax.get_xscale() == "log"
    labels = legend_texts(ax)
    assert labels[:5] == ["majority", "best_of_n", "weighted_best_of_n", "beam_search (M=4)", "dvts (M=4)"]
    assert "pass@N (ceiling)" in labels and "Llama-3.1-8B greedy (62.0%)" in labels
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["pass@N (ceiling)"].get_linestyle() == ":"
    assert lines["Llama-3.1-8B greedy (62.0%)"].get_linestyle() == "--"
    assert list(lines["Llama-3.1-8B greedy (62.0%)"].get_ydata()) == [62.0, 62.0]
    majority = {p.n: 100 * p.accuracy for p in select(points, strategy="majority")}
    assert dict(zip(lines["majority"].get_xdata(), lines["majority"].get_ydata())) == majority
    check_saved(fig, tmp_path / "acc_vs_n.png")


def test_accuracy_vs_n_of_one_level(run):
    _, _, points = run
    fig = plots.plot_accuracy_vs_n(points, level=5, bin_kind="level")
    assert fig.axes[0].get_title() == "Accuracy vs generation budget: Level 5"


def test_accuracy_vs_compute(run, tmp_path):
    _, _, points = run
    fig = plots.plot_accuracy_vs_compute(points)
    (ax,) = fig.axes
    assert "FLOPs" in ax.get_xlabel() and ax.get_xscale() == "log"
    assert "pass@N (ceiling)" not in legend_texts(ax)  # the ceiling has no compute of its own
    check_saved(fig, tmp_path / "acc_vs_flops.png")
    no_flops = [replace(p, flops=None) for p in points]
    with pytest.raises(ValueError, match="no FLOPs for"):
        plots.plot_accuracy_vs_compute(no_flops)
    tokens = plots.plot_accuracy_vs_compute(no_flops, x="tokens")
    assert "Tokens per problem" in tokens.axes[0].get_xlabel()


def test_accuracy_by_level(run, tmp_path):
    _, _, points = run
    fig = plots.plot_accuracy_by_level(points, n=8)
    (ax,) = fig.axes
    assert ax.get_title() == "Accuracy by level at N = 8"
    assert ax.get_xlabel() == "Level (1 = easiest)" and "%" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4", "5"]
    # Strategies evaluated at N=8: the three sampling ones and pass@N (beam search / DVTS ran at 4 and 16).
    assert legend_texts(ax) == ["majority", "best_of_n", "weighted_best_of_n", "pass@N (ceiling)"]
    check_saved(fig, tmp_path / "levels.png")
    with pytest.raises(ValueError, match="no level points at N=3"):
        plots.plot_accuracy_by_level(points, n=3)


def test_prm_comparison(run, tmp_path):
    _, _, points = run
    other = [replace(p, accuracy=p.accuracy * 0.9) for p in points]
    fig = plots.plot_prm_comparison({"prm-a": points, "prm-b": other})
    assert [ax.get_title() for ax in fig.axes] == ["weighted_best_of_n", "beam_search"]
    assert fig.get_suptitle() == "PRM comparison"
    assert legend_texts(fig.axes[0]) == ["prm-a", "prm-b"]
    assert legend_texts(fig.axes[1]) == ["prm-a (M=4)", "prm-b (M=4)"]
    assert all("%" in ax.get_ylabel() and "N" in ax.get_xlabel() for ax in fig.axes)
    check_saved(fig, tmp_path / "prm.png")
    # A reference model's greedy accuracy is drawn in every panel with results: which verifier gets past it.
    fig = plots.plot_prm_comparison({"prm-a": points}, references={"large greedy": 0.5})
    assert [legend_texts(ax) for ax in fig.axes] == [["prm-a", "large greedy (50.0%)"],
                                                     ["prm-a (M=4)", "large greedy (50.0%)"]]


def test_processbench_bars(pb_reports, tmp_path):
    fig = plots.plot_processbench(pb_reports)
    (ax,) = fig.axes
    assert legend_texts(ax) == ["F1, tuned threshold", "F1, threshold 0.5", "Step AUROC"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["prm-a", "prm-b"]
    assert ax.get_xlabel() == "Process reward model" and ax.get_ylabel() == "Score (%)"
    heights = [round(patch.get_height(), 6) for patch in ax.patches]
    assert heights == [55.0, 35.0, 50.0, 30.0, 71.0, 0.0]
    check_saved(fig, tmp_path / "pb.png")


def test_compute_optimal(co_report, tmp_path):
    fig = plots.plot_compute_optimal(co_report)
    (ax,) = fig.axes
    assert ax.get_title() == ("Compute-optimal (oracle bins) vs single strategies\n"
                              "20 held-out problems (5-fold cross-fitting)")
    labels = legend_texts(ax)
    assert "compute_optimal" in labels and PASS_AT_N not in labels and "pass@N (ceiling)" not in labels
    check_saved(fig, tmp_path / "co.png")
