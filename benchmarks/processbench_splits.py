"""ProcessBench-style F1 of several PRMs on one labelled file, beyond one fit/eval split: paired intervals by record.

`ttc-infer processbench` tunes the threshold on one seeded half of the records and reports F1 on the other half,
so with ~100 records per half a handful of solutions moves F1 by 0.1. This script scores every PRM once and
reports, per PRM: the one-split figures `processbench` prints (seed 0), F1 cross-fitted (threshold tuned on each
half, measured on the other, averaged) over many seeded splits, and step AUROC on all records; and, against the
first PRM named, the paired difference of both with a 95% interval from a bootstrap over records (the same
resampled records for both PRMs).

    python benchmarks/processbench_splits.py --data runs/default/labels/test_oracle.jsonl \\
        --prms '{"policy-large-likelihood": "checkpoints/policy-large:lm_likelihood",
                 "prm-likelihood-head": "runs/default/prm-likelihood-head"}'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.evaluation.processbench import (  # noqa: E402
    ScoredRecord,
    evaluate_scores,
    metrics_at,
    score_records,
    split_ids,
    step_auroc,
    tune_threshold,
)
from inference.evaluation.processbench_job import load_records  # noqa: E402


def cross_fitted_f1(scored: Sequence[ScoredRecord], seed: int) -> float:
    """Threshold tuned on each half of a seeded split and F1 measured on the other half, averaged."""
    by_id = {item.record.id: item for item in scored}
    first, second = split_ids(by_id, fit_fraction=0.5, seed=seed)
    halves = [[by_id[i] for i in first], [by_id[i] for i in second]]
    return float(np.mean([metrics_at(halves[1 - k], tune_threshold(halves[k])).f1 for k in (0, 1)]))


def summary(scored: Sequence[ScoredRecord], splits: int) -> dict[str, float]:
    one_split = evaluate_scores(scored, seed=0)
    return {"f1_seed0": one_split.tuned.f1, "step_auroc_seed0": one_split.step_auroc,
            "f1_cross_fitted": float(np.mean([cross_fitted_f1(scored, seed) for seed in range(splits)])),
            "step_auroc": step_auroc(scored)}


def paired_bootstrap(a: Sequence[ScoredRecord], b: Sequence[ScoredRecord], *, resamples: int, splits: int,
                     seed: int) -> dict[str, tuple[float, float, float]]:
    """(difference, low, high) of a minus b for cross-fitted F1 and step AUROC, records resampled with replacement."""
    rng = np.random.default_rng(seed)
    by_id_b = {item.record.id: item for item in b}
    paired = [(item, by_id_b[item.record.id]) for item in a]
    draws: dict[str, list[float]] = {"f1_cross_fitted": [], "step_auroc": []}
    for _ in range(resamples):
        picked = rng.integers(0, len(paired), len(paired))
        # Resampled copies get distinct ids, so the split treats each draw as its own record.
        sample_a, sample_b = [], []
        for copy, index in enumerate(picked):
            for out, item in ((sample_a, paired[index][0]), (sample_b, paired[index][1])):
                record = type(item.record)(f"{item.record.id}#{copy}", item.record.problem, item.record.steps,
                                           item.record.label)
                out.append(ScoredRecord(record, item.step_scores))
        draws["f1_cross_fitted"].append(np.mean([cross_fitted_f1(sample_a, s) - cross_fitted_f1(sample_b, s)
                                                 for s in range(splits)]))
        auroc_a, auroc_b = step_auroc(sample_a), step_auroc(sample_b)
        if auroc_a is not None and auroc_b is not None:
            draws["step_auroc"].append(auroc_a - auroc_b)
    point = {"f1_cross_fitted": float(np.mean([cross_fitted_f1(a, s) - cross_fitted_f1(b, s) for s in range(splits)])),
             "step_auroc": float(step_auroc(a) - step_auroc(b))}
    return {key: (point[key], float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
            for key, values in draws.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ProcessBench file or oracle step-label file (told by content)")
    parser.add_argument("--prms", required=True, help='JSON {name: "path" or "path:prm_style"}; the first is the baseline')
    parser.add_argument("--splits", type=int, default=20, help="seeded fit/eval splits averaged per figure")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of the records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json_out", help="also write the figures here")
    args = parser.parse_args(argv)

    from inference.scoring import load_scorer

    records = load_records(args.data)
    scored = {}
    for name, spec in json.loads(args.prms).items():
        path, _, style = spec.partition(":")
        scored[name] = score_records(load_scorer(path, prm_style=style or None, device="cpu"), records)
    names = list(scored)
    results = {name: summary(scored[name], args.splits) for name in names}
    print(f"{len(records)} records from {args.data}; F1 cross-fitted over {args.splits} splits")
    print("| PRM | F1 (seed-0 split) | step AUROC (seed-0 eval half) | F1 cross-fitted | step AUROC (all) |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        r = results[name]
        print(f"| {name} | {r['f1_seed0']:.3f} | {r['step_auroc_seed0']:.4f} | {r['f1_cross_fitted']:.3f} | "
              f"{r['step_auroc']:.4f} |")
    for name in names[1:]:
        paired = paired_bootstrap(scored[name], scored[names[0]], resamples=args.resamples, splits=args.splits,
                                  seed=args.seed)
        results[name]["minus_" + names[0]] = paired
        print(f"{name} minus {names[0]}: " + "; ".join(
            f"{key} {d:+.3f} (95% CI {lo:+.3f} to {hi:+.3f})" for key, (d, lo, hi) in paired.items()))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
