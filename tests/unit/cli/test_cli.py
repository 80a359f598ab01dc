"""`ttc-infer` entry point in process: help, exit codes and one-line errors, default subcommand, merge, delegation."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest

import inference.cli as cli
from inference.config_engine import KeyedSettings, KeyedValues
import inference.runner as runner
from inference.results import append_results, read_results
from tests.fakes import ScriptedGenerator, TablePRMScorer
from tests.unit.cli.test_results import make_row
from tests.unit.cli.test_runner import problems, script, scores


def test_run_help_lists_every_key_with_its_docstring(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--benchmark.name_or_path", "--policy.gpu_memory_utilization", "--prm.prm_style", "--sweep.max_n",
                 "--sweep.min_n_by_strategy.dvts", "--strategies.beam_search.beam_width",
                 "--strategies.majority.score_with_prm", "--shard", "--chunk_size", "--share_samples"):
        assert flag in out
    assert "continuations generated from each kept partial" in out  # beam_width's attribute docstring
    assert "Problems per strategy call" in out  # chunk_size's
    assert "--strategies.best_of_n.beam_width" not in out
    assert "--strategies.best_of_n.n " not in out and "--strategies.best_of_n.seed" not in out


def test_top_level_help_lists_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "{run,merge,eval,report,label,processbench}" in out and "merge shard result files" in out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ttc-infer: error: ")
    return err[0]


def test_unknown_flag_is_a_one_line_usage_error(capsys):
    assert cli.main(["run", "--policy.batch_sise", "4"]) == 2
    assert "flag --policy.batch_sise is not known; did you mean 'batch_size'" in one_line_error(capsys)


def test_unknown_flag_without_subcommand(capsys):
    assert cli.main(["--strategies.best_of_n.beam_width=4"]) == 2
    assert "'beam_width' for strategy 'best_of_n' is not known" in one_line_error(capsys)


def test_section_given_a_whole_value_is_an_error_not_ignored(capsys):
    # A bare --strategies JSON / --policy VALUE once parsed as an unknown extra and was dropped without a word.
    assert cli.main(["run", "--strategies", '{"majority": {"temperature": 0.5}}']) == 2
    assert "--strategies is a section; set one setting per flag" in one_line_error(capsys)
    assert cli.main(["run", "--policy", "checkpoints/policy-small"]) == 2
    assert "--policy is a section; set its keys" in one_line_error(capsys)


def test_bad_value_and_stray_argument_exit_2(capsys):
    assert cli.main(["run", "--seed", "x"]) == 2
    assert "--seed): expected an integer, got 'x'" in one_line_error(capsys)
    assert cli.main(["run", "stray"]) == 2
    assert "unexpected argument 'stray'" in one_line_error(capsys)
    assert cli.main(["run", "--log_level", "loud"]) == 2
    assert "invalid choice: 'loud'" in one_line_error(capsys)


def test_malformed_yaml_exit_2_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\npolicy: {dtype: float32\n", encoding="utf-8")
    assert cli.main(["--config", str(path)]) == 2
    assert f"{path}:3: malformed YAML" in one_line_error(capsys)


@pytest.fixture(autouse=True)
def no_prm_path_check(monkeypatch):
    monkeypatch.setattr(runner, "check_prm_path", lambda config: None)


@pytest.fixture
def fake_models(monkeypatch):
    monkeypatch.setattr(runner, "load_problems", lambda config: runner.select_shard(problems(), config.shard))
    monkeypatch.setattr(runner, "build_generator", lambda config: ScriptedGenerator(script))
    monkeypatch.setattr(runner, "build_scorer", lambda config: TablePRMScorer(scores))


def test_no_subcommand_means_run_and_writes_config_and_results(tmp_path, capsys, fake_models):
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: {tmp_path / 'out'}\nsweep:\n  max_n: 4\n  strategies: [best_of_n, dvts]\n", encoding="utf-8")
    assert cli.main(["--config", str(config), "--shard", "1/2"]) == 0
    out = capsys.readouterr().out
    results = tmp_path / "out" / "results.shard-1-of-2.jsonl"
    assert f"results: {results} (8 rows written, 0 already there)" in out
    assert sorted({r.problem_id for r in read_results(results)}) == ["p1", "p3"]
    copy = tmp_path / "out" / "config.shard-1-of-2.yaml"
    resolved = cli.parse_config(cli.RunConfig, copy, {})
    assert resolved.shard == "1/2" and resolved.sweep.strategies == ("best_of_n", "dvts")
    assert cli.main(["run", "--config", str(copy)]) == 0
    assert "(0 rows written, 8 already there)" in capsys.readouterr().out


def test_runtime_error_exit_1_one_line(tmp_path, capsys, monkeypatch):
    def broken(config):
        raise FileNotFoundError("runs/default/prm is not a directory")

    monkeypatch.setattr(runner, "load_problems", lambda config: problems())
    monkeypatch.setattr(runner, "build_generator", broken)
    assert cli.main(["run", "--output_dir", str(tmp_path)]) == 1
    assert one_line_error(capsys) == "ttc-infer: error: runs/default/prm is not a directory"


def test_sigterm_and_ctrl_c_exit_with_a_resume_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "load_problems", lambda config: problems())
    for stop, code in ((cli.Terminated(), 143), (KeyboardInterrupt(), 130)):
        def interrupted(config, stop=stop):
            raise stop

        monkeypatch.setattr(runner, "build_generator", interrupted)
        assert cli.main(["run", "--output_dir", str(tmp_path)]) == code
        assert "rerun the same command to resume" in capsys.readouterr().err


def test_merge_subcommand(tmp_path, capsys):
    append_results(tmp_path / "results.shard-0-of-2.jsonl", [make_row("p0"), make_row("p1")])
    append_results(tmp_path / "results.shard-1-of-2.jsonl", [make_row("p1"), make_row("p2")])
    out = tmp_path / "merged.jsonl"
    assert cli.main(["merge", "--inputs", str(tmp_path / "results.shard-*.jsonl"), "--out", str(out)]) == 0
    assert f"merged 2 files into {out}: 3 rows, 1 exact duplicates dropped" in capsys.readouterr().out
    append_results(tmp_path / "other.jsonl", [make_row("p2", seconds=5.0)])
    assert cli.main(["merge", "--inputs", str(tmp_path / "results.shard-1-of-2.jsonl"), str(tmp_path / "other.jsonl"),
                     "--out", str(tmp_path / "m2.jsonl")]) == 1
    assert "differ in compute.seconds" in one_line_error(capsys)
    assert cli.main(["merge", "--out", str(out)]) == 2
    assert "merge needs --inputs" in one_line_error(capsys)


@dataclasses.dataclass(frozen=True)
class FakeEvalConfig:
    """Evaluate."""

    inputs: tuple[str, ...] = ()
    """Result files."""
    num_subsamples: int = 32
    """Subsamples per N."""


def test_delegated_subcommand_parses_its_config_and_calls_the_library(monkeypatch, capsys):
    calls = []
    module = types.ModuleType("fake_evaluation")
    module.EvalConfig = FakeEvalConfig
    module.evaluate = lambda config: calls.append(config) or "metrics.json"
    monkeypatch.setitem(sys.modules, "fake_evaluation", module)
    monkeypatch.setitem(cli.DELEGATED, "eval", ("fake_evaluation", "EvalConfig", "evaluate", "evaluate"))
    assert cli.main(["eval", "--inputs", "a.jsonl", "b.jsonl", "--num_subsamples", "8"]) == 0
    assert calls == [FakeEvalConfig(inputs=("a.jsonl", "b.jsonl"), num_subsamples=8)]
    assert "eval: metrics.json" in capsys.readouterr().out
    assert cli.main(["eval", "--num_subsample", "8"]) == 2
    assert "did you mean 'num_subsamples'" in one_line_error(capsys)


def test_missing_delegate_is_a_clear_runtime_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.DELEGATED, "report", ("no_such_module_xyz", "ReportConfig", "report", "report"))
    assert cli.main(["report"]) == 1
    assert "No module named 'no_such_module_xyz'" in one_line_error(capsys)


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"], ["run", "--help"]])
def test_a_delegate_that_fails_to_import_fails_help_loudly(monkeypatch, capsys, argv):
    # Help once left a broken subcommand's flags out without a word; now the import error is the answer.
    monkeypatch.setitem(cli.DELEGATED, "report", ("no_such_module_xyz", "ReportConfig", "report", "report"))
    assert cli.main(argv) == 1
    assert "No module named 'no_such_module_xyz'" in one_line_error(capsys)


@dataclasses.dataclass(frozen=True)
class Knob:
    """Settings of one knob."""

    level: int = 1
    """How far the knob is turned."""
    seed: int = 0
    """Filled in by the caller."""


@dataclasses.dataclass(frozen=True)
class HookedConfig:
    """A config whose mapping fields carry hooks (no class or field name is special to the flag builder)."""

    knobs: dict[str, dict] = dataclasses.field(
        default_factory=dict,
        metadata={"keyed_settings": KeyedSettings(known_keys=lambda: ["left", "right"], settings_of=lambda name: Knob,
                                                    reserved={"seed": "the caller's"}, note="seed is the caller's")},
    )
    """Per-knob settings."""
    limits: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"low": 2},
        metadata={"keyed_values": KeyedValues(known_keys=lambda: ["low", "high"], doc="limit of this end")},
    )
    """Per-end limits."""


def test_flags_of_hooked_fields_come_from_the_hook():
    parser = cli._Parser(prog="x")
    cli.add_config_arguments(parser, HookedConfig)
    out = parser.format_help()
    for flag in ("--knobs.left.level", "--knobs.right.level", "--limits", "--limits.low", "--limits.high"):
        assert flag in out
    assert "--knobs.left.seed" not in out and "--knobs " not in out
    assert "knobs.left: settings of left (seed is the caller's)" in out
    assert "limit of this end (limits[low]) (default: 2)" in out
