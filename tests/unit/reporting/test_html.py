"""The HTML report is one self-contained page: headline numbers, embedded PNGs, tables, config."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

from inference.evaluation.compute_optimal import EqualBudgetGap
from inference.evaluation.metrics import MetricPoint
from inference.reporting.html import build_report, headline, render_html, render_table


def point(strategy: str, n: int, accuracy: float, *, beam_width: int | None = None) -> MetricPoint:
    return MetricPoint(strategy, n, None, None, accuracy, None, 100.0 * n, 0.0, None, 50, beam_width=beam_width)


def test_headline_from_hand_made_points():
    points = [
        point("majority", 1, 0.30), point("majority", 16, 0.45), point("weighted_best_of_n", 16, 0.55),
        point("beam_search", 4, 0.50, beam_width=4), point("pass@n", 16, 0.80),
    ]
    lines = headline(points, references={"Llama-3.1-8B greedy": 0.50, "Llama-3.1-70B greedy": 0.68})
    assert lines == [
        "Best accuracy: weighted_best_of_n at N=16: 55.0% on 50 problems.",
        "One sample (N=1): 30.0%.",
        "Ceiling pass@16 (any correct among 16 samples): 80.0%.",
        "Llama-3.1-8B greedy (50.0%) is matched by beam_search (M=4) at N=4 (50.0%).",
        "Llama-3.1-70B greedy (68.0%) is not matched by any strategy up to N=16.",
    ]


def test_headline_names_another_verifier_that_reaches_a_reference_the_main_prm_misses():
    main = [point("majority", 16, 0.45), point("weighted_best_of_n", 16, 0.55), point("pass@n", 16, 0.9)]
    others = {
        "main-prm": main,
        "large-likelihood": [point("best_of_n", 4, 0.58), point("best_of_n", 8, 0.70), point("pass@n", 8, 0.9)],
        "synthetic-checker": [point("beam_search", 4, 0.85, beam_width=4)],  # a ceiling: never "matches"
        "weak": [point("best_of_n", 16, 0.50)],
    }
    lines = headline(main, references={"large greedy": 0.6}, other_verifiers=others)
    assert lines[-2:] == [
        "large greedy (60.0%) is not matched by any strategy with the main PRM up to N=16.",
        "With large-likelihood as verifier, large greedy is matched by best_of_n at N=8 (70.0%).",
    ]


def test_render_table_escapes_and_formats():
    table = render_table([{"strategy": "<b>x</b>", "acc": 0.123456}, {"strategy": "y", "extra": None}])
    assert "&lt;b&gt;x&lt;/b&gt;" in table and "<td>0.1235</td>" in table
    assert "<th>strategy</th><th>acc</th><th>extra</th>" in table


def test_render_html_embeds_png_bytes():
    png = b"\x89PNG-bytes"
    page = render_html(title="T & U", headline=["55.0% at N=16"], figures={"fig": png}, config={"seed": 1})
    assert "<title>T &amp; U</title>" in page and "<li>55.0% at N=16</li>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "&quot;seed&quot;: 1" in page


def test_build_report_is_self_contained(run, co_report, pb_reports, tmp_path):
    rows, _, points = run
    path = build_report(
        tmp_path / "report", points=points, references={"Llama-3.1-8B greedy": 0.6},
        prm_points={"prm-a": points, "prm-b": points}, processbench=pb_reports, compute_optimal=[co_report],
        config={"policy": "tiny-policy", "num_subsamples": 32}, dpi=40,
    )
    assert path == tmp_path / "report" / "report.html"
    page = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # vs N, vs FLOPs, per level, PRM comparison, ProcessBench, compute-optimal.
    assert len(images) == 6
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert len(list((tmp_path / "report" / "figures").glob("*.png"))) == 6
    for line in headline(points, references={"Llama-3.1-8B greedy": 0.6}, compute_optimal=[co_report],
                         processbench=pb_reports):
        assert line.replace("'", "&#x27;") in page
    best = max((p for p in points if p.level is None and p.strategy != "pass@n"), key=lambda p: p.accuracy)
    assert f"{100 * best.accuracy:.1f}%" in page
    assert "tiny-policy" in page and "Router (oracle bins)" in page and "ProcessBench-style PRM evaluation" in page


def test_headline_and_table_of_equal_budget_gaps(run, co_report, tmp_path):
    _, _, points = run
    gaps = (EqualBudgetGap(4, "majority", 0.10, 0.02, 0.18, 50),  # ahead: the interval is above 0
            EqualBudgetGap(4, "beam_search (M=4)", -0.04, -0.12, 0.04, 50),  # within noise
            EqualBudgetGap(16, "majority", -0.06, -0.10, -0.02, 50))  # behind
    report = replace(co_report, gaps=gaps)
    lines = headline(points, compute_optimal=[report])
    assert any(line.endswith("against each single strategy at equal N (3 paired comparisons, 95% intervals): ahead "
                             "in 1, behind in 1, within noise in 1; its largest shortfall is -6.0 points against "
                             "majority at N=16 (-10.0 to -2.0).") for line in lines)
    page = build_report(tmp_path / "r", points=points, compute_optimal=[report], dpi=40).read_text()
    assert "Compute-optimal minus each single strategy at equal N, points [95% interval] (oracle bins)" in page
    assert "+10.0 [+2.0, +18.0]" in page and "-4.0 [-12.0, +4.0]" in page
