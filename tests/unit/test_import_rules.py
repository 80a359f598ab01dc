"""The layering rules hold in the source: training and inference never import each other, data_prep imports
neither, and no library module imports a command-line module."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("data_prep", "training", "inference")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "training": ("inference",),
    "inference": ("training",),
    "data_prep": ("training", "inference"),
}
"""Package -> packages it may never import (they meet only through a checkpoint on disk and data_prep)."""

SCRIPT_MODULES = ("training.train_prm", "training.train_policy")
"""Modules run as files (`accelerate launch training/train_prm.py`): command-line modules like the entry points."""


def cli_modules(pyproject: Path = REPO / "pyproject.toml") -> set[str]:
    """Command-line modules: the console-script entry points, the training scripts and every `*.cli` module."""
    scripts = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["scripts"]
    modules = {target.split(":", 1)[0] for target in scripts.values()}
    return modules | set(SCRIPT_MODULES)


def is_cli(module: str, entry_points: set[str]) -> bool:
    return module in entry_points or module.rsplit(".", 1)[-1] == "cli"


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, module name) of every import in `source`, function-local and `importlib.import_module("x")` too."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # `from inference import cli` imports the module inference.cli
                yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def violations(sources: Mapping[str, str], entry_points: set[str]) -> list[str]:
    """Every import in `sources` (module name -> source) that breaks a layering rule, as `module:line: why`."""
    found: dict[tuple[str, int], str] = {}  # one finding per import statement
    for module, source in sorted(sources.items()):
        top = module.split(".", 1)[0]
        for line, target in imported_modules(source, module):
            target_top = target.split(".", 1)[0]
            if target_top in FORBIDDEN.get(top, ()):
                why = f"{top} imports {target} ({top} may not import {target_top})"
            elif is_cli(target, entry_points) and not is_cli(module, entry_points) and target_top in PACKAGES:
                why = f"library module imports the command-line module {target}"
            else:
                continue
            found.setdefault((module, line), f"{module}:{line}: {why}")
    return list(found.values())


def package_sources() -> dict[str, str]:
    sources = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            sources[name] = path.read_text(encoding="utf-8")
    return sources


def test_the_tree_keeps_the_layering_rules():
    sources = package_sources()
    assert {"data_prep.io", "training.prm", "inference.cli"} <= set(sources)  # the walk found the packages
    assert violations(sources, cli_modules()) == []


@pytest.mark.parametrize(
    ("module", "source", "why"),
    [
        ("training.prm", "from inference.scoring import loader\n", "training imports inference.scoring"),
        ("inference.runner", "def f():\n    import training.policy\n", "inference imports training.policy"),
        ("data_prep.labels", "from inference.types import Completion\n", "data_prep imports inference.types"),
        ("data_prep.steps", "import training\n", "data_prep imports training"),
        ("inference.labelling.job", "from inference.cli import add_config_arguments\n",
         "command-line module inference.cli"),
        ("inference.reporting.html", "from inference import cli\n", "command-line module inference.cli"),
        ("inference.evaluation.rows", "from ..cli import main\n", "command-line module inference.cli"),
        ("training.prm", "from training import train_prm\n", "command-line module training.train_prm"),
        ("inference.runner", "import importlib\nimportlib.import_module('training.prm')\n",
         "inference imports training.prm"),
    ],
)
def test_a_forbidden_import_is_reported(module, source, why):
    found = violations({module: source}, cli_modules())
    assert len(found) == 1 and found[0].startswith(f"{module}:") and why in found[0], found


def test_command_line_modules_may_import_libraries_and_each_other():
    entry_points = cli_modules()
    assert {"data_prep.cli", "inference.cli", "training.train_prm"} <= entry_points
    allowed = {
        "inference.cli": "from inference.runner import run_sweep\nfrom data_prep.io import read_jsonl\n",
        "training.train_prm": "from training.prm import train_prm\n",
        "inference.pipeline.cli": "from inference.cli import main\n",
    }
    assert violations(allowed, entry_points) == []
