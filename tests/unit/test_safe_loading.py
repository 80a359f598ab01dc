"""Safe loading across ttc's own code: no pickle, torch.load only with weights_only=True, and the checkpoint's own
Python code only when a config turns trust_remote_code on (then with a warning)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from inference.generation.common import model_load_options

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(path for folder in ("data_prep", "inference", "training", "scripts", "benchmarks")
                 for path in (REPO / folder).rglob("*.py"))


def test_no_pickle_and_torch_load_only_with_weights_only():
    offenders = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if re.search(r"\bimport (pickle|dill|cloudpickle|joblib)\b|\bpickle\.loads?\(", code):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert SOURCES and not offenders, offenders


def test_every_library_model_load_asks_for_safetensors():
    """A `from_pretrained` of weights in ttc's code passes use_safetensors=True (directly or through
    model_load_options); training/prm.py's loads are preceded by train_prm.py's require_safetensors check."""
    checked_elsewhere = {"training/prm.py"}
    offenders = []
    for path in SOURCES:
        relative = str(path.relative_to(REPO))
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(\w+)\.from_pretrained\(", text):
            owner = match.group(1)
            line_start = text.rfind("\n", 0, match.start()) + 1
            before = text[line_start:match.start()]
            if before.count('"') % 2 or "`" in before:  # inside a message, not a call
                continue
            if owner in ("AutoTokenizer", "AutoConfig", "PeftModel", "tokenizer") or "Tokenizer" in owner:
                continue
            call = text[match.start(): text.find(")\n", match.start()) + 1]
            if "use_safetensors=True" not in call and "model_load_options" not in call and "options" not in call:
                if relative not in checked_elsewhere:
                    offenders.append(f"{relative}: {call[:100]}")
    assert not offenders, offenders


def test_trust_remote_code_is_off_by_default_and_warns_when_a_config_turns_it_on(caplog):
    assert model_load_options(False, "policy p") == {"use_safetensors": True, "trust_remote_code": False}
    with caplog.at_level(logging.WARNING):
        assert model_load_options(True, "policy p")["trust_remote_code"] is True
    assert "policy p: trust_remote_code is on, so Python code shipped with the checkpoint will run" in caplog.text


@pytest.mark.parametrize("config_class", ["inference.config:PolicyConfig", "inference.config:PRMConfig",
                                          "training.config:ModelArguments"])
def test_every_config_defaults_trust_remote_code_to_false(config_class):
    import importlib

    module, name = config_class.split(":")
    fields = importlib.import_module(module).__dict__[name].__dataclass_fields__
    assert fields["trust_remote_code"].default is False


def test_train_prm_warns_when_trust_remote_code_is_on(tmp_path, monkeypatch, caplog, capsys):
    import training.train_prm

    monkeypatch.setattr(training.train_prm, "setup_logging", lambda *a, **k: None)
    with caplog.at_level(logging.WARNING, logger="training.train_prm"):
        code = training.train_prm.main(["--init_from_config", "tiny", "--trust_remote_code", "true", "--train_files",
                                        str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path / "prm"),
                                        "--use_cpu", "true", "--report_to", "none"])
    assert code == 2 and "missing.jsonl: no such file" in capsys.readouterr().err
    assert "trust_remote_code is on" in caplog.text
