"""The bad-input corpus (tests/data/bad/): every file goes through the CLI its manifest names and must be refused with
a non-zero exit and one error line naming file and row or key and what was expected, no traceback, and no output
that could pass for a finished one."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
CORPUS = REPO_ROOT / "tests" / "data" / "bad"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]

ISSUE_ITEMS = (
    "missing field", "extra field", "wrongly typed field", "empty problem", "empty step", "label count != step count",
    "non-boolean labels", "invalid JSON", "non-UTF-8 bytes", "5 MB row", "duplicate ids", "duplicate YAML keys",
    "unknown strategy", "unknown setting", "negative N or N incompatible with the strategy",
    "checkpoint of the wrong kind",
    "policy without a chat template", "tokenizer without the PRM's judgement tokens", "missing path",
    "results files of another run's settings", "pickle-only weights", "empty file",
)
"""What the corpus must cover: each failure a user meets before any work starts."""

PROGRAMS = {"ttc-data": "ttc-data", "ttc-infer": "ttc-infer", "train_prm": "train_prm.py", "pipeline": "pipeline"}
"""The manifest's CLI names -> the prefix of their error line."""

_LOG_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d[ T][\d:,.]+ )?(DEBUG|INFO|WARNING)\b")
_PROGRESS = re.compile(r"\d+%\|")
FIVE_MB = 5 * 2**20


def _generated(directory: Path) -> dict[str, Path]:
    """The inputs too large to keep in the repository (5 MB rows) and the good files some bad cases need."""
    files = {
        "big_problem.jsonl": {"problem": "Start with 2. " + "Add 1. " * (FIVE_MB // 7), "answer": "5"},
        "big_labels.jsonl": {"prompt": "Start with 2. " + "Add 1. " * (FIVE_MB // 7),
                             "completions": ["(1) Add 1: 2 + 1 = 3"], "labels": [True]},
        "labels_ok.jsonl": {"prompt": "Start with 2. Add 3.", "completions": ["(1) Add 3: 2 + 3 = 5", "The answer is 5"],
                            "labels": [True, True]},
        "processbench_ok.jsonl": {"id": "ok-1", "problem": "Start with 2. Add 3.",
                                  "steps": ["(1) Add 3: 2 + 3 = 5", "The answer is 5"], "label": -1},
    }
    paths = {}
    for name, row in files.items():
        paths[name] = directory / name
        paths[name].write_text(json.dumps(row) + "\n", encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def corpus_inputs(tmp_path_factory) -> dict[str, str]:
    """Placeholder -> value: the shipped checkpoints in either role, two derived from them, the generated files."""
    root = tmp_path_factory.mktemp("bad_inputs")
    plain_lm = root / "plain_lm"  # a causal LM that is neither kind by its files (like a public +/- PRM)
    shutil.copytree(REPO_ROOT / "checkpoints" / "policy-small", plain_lm)
    (plain_lm / "ttc_policy_manifest.json").unlink()
    no_template = root / "policy_no_chat_template"
    shutil.copytree(REPO_ROOT / "checkpoints" / "policy-small", no_template)
    (no_template / "chat_template.jinja").unlink()
    pickled = root / "pickled_policy"  # weights under a pickle name only (never loaded: refused by the file name)
    shutil.copytree(REPO_ROOT / "checkpoints" / "policy-small", pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    values = {
        "{bad}": str(CORPUS),
        "{ckpt:policy}": str(REPO_ROOT / "checkpoints" / "policy-small"),
        "{ckpt:prm}": str(REPO_ROOT / "checkpoints" / "prm-verifier"),
        "{ckpt:plain_lm}": str(plain_lm),
        "{ckpt:policy_no_chat_template}": str(no_template),
        "{ckpt:pickled_policy}": str(pickled),
    }
    values.update({f"{{gen:{name}}}": str(path) for name, path in _generated(root).items()})
    return values


def _fill(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    assert not re.search(r"\{(bad|tmp|ckpt:\w+|gen:[\w.]+)\}", text), f"unknown placeholder in {text!r}"
    return text


def _run_cli(cli: str, argv: list[str], monkeypatch) -> int:
    """The CLI's main function in this process; training and the pipeline's stages are made to fail loudly, so a
    case that gets that far fails the test instead of starting work."""
    if cli == "ttc-data":
        from data_prep.cli import main

        return main(argv)
    if cli == "ttc-infer":
        from inference.cli import main

        return main(argv)
    if cli == "train_prm":
        import training.prm

        monkeypatch.setattr(training.prm, "build_model", lambda *a, **k: pytest.fail("a model was built"))
        for key in list(os.environ):  # train_prm.py sets W&B and offline defaults; the fixture restores them
            monkeypatch.setenv(key, os.environ[key])
        import training.train_prm

        # Its log handlers would print transformers' multi-line records into the stream this test reads.
        monkeypatch.setattr(training.train_prm, "setup_logging", lambda *a, **k: None)
        return training.train_prm.main(argv)
    if cli == "pipeline":
        import inference.pipeline.cli as pipeline

        monkeypatch.setattr(pipeline, "run_stages", lambda *a, **k: pytest.fail("a pipeline stage was started"))
        monkeypatch.chdir(REPO_ROOT)  # it changes into the repository; this puts the test's directory back after
        return pipeline.main(argv)
    raise AssertionError(f"unknown cli {cli!r} in the manifest")


def test_the_corpus_covers_every_kind_of_bad_input():
    covered = {case["covers"] for case in CASES}
    assert set(ISSUE_ITEMS) <= covered, sorted(set(ISSUE_ITEMS) - covered)
    assert covered <= set(ISSUE_ITEMS), sorted(covered - set(ISSUE_ITEMS))
    assert {case["cli"] for case in CASES} == set(PROGRAMS)
    named = {arg.split("/")[-1] for case in CASES for arg in case["args"] if arg.startswith("{bad}/")}
    named |= {name for case in CASES for name in case.get("copy", {})}
    on_disk = {path.name for path in CORPUS.iterdir()} - {"manifest.json"}
    assert on_disk == named, f"files no case uses: {sorted(on_disk - named)}; cases naming missing files: " \
                             f"{sorted(named - on_disk)}"


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_input_is_refused_with_one_line(case, corpus_inputs, tmp_path, monkeypatch, capsys):
    values = {**corpus_inputs, "{tmp}": str(tmp_path)}
    copies = {}
    for name, destination in case.get("copy", {}).items():
        target = Path(_fill(destination, values))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / name, target)
        copies[target] = target.read_bytes()
    code = _run_cli(case["cli"], [_fill(arg, values) for arg in case["args"]], monkeypatch)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code not in (0, None), f"exit status {code}; output:\n{text}"
    assert "Traceback" not in text, text
    lines = [line for line in captured.err.splitlines()
             if line.strip() and not _LOG_RECORD.match(line) and not _PROGRESS.search(line)]
    assert len(lines) == 1, f"expected one error line, got:\n" + "\n".join(lines)
    error = lines[0]
    assert error.startswith(f"{PROGRAMS[case['cli']]}: error: "), error
    for word in case["expect"]:
        assert _fill(word, values) in error, f"{word!r} not in: {error}"
    for pattern in case.get("absent", []):
        path = Path(_fill(pattern, values))
        assert not path.exists(), f"{path} was written by a run that failed"
    for path, content in copies.items():
        assert path.read_bytes() == content, f"{path} was changed by a run that failed"
