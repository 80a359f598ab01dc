"""The HTML report is one self-contained page: headline numbers, embedded PNGs, tables, config."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

import pytest

from inference.evaluation.compute_optimal import EqualBudgetGap
from inference.evaluation.evaluations import ModelEvaluation
from inference.evaluation.metrics import MetricPoint, ProblemOutcome, aggregate
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


PROBLEMS = ("q0", "q1", "q2", "q3", "q4")


def evaluation(prm: str, **arms: tuple[float, ...]) -> ModelEvaluation:
    """One outcome per problem for each arm '<strategy>_<N>' (beam search with M=4)."""
    outcomes = []
    for arm, accuracies in arms.items():
        strategy, n = arm.rsplit("_", 1)
        beam_width = 4 if strategy == "beam_search" else None
        outcomes += [ProblemOutcome(pid, 1, strategy, int(n), beam_width, accuracy, None, 10.0, 0.0)
                     for pid, accuracy in zip(PROBLEMS, accuracies, strict=True)]
    return ModelEvaluation("small", prm, tuple(outcomes), tuple(aggregate(outcomes)))


MAIN = evaluation("prm-a", majority_4=(0, 0, 0, 0.5, 1), weighted_best_of_n_4=(1, 0, 0, 0.5, 1),
                  best_of_n_4=(1, 1, 1, 1, 0), best_of_n_8=(0, 0, 0, 0.5, 0), beam_search_4=(1, 0, 1, 0, 1))
OTHER = evaluation("likelihood", weighted_best_of_n_4=(1, 1, 1, 1, 1))
REFERENCES = {"large greedy": 0.6, "huge greedy": 1.0}
REFERENCE_OUTCOMES = {"large greedy": dict(zip(PROBLEMS, (0, 1, 1, 0, 1))), "huge greedy": dict.fromkeys(PROBLEMS, 1)}


def paired_headline(reference_outcomes=REFERENCE_OUTCOMES) -> list[str]:
    return headline(MAIN.points, references=REFERENCES, main_prm="prm-a", reference_outcomes=reference_outcomes,
                    other_verifiers={"prm-a": MAIN.points, "likelihood": OTHER.points},
                    evaluations={"prm-a": MAIN, "likelihood": OTHER})


def test_headline_claims_carry_paired_intervals_worded_by_them():
    assert paired_headline() == [
        # best-of-N at N=4 - large greedy: 1, 0, 0, 1, -1 -> mean 0.2, sample variance 0.7, standard error
        # sqrt(0.14) = 0.37417, half width 0.73337; - huge greedy: 0, 0, 0, 0, -1 -> mean -0.2, variance 0.2,
        # standard error 0.2, half width 0.392.
        "Best accuracy: best_of_n at N=4: 80.0% on 5 problems (within noise of large greedy: +20.0 points, 95% CI "
        "-53.3 to +93.3, n=5; within noise of huge greedy: -20.0 points, 95% CI -59.2 to +19.2, n=5).",
        # 1, 0, 0, 0, 0 -> mean 0.2, variance 0.2, half width 0.392 (the tree budget is beam search's N=4).
        "Weighted best-of-N vs majority at N=4: 50.0% vs 30.0% (within noise of majority: +20.0 points, 95% CI "
        "-19.2 to +59.2, n=5).",
        # 1, 1, 1, 0.5, 0 -> mean 0.7, variance 0.2, half width 0.392: above zero.
        "With likelihood as verifier, weighted best-of-N vs majority at N=4: 100.0% vs 30.0% (ahead of majority: "
        "+70.0 points, 95% CI +30.8 to +109.2, n=5).",
        # -1, -1, -1, -0.5, 0 -> mean -0.7: below zero.
        "Best-of-N at N=8: 10.0% (behind its 80.0% at N=4: -70.0 points, 95% CI -109.2 to -30.8, n=5).",
        "large greedy (60.0%) is matched by best_of_n at N=4 (80.0%; within noise of it: +20.0 points, 95% CI -53.3 "
        "to +93.3, n=5).",
        "huge greedy (100.0%) is not matched by any strategy with the main PRM up to N=8.",
        # Equal on every problem: a zero-width interval at zero, within noise.
        "With likelihood as verifier, huge greedy is matched by weighted_best_of_n at N=4 (100.0%; within noise of "
        "it: +0.0 points, 95% CI +0.0 to +0.0, n=5).",
    ]


def test_headline_refuses_a_reference_on_other_problems_and_one_it_does_not_draw():
    shifted = dict(REFERENCE_OUTCOMES, **{"large greedy": dict(zip(("q1", "q2", "q3", "q4", "q5"), (0, 1, 1, 0, 1)))})
    with pytest.raises(ValueError, match=r"cannot pair best_of_n at N=4 \(prm-a\) \(5 problems\) with large greedy "
                                         r"\(5 problems\): their problem sets differ"):
        paired_headline(shifted)
    with pytest.raises(ValueError, match=r"reference_outcomes names \['tiny greedy'\], which are not in references"):
        paired_headline({"tiny greedy": REFERENCE_OUTCOMES["large greedy"]})


def test_without_a_tree_search_weighted_best_of_n_meets_majority_at_the_largest_n_both_ran():
    sampled = evaluation("prm-a", majority_4=(0, 0, 0, 0.5, 1), majority_8=(0, 0, 1, 0.5, 1),
                         weighted_best_of_n_4=(1, 0, 0, 0.5, 1), weighted_best_of_n_8=(1, 1, 1, 0.5, 1))
    # 1, 1, 0, 0, 0 -> mean 0.4, sample variance 0.3, standard error sqrt(0.06) = 0.24495, half width 0.4801.
    assert headline(sampled.points, evaluations={"prm-a": sampled}, main_prm="prm-a") == [
        "Best accuracy: weighted_best_of_n at N=8: 90.0% on 5 problems.",
        "Weighted best-of-N vs majority at N=8: 90.0% vs 50.0% (within noise of majority: +40.0 points, 95% CI -8.0 "
        "to +88.0, n=5).",
    ]
