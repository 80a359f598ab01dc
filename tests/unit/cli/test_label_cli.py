"""`ttc-infer label` wiring and the subcommand list: help, config parsing into LabelConfig, one-line errors."""

from __future__ import annotations

import re

import pytest

import inference.labelling as labelling
from inference.cli import SUBCOMMANDS, main
from inference.labelling import LabelBenchmarkConfig, LabelConfig


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ttc-infer: error: ")
    return err[0]


def test_top_level_help_lists_every_subcommand_on_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "{run,merge,eval,report,label,processbench}" in out
    for command in ("run", "merge", "eval", "report", "label", "processbench"):
        assert re.search(rf"^    {command} +\S.*$", out, flags=re.MULTILINE), command
    assert SUBCOMMANDS == ("run", "merge", "eval", "report", "label", "processbench")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_works(command, capsys):
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: ttc-infer {command} ")


def test_label_help_prints_the_label_options(capsys):
    assert main(["label", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--labeller", "--label_kind", "--rollouts_per_step", "--num_solutions", "--output", "--chunk_size",
                 "--benchmark.name_or_path", "--benchmark.num_per_level", "--policy.model_name_or_path", "--config"):
        assert flag in out
    assert "completions rolled out from each step prefix" in out  # rollouts_per_step's attribute docstring


def test_label_parses_its_config_and_calls_the_labelling_job(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(labelling, "label", lambda config: calls.append(config) or "12 rows in out.jsonl")
    config = tmp_path / "label.yaml"
    config.write_text("labeller: oracle\nbenchmark:\n  name_or_path: synthetic-test\n  num_per_level: 3\n",
                      encoding="utf-8")
    output = str(tmp_path / "labels.jsonl")
    assert main(["label", "--config", str(config), "--num_solutions", "2", "--output", output]) == 0
    assert capsys.readouterr().out == "label: 12 rows in out.jsonl\n"
    benchmark = LabelBenchmarkConfig(name_or_path="synthetic-test", num_per_level=3)
    assert calls == [LabelConfig(benchmark=benchmark, labeller="oracle", num_solutions=2, output=output)]


def test_label_unknown_key_is_a_one_line_error(tmp_path, capsys):
    assert main(["label", "--rollouts_per_stepp", "4"]) == 2
    assert "flag --rollouts_per_stepp is not known; did you mean 'rollouts_per_step'?" in one_line_error(capsys)
    config = tmp_path / "label.yaml"
    config.write_text("benchmark:\n  name_or_pth: synthetic-test\n", encoding="utf-8")
    assert main(["label", "--config", str(config)]) == 2
    assert "key 'benchmark.name_or_pth' is not known; did you mean 'name_or_path'?" in one_line_error(capsys)


def test_label_config_rule_is_a_one_line_error(capsys):
    assert main(["label", "--labeller", "oracle", "--benchmark.name_or_path", "math500"]) == 2
    assert "labeller oracle needs a synthetic benchmark" in one_line_error(capsys)
