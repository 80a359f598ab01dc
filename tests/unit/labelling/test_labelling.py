"""Step labelling with a scripted policy: exact Monte-Carlo and oracle labels, batching, resume, config rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.io import read_jsonl
from data_prep.labels import read_step_labels
from data_prep.records import Problem, StepLabels, require_unique_ids
from data_prep.steps import FINAL_ANSWER_TEMPLATE, join_steps
from data_prep.synthetic import generate_problems, gold_steps
from inference.cli import main
from inference import generation
from inference.config import ConfigError, PolicyConfig, parse_config
from inference.labelling import (
    LabelBenchmarkConfig,
    LabelConfig,
    label,
    label_agreement,
    label_chunk,
    label_problems,
    load_label_problems,
)
from inference.strategies.common import call_seed
from inference.types import Completion
from tests.fakes import ScriptedGenerator

REPO = Path(__file__).resolve().parents[3]

ADD = Problem(id="add", problem="What is 2 + 3?", answer="5")
BOXED_5 = "Therefore, the final answer is: $\\boxed{5}$."
BOXED_6 = "Therefore, the final answer is: $\\boxed{6}$."

# Five sampled solutions: A (right), B (wrong from its second step), C (= A, a duplicate), D (cut off at
# max_tokens), E (ends without a boxed answer, so its last step is rolled out too).
SOLUTION_A = f"Start from 2.\n\nAdd 3 to get 5.\n\n{BOXED_5}"
SOLUTION_B = f"Start from 2.\n\nAdd 4 to get 6.\n\n{BOXED_6}"
SOLUTION_D = Completion("Start from 2.\n\nAdd 3 to", num_tokens=512, finish_reason="length")
SOLUTION_E = "Start from 2.\n\nI am not sure."

ADD_SCRIPT = {
    (ADD.problem, ""): [SOLUTION_A, SOLUTION_B, SOLUTION_A, SOLUTION_D, SOLUTION_E],
    # Rollouts (k = 4) from each distinct prefix; "Start from 2." is shared by A, B and E.
    (ADD.problem, "Start from 2.\n\n"): ["Add 3.\n\n" + BOXED_5, BOXED_6, "Hmm.", BOXED_6],
    (ADD.problem, "Start from 2.\n\nAdd 3 to get 5.\n\n"): [BOXED_5, BOXED_5, BOXED_5, BOXED_6],
    (ADD.problem, "Start from 2.\n\nAdd 4 to get 6.\n\n"): [BOXED_6, BOXED_6, "So 6.", BOXED_6],
    (ADD.problem, "Start from 2.\n\nI am not sure.\n\n"): [BOXED_5, "?", BOXED_5, BOXED_6],
}

TWO = Problem(id="two", problem="What is 1 + 1?", answer="2")
TWO_SCRIPT = {
    (TWO.problem, ""): ["One plus one.\n\nTherefore, the final answer is: $\\boxed{2}$."] * 5,
    (TWO.problem, "One plus one.\n\n"): ["$\\boxed{2}$", "$\\boxed{2}$", "$\\boxed{11}$", "$\\boxed{2}$"],
}


def config(tmp_path: Path, **overrides) -> LabelConfig:
    settings = dict(num_solutions=5, rollouts_per_step=4, output=str(tmp_path / "labels.jsonl"), chunk_size=2)
    settings.update(overrides)
    return LabelConfig(**settings)


def test_mc_labels_exact_hard_and_soft(tmp_path):
    generator = ScriptedGenerator({**ADD_SCRIPT, **TWO_SCRIPT})
    soft = label_chunk([ADD, TWO], generator, config(tmp_path, label_kind="soft"), chunk_index=0).rows
    assert [(row.meta["problem_id"], row.meta["solution_index"]) for row in soft] == [
        ("add", 0), ("add", 1), ("add", 4), ("two", 0)
    ]
    assert [row.labels for row in soft] == [
        [0.25, 0.75, 1.0],  # A: the last step is judged by its own answer (5: right)
        [0.25, 0.0, 0.0],   # B: no rollout from "Add 4 to get 6." reaches 5; its own answer 6 is wrong
        [0.25, 0.5],        # E: no boxed answer, so its last step is rolled out: 2 of 4 reach 5
        [0.75, 1.0],
    ]
    assert soft[0].completions == ["Start from 2.", "Add 3 to get 5.", BOXED_5]
    assert all(row.prompt == row_problem.problem for row, row_problem in zip(soft, [ADD, ADD, ADD, TWO]))
    hard = label_chunk([ADD, TWO], ScriptedGenerator({**ADD_SCRIPT, **TWO_SCRIPT}), config(tmp_path), 0).rows
    assert [row.labels for row in hard] == [[True, True, True], [True, False, False], [True, True], [True, True]]
    assert hard[1].meta["mc_values"] == [0.25, 0.0, 0.0]
    assert hard[1].meta["rollouts_per_step"] == 4


def test_mc_batches_all_prefixes_of_a_chunk_into_one_call(tmp_path):
    generator = ScriptedGenerator({**ADD_SCRIPT, **TWO_SCRIPT})
    result = label_chunk([ADD, TWO], generator, config(tmp_path, seed=7, temperature=0.6, max_tokens=64), chunk_index=3)
    assert len(generator.calls) == 2 and result.counts.generate_calls == 2
    sample, rollout = generator.calls
    assert [r.prefix for r in sample.requests] == ["", ""] and sample.n == 5 and sample.stop is None
    # Every distinct prefix of both problems, once each, in one call with n = k; last steps with a box are not rolled out.
    assert [(r.problem, r.prefix) for r in rollout.requests] == [
        (ADD.problem, "Start from 2.\n\n"),
        (ADD.problem, "Start from 2.\n\nAdd 3 to get 5.\n\n"),
        (ADD.problem, "Start from 2.\n\nAdd 4 to get 6.\n\n"),
        (ADD.problem, "Start from 2.\n\nI am not sure.\n\n"),
        (TWO.problem, "One plus one.\n\n"),
    ]
    assert rollout.n == 4 and rollout.stop is None
    assert (sample.params.seed, rollout.params.seed) == (call_seed(7, 6), call_seed(7, 7))
    assert (rollout.params.temperature, rollout.params.max_tokens) == (0.6, 64)
    assert (result.counts.dropped_truncated, result.counts.dropped_duplicates, result.counts.dropped_empty) == (1, 5, 0)


def test_dedupe_off_keeps_repeated_solutions(tmp_path):
    result = label_chunk([ADD], ScriptedGenerator(ADD_SCRIPT), config(tmp_path, dedupe_solutions=False), 0)
    assert [row.meta["solution_index"] for row in result.rows] == [0, 1, 2, 4]
    assert result.rows[2].labels == result.rows[0].labels


def corrupted_synthetic() -> tuple[Problem, list[str], list[str]]:
    """A level-2 synthetic problem, its gold steps, and a copy whose step 1 and final answer are off by one."""
    problem = generate_problems("train", 1, seed=0, levels=(2,))[0]
    gold = gold_steps(problem)
    wrong = list(gold)
    head, value = wrong[1].rsplit("= ", 1)
    wrong[1] = f"{head}= {int(value) + 1}"
    wrong[-1] = FINAL_ANSWER_TEMPLATE.format(answer=int(problem.answer) + 1)
    return problem, gold, wrong


def test_oracle_labeller_marks_first_wrong_step_onward(tmp_path):
    problem, gold, wrong = corrupted_synthetic()
    generator = ScriptedGenerator({(problem.problem, ""): [join_steps(gold), join_steps(wrong)]})
    rows = label_chunk([problem], generator, config(tmp_path, labeller="oracle", num_solutions=2, rollouts_per_step=8), 0).rows
    assert len(generator.calls) == 1  # sampling only: the oracle needs no rollouts
    assert rows[0].labels == [True, True, True, True]
    assert rows[1].labels == [True, False, False, False]
    assert rows[1].completions == wrong
    assert rows[1].meta == {"problem_id": problem.id, "solution_index": 1, "labeller": "oracle", "policy": "scripted-policy"}


def test_outcome_labeller_grades_the_answer_and_writes_outcome_rows_that_resume(tmp_path):
    cfg = config(tmp_path, labeller="outcome", chunk_size=1, rollouts_per_step=8)  # 8: the default, not an mc setting
    generator = ScriptedGenerator({**ADD_SCRIPT, **TWO_SCRIPT})
    rows = label_chunk([ADD], generator, cfg, 0).rows
    assert len(generator.calls) == 1  # sampling only: no rollouts
    # A right, B wrong, C a duplicate of A, D cut off: dropped; E states no answer: wrong.
    assert [(row.completions, row.labels, row.meta["outcome"]) for row in rows] == [
        (SOLUTION_A.split("\n\n"), [True] * 3, True),
        (SOLUTION_B.split("\n\n"), [False] * 3, False),
        (SOLUTION_E.split("\n\n"), [False] * 2, False),
    ]
    def stop_after_first_chunk(index, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_problems([ADD, TWO], ScriptedGenerator({**ADD_SCRIPT, **TWO_SCRIPT}), cfg,
                       on_chunk=stop_after_first_chunk)
    # TRL's unpaired-preference layout: the solution and one label (no per-step labels a step trainer could take).
    first = next(row for _, row in read_jsonl(cfg.output))
    assert set(first) == {"prompt", "completion", "label", "meta"}
    assert (first["completion"], first["label"]) == (SOLUTION_A, True)
    summary = label_problems([ADD, TWO], ScriptedGenerator({**ADD_SCRIPT, **TWO_SCRIPT}), cfg)  # resumes at TWO
    assert (summary.problems_done, summary.examples, summary.rows_written_now) == (2, 4, 1)
    assert [row.meta["outcome"] for row in read_step_labels(cfg.output, "outcome")] == [True, False, False, True]


def test_outcome_labeller_takes_no_mc_settings(tmp_path):
    with pytest.raises(ConfigError, match="rollouts_per_step=2 applies to labeller mc only"):
        LabelConfig(labeller="outcome", rollouts_per_step=2, output=str(tmp_path / "o.jsonl"))


def test_compare_oracle_records_oracle_labels_and_agreement(tmp_path):
    problem, gold, wrong = corrupted_synthetic()
    right_prefixes = {join_steps(gold[:i]) + "\n\n" for i in range(1, len(gold))}
    lucky = join_steps(wrong[:2]) + "\n\n"  # one rollout recovers after the wrong step: an mc/oracle disagreement

    def script(text: str, prefix: str, n: int) -> list[str]:
        if not prefix:
            return [join_steps(gold), join_steps(wrong)]
        first = FINAL_ANSWER_TEMPLATE.format(answer=problem.answer) if prefix in right_prefixes | {lucky} else "$\\boxed{-1}$"
        return [first] + ["$\\boxed{-1}$"] * (n - 1)

    cfg = config(tmp_path, num_solutions=2, compare_oracle=True)
    rows = label_chunk([problem], ScriptedGenerator(script), cfg, 0).rows
    assert [row.labels for row in rows] == [[True] * 4, [True, True, False, False]]
    assert [row.meta["oracle_labels"] for row in rows] == [[True] * 4, [True, False, False, False]]
    oracle_rows = [StepLabels(row.prompt, row.completions, row.meta["oracle_labels"]) for row in rows]
    assert label_agreement(rows, oracle_rows) == 7 / 8
    summary = label_problems([problem], ScriptedGenerator(script), cfg)
    assert (summary.oracle_agreement, summary.oracle_agreement_steps) == (7 / 8, 8)
    assert summary.oracle_confusion == {"both_true": 5, "mc_only_true": 1, "oracle_only_true": 0, "both_false": 2}


def test_label_agreement_counts_soft_labels_above_zero_as_true():
    mc = [{"prompt": "p", "completions": ["a", "b", "c"], "labels": [0.25, 0.0, 1.0]}]
    oracle = [StepLabels("p", ["a", "b", "c"], [True, True, True])]
    assert label_agreement(mc, oracle) == 2 / 3
    with pytest.raises(ValueError, match="different steps"):
        label_agreement(mc, [StepLabels("p", ["a", "x", "c"], [True, True, True])])
    with pytest.raises(ValueError, match="1 mc rows but 0 oracle rows"):
        label_agreement(mc, [])


def per_problem_script(problems: list[Problem]):
    """Each problem: one right two-step solution; rollouts from its first step all reach the answer."""
    def script(text: str, prefix: str, n: int) -> list[str]:
        problem = next(p for p in problems if p.problem == text)
        if problem.id == "p2" and not prefix:  # p2's only solution is cut off: no row, but still done
            return [Completion("Begin", num_tokens=16, finish_reason="length")] * n
        if not prefix:
            return [f"Begin.\n\nTherefore, the final answer is: $\\boxed{{{problem.answer}}}$."] * n
        return [f"$\\boxed{{{problem.answer}}}$"] * n
    return script


def test_resume_skips_done_problems_and_writes_no_duplicates(tmp_path):
    problems = [Problem(id=f"p{i}", problem=f"Problem {i}?", answer=str(i)) for i in range(5)]
    cfg = config(tmp_path, num_solutions=1, rollouts_per_step=2, chunk_size=2)

    def stop_after_first_chunk(index, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_problems(problems, ScriptedGenerator(per_problem_script(problems)), cfg, on_chunk=stop_after_first_chunk)
    assert [row["meta"]["problem_id"] for _, row in read_jsonl(cfg.output)] == ["p0", "p1"]
    generator = ScriptedGenerator(per_problem_script(problems))
    summary = label_problems(problems, generator, cfg)
    # Chunk 1 (p2, p3) and chunk 2 (p4): two calls each, seeds by chunk index as in an uninterrupted run.
    assert [[r.problem for r in call.requests] for call in generator.calls[::2]] == [
        ["Problem 2?", "Problem 3?"], ["Problem 4?"]
    ]
    assert [call.params.seed for call in generator.calls] == [call_seed(0, i) for i in (2, 3, 4, 5)]
    rows = read_step_labels(cfg.output)
    assert [row.meta["problem_id"] for row in rows] == ["p0", "p1", "p3", "p4"]
    assert all(row.labels == [True, True] for row in rows)
    assert (summary.problems_done, summary.examples, summary.steps, summary.dropped_truncated) == (5, 4, 8, 1)
    assert summary.rows_written_now == 2 and summary.positive_step_fraction == 1.0
    assert json.loads(Path(cfg.output_paths()["summary"]).read_text())["examples"] == 4
    # A third run finds everything done (p2 has no rows, but its chunk is in the progress log).
    again = ScriptedGenerator(per_problem_script(problems))
    assert label_problems(problems, again, cfg).rows_written_now == 0 and again.calls == []


def test_resume_drops_an_incomplete_last_line(tmp_path):
    problems = [Problem(id=f"p{i}", problem=f"Problem {i}?", answer=str(i)) for i in (0, 1)]
    cfg = config(tmp_path, num_solutions=1, rollouts_per_step=2, chunk_size=1)
    label_problems(problems[:1], ScriptedGenerator(per_problem_script(problems)), cfg)
    with open(cfg.output, "a", encoding="utf-8") as handle:
        handle.write('{"prompt": "Problem 1?", "compl')  # a write cut off by a kill
    label_problems(problems, ScriptedGenerator(per_problem_script(problems)), cfg)
    assert [row.meta["problem_id"] for row in read_step_labels(cfg.output)] == ["p0", "p1"]


def test_resume_with_other_settings_is_refused(tmp_path):
    problems = [Problem(id="p0", problem="Problem 0?", answer="0")]
    cfg = config(tmp_path, num_solutions=1, rollouts_per_step=2)
    label_problems(problems, ScriptedGenerator(per_problem_script(problems)), cfg)
    changed = config(tmp_path, num_solutions=1, rollouts_per_step=3)
    with pytest.raises(ConfigError, match="rollouts_per_step: 2 -> 3"):
        label_problems(problems, ScriptedGenerator(per_problem_script(problems)), changed)
    # Engine settings and the chunk size may change between runs.
    resumed = config(tmp_path, num_solutions=1, rollouts_per_step=2, chunk_size=5)
    assert label_problems(problems, ScriptedGenerator(per_problem_script(problems)), resumed).examples == 1
    # A job written before a key existed (here policy.prompt_date) resumes; a changed value of it would not.
    saved = cfg.output_paths()["config"]
    saved.write_text(saved.read_text(encoding="utf-8").replace("  prompt_date: 26 Jul 2024\n", ""), encoding="utf-8")
    assert "prompt_date" not in saved.read_text(encoding="utf-8")
    assert label_problems(problems, ScriptedGenerator(per_problem_script(problems)), resumed).examples == 1
    with pytest.raises(ConfigError, match="policy.prompt_date: '26 Jul 2024' -> '01 Jan 2030'"):
        redated = config(tmp_path, num_solutions=1, rollouts_per_step=2, policy=PolicyConfig(prompt_date="01 Jan 2030"))
        label_problems(problems, ScriptedGenerator(per_problem_script(problems)), redated)


def test_oracle_on_a_non_synthetic_problem_names_it(tmp_path):
    generator = ScriptedGenerator({(ADD.problem, ""): [SOLUTION_A]})
    cfg = config(tmp_path, labeller="oracle", num_solutions=1, rollouts_per_step=8)
    with pytest.raises(ValueError, match="problem 'add': the oracle labels synthetic-world problems only"):
        label_chunk([ADD], generator, cfg, 0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"labeller": "oracle", "rollouts_per_step": 4}, "rollouts_per_step=4 applies to labeller mc only"),
        ({"labeller": "oracle", "label_kind": "soft"}, "label_kind='soft' applies to labeller mc only"),
        ({"labeller": "oracle", "benchmark": LabelBenchmarkConfig("math500")}, "labeller oracle needs a synthetic benchmark"),
        ({"compare_oracle": True, "benchmark": LabelBenchmarkConfig("gsm8k")}, "compare_oracle needs a synthetic benchmark"),
        ({"output": "labels.parquet"}, "must be a .jsonl file"),
        ({"rollouts_per_step": 0}, "rollouts_per_step must be >= 1, got 0"),
    ],
)
def test_config_rules(overrides, message):
    with pytest.raises(ConfigError, match=message):
        LabelConfig(**overrides)


def test_benchmark_rules():
    with pytest.raises(ConfigError, match="benchmark.num_per_level applies to synthetic-train and synthetic-test only"):
        LabelBenchmarkConfig("math500", num_per_level=3)
    with pytest.raises(ConfigError, match="benchmark.path does not apply to synthetic-train"):
        LabelBenchmarkConfig("synthetic-train", path="x.jsonl")


def test_synthetic_train_problems_come_from_the_world_generator():
    problems = load_label_problems(LabelBenchmarkConfig("synthetic-train", num_per_level=2, seed=3, limit=7))
    assert problems == generate_problems("train", 2, seed=3)[:7]
    assert problems[0].id == "synthetic/train/L1/0"


def test_repeated_problem_ids_are_refused_by_the_check_run_and_label_share():
    repeated = [ADD, TWO, Problem(id="add", problem="What is 2 + 2?", answer="4")]
    with pytest.raises(ValueError, match=r"^benchmark mine: problem ids repeat \(\['add'\]\); ids must be unique$"):
        require_unique_ids(repeated, "benchmark mine")
    require_unique_ids([ADD, TWO], "benchmark mine")  # distinct ids pass


def test_label_names_a_missing_policy_like_run_does(tmp_path, monkeypatch):
    def not_found(backend, model, **options):
        raise OSError(f"{model} is not a folder\n(more detail)")

    monkeypatch.setattr(generation, "load_generator", not_found)
    cfg = config(tmp_path, labeller="oracle", benchmark=LabelBenchmarkConfig("synthetic-train", limit=1),
                 policy=PolicyConfig(model_name_or_path=str(tmp_path / "missing")), rollouts_per_step=8)
    with pytest.raises(FileNotFoundError, match="is neither a local directory nor a model in the local Hugging Face "
                                                r"cache \(.*missing is not a folder\); point it at a checkpoint"):
        label(cfg)


@pytest.mark.parametrize(("name", "labeller"), [("tiny_mc", "mc"), ("tiny_oracle", "oracle"), ("math500_mc", "mc"),
                                               ("tiny_outcome", "outcome")])
def test_shipped_configs_parse(name, labeller):
    cfg = parse_config(LabelConfig, REPO / "configs" / "label" / f"{name}.yaml", {})
    assert cfg.output.endswith(f"{name}.jsonl")
    assert cfg.labeller == labeller


def test_label_reports_config_errors_in_one_line(tmp_path, capsys):
    assert main(["label", "--num_solutions", "0", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == "ttc-infer: error: command line: num_solutions must be >= 1, got 0"
    assert main(["label", "--rollouts_per_stepp", "4"]) == 2
    assert "flag --rollouts_per_stepp is not known" in capsys.readouterr().err
