"""Step labels made with the policy (Math-Shepherd Monte-Carlo rollouts, or the synthetic oracle) -> stepwise rows.

For each problem the policy samples `num_solutions` solutions (one generate call per chunk of problems). The
`mc` labeller then rolls out `rollouts_per_step` completions from every step prefix of every kept solution, all
prefixes of a chunk in one generate call (identical prefixes of one problem share their rollouts), and grades
each rollout's final boxed answer against the gold answer:

- step i (not the last): soft label = fraction of rollouts from `steps[:i+1]` that reach the gold answer,
  hard label = at least one does;
- the last step of a solution that states a boxed answer: its prefix is the whole solution, so its label is
  whether that answer is correct (1.0 / 0.0). A last step without a boxed answer is rolled out like any other;
- solutions cut off at `max_tokens` are dropped (their last step is unfinished), as are empty ones and, with
  `dedupe_solutions`, repeats of an earlier solution of the same problem. The summary counts all of them.

The `oracle` labeller (synthetic world) labels the same kind of sampled solutions with the exact checker: True
before the first wrong step, False from it on. Rows are `{prompt, completions, labels, meta}` with prompt = the
raw problem text (what `data_prep.labels.tokenize_steps` and the token-classification PRM put before the steps).

Modules, one job each: `config` (LabelConfig), `sampling` (problems, sampled solutions, grading), `monte_carlo`
(rollout step values), `oracle` (exact checker labels), `chunk` (one chunk's rows), `tally` (totals, summary,
agreement) and `job` (the resumable chunked job). `ttc-infer label` (inference.cli) is the command line.
"""

from __future__ import annotations

from inference.labelling.chunk import ChunkResult, label_chunk
from inference.labelling.config import LabelBenchmarkConfig, LabelConfig
from inference.labelling.job import label, label_problems
from inference.labelling.monte_carlo import mc_step_values
from inference.labelling.oracle import oracle_step_labels
from inference.labelling.sampling import Solution, grade, load_label_problems, sample_label_solutions
from inference.labelling.tally import LabelSummary, label_agreement

__all__ = [
    "ChunkResult",
    "LabelBenchmarkConfig",
    "LabelConfig",
    "LabelSummary",
    "Solution",
    "grade",
    "label",
    "label_agreement",
    "label_chunk",
    "label_problems",
    "load_label_problems",
    "mc_step_values",
    "oracle_step_labels",
    "sample_label_solutions",
]
