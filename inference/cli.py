"""`ttc-infer`: run, merge, eval, report, label and processbench subcommands (thin wrappers over the library)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import signal
import sys
import threading
import typing
from collections.abc import Sequence
from typing import Any

from inference.config import MergeConfig, RunConfig
from inference.config_engine import (
    CliValue,
    ConfigError,
    KeyedSettings,
    default_value,
    dict_value_hint,
    field_docs,
    keyed_settings,
    keyed_values,
    parse_config,
)

logger = logging.getLogger(__name__)

SUBCOMMANDS = ("run", "merge", "eval", "report", "label", "processbench")
"""`ttc-infer` with no subcommand means `run`."""

DELEGATED = {
    "eval": ("inference.evaluation", "EvalConfig", "evaluate", "accuracy at N per strategy, level and compute"),
    "report": ("inference.reporting", "ReportConfig", "make_report",
               "plots and an HTML page from evaluated metrics"),
    "label": ("inference.labelling", "LabelConfig", "label", "step labels (Monte-Carlo or oracle) for PRM training"),
    "processbench": ("inference.evaluation.processbench_job", "ProcessBenchConfig", "processbench",
                     "first-wrong-step F1 and step AUROC of PRM checkpoints"),
}
"""Subcommands whose config dataclass and entry function live in other packages: (module, config, function, help)."""


class UsageError(Exception):
    """A command line argparse refuses."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a scheduler stopping the job)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # argparse would print usage and exit
        raise UsageError(f"{self.prog}: {message}")


# --------------------------------------------------------------------------- parser built from config dataclasses


def _short(value: Any) -> str:
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_list(hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, typing.get_origin(int | None)):
        return any(_is_list(a) for a in typing.get_args(hint))
    return typing.get_origin(hint) in (tuple, list)


def _add_flag(group: Any, dotted: str, hint: Any, doc: str, default: Any) -> None:
    group.add_argument(
        f"--{dotted}",
        dest=dotted,
        default=argparse.SUPPRESS,
        nargs="+" if _is_list(hint) else None,
        metavar="V",
        help=f"{doc} (default: {_short(default)})".replace("%", "%%"),
    )


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "", group: Any = None) -> None:
    """One `--section.key` flag per config field (help = the field's attribute docstring); a field's hook
    (`keyed_settings`, `keyed_values` in its metadata) adds one flag per known name."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    group = group or parser.add_argument_group(f"{cls.__name__} keys")
    for spec in dataclasses.fields(cls):
        hint, dotted, doc = hints[spec.name], prefix + spec.name, docs.get(spec.name, "")
        settings_hook, values_hook = keyed_settings(spec), keyed_values(spec)
        if dataclasses.is_dataclass(hint):
            add_config_arguments(parser, hint, dotted + ".", parser.add_argument_group(f"{dotted}: {doc.rstrip('.')}"))
        elif settings_hook is not None:
            _add_keyed_settings_arguments(parser, dotted, settings_hook, default_value(spec))
        else:
            _add_flag(group, dotted, hint, doc, default_value(spec))
            if values_hook is not None:
                value_hint = dict_value_hint(hint)
                for key in values_hook.known_keys():
                    default = (default_value(spec) or {}).get(key)
                    _add_flag(group, f"{dotted}.{key}", value_hint, f"{values_hook.doc} ({spec.name}[{key}])", default)


def _add_keyed_settings_arguments(parser: argparse.ArgumentParser, dotted: str, hook: KeyedSettings,
                                  defaults: dict[str, dict[str, Any]]) -> None:
    """One group per known name, one flag per setting of its Settings dataclass (reserved ones left out)."""
    note = f" ({hook.note})" if hook.note else ""
    for name in hook.known_keys():
        settings = hook.settings_of(name)
        group = parser.add_argument_group(f"{dotted}.{name}: settings of {name}{note}")
        docs, hints = field_docs(settings), typing.get_type_hints(settings)
        for spec in dataclasses.fields(settings):
            if spec.name not in hook.reserved:
                default = defaults.get(name, {}).get(spec.name, default_value(spec))
                _add_flag(group, f"{dotted}.{name}.{spec.name}", hints[spec.name], docs.get(spec.name, ""), default)


def _delegate(command: str) -> tuple[Any, Any]:
    """The (config class, entry function) another package provides for `command`; an import error is raised as
    it is (every delegate exists, so one that fails to import is broken and must say why)."""
    module_name, config_name, function_name, _ = DELEGATED[command]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, function_name)


def make_parser() -> argparse.ArgumentParser:
    """The `ttc-infer` parser: subcommands run (default), merge and the delegated ones; flags mirror each config."""
    parser = _Parser(prog="ttc-infer", description=__doc__, allow_abbrev=False)
    common = _Parser(add_help=False, allow_abbrev=False)
    common.add_argument("--config", help="YAML file with config keys (flags override it)")
    common.add_argument("--log_level", default="info", choices=("debug", "info", "warning"), help="logging level")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", parser_class=_Parser)
    run = sub.add_parser("run", parents=[common], allow_abbrev=False, help="run strategies x budgets, append rows",
                         description=(RunConfig.__doc__ or "") + " Rerun the same command to resume.")
    add_config_arguments(run, RunConfig)
    merge = sub.add_parser("merge", parents=[common], allow_abbrev=False, help="merge shard result files",
                           description=MergeConfig.__doc__)
    add_config_arguments(merge, MergeConfig)
    for command, (_, _, _, text) in DELEGATED.items():
        delegated = sub.add_parser(command, parents=[common], allow_abbrev=False, help=text, description=text)
        add_config_arguments(delegated, _delegate(command)[0])  # a broken delegate fails here, loudly
    return parser


# --------------------------------------------------------------------------- subcommands


def _overrides(args: argparse.Namespace, extras: Sequence[str]) -> dict[str, Any]:
    """Dotted config keys from parsed flags, plus unrecognised `--key value` pairs (the config names them)."""
    cli: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key not in ("command", "config", "log_level"):
            cli[key] = [CliValue(v) for v in value] if isinstance(value, list) else CliValue(value)
    flag = None
    for token in extras:
        if token.startswith("--"):
            flag, _, inline = token[2:].partition("=")
            cli[flag] = [CliValue(inline)] if inline else []
        elif flag is not None:
            cli[flag].append(CliValue(token))
        else:
            raise UsageError(f"unexpected argument {token!r}; config keys are given as --key value")
    for key, value in cli.items():
        if value == []:
            raise UsageError(f"--{key} needs a value")
    return {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in cli.items()}


def resolve_run_config(argv: Sequence[str]) -> RunConfig:
    """The config `ttc-infer run <argv>` runs (its `--config` file under its `--key value` flags), for a driver that
    launches such runs and needs their output directory; raises UsageError or ConfigError as the CLI would."""
    args, extras = make_parser().parse_known_args(["run", *argv])
    return parse_config(RunConfig, args.config, _overrides(args, extras))


def _run(args: argparse.Namespace, cli: dict[str, Any]) -> int:
    from inference import runner
    from inference.samples import sample_files

    config = parse_config(RunConfig, args.config, cli)
    problems = runner.load_problems(config)
    runner.check_prm_path(config)
    if config.samples_from:  # a wrong path is named before any model loads
        sample_files(config.samples_from)
    logger.info("run %s: %d problems", config.name, len(problems))
    generator, scorer = runner.build_generator(config), runner.build_scorer(config)
    # The config copy is written once the models load and any rows there fit, so a refused run leaves nothing.
    summary = runner.run_sweep(config, problems, generator, scorer, runner.results_path(config),
                               write_config_copy=True)
    written, skipped = summary.rows_written, summary.rows_skipped
    print(f"results: {summary.results_path} ({written} rows written, {skipped} already there)")
    return 0


def _merge(args: argparse.Namespace, cli: dict[str, Any]) -> int:
    from inference.results import merge_results

    config = parse_config(MergeConfig, args.config, cli)
    summary = merge_results(config.inputs, config.out)
    print(f"merged {len(summary.inputs)} files into {config.out}: {summary.rows_written} rows, "
          f"{summary.duplicates_dropped} exact duplicates dropped")
    return 0


def _delegated(args: argparse.Namespace, cli: dict[str, Any]) -> int:
    config_cls, function = _delegate(args.command)
    result = function(parse_config(config_cls, args.config, cli))
    if result is not None:
        print(f"{args.command}: {result}")
    return 0


HANDLERS = {"run": _run, "merge": _merge, **{command: _delegated for command in DELEGATED}}


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ttc-infer`; returns 0, 1 (runtime error), 2 (usage or config error) or 130/143 (stopped)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals can only be set there
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        args, extras = make_parser().parse_known_args(argv)
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return HANDLERS[args.command](args, _overrides(args, extras))
    except (UsageError, ConfigError) as error:
        print(f"ttc-infer: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"ttc-infer: stopped by {'SIGTERM' if isinstance(stop, Terminated) else 'Ctrl-C'}; "
              "rerun the same command to resume", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except Exception as error:  # noqa: BLE001 - the CLI reports any failure as one line
        logger.debug("traceback", exc_info=True)
        print(f"ttc-infer: error: {' '.join(str(error).split()) or type(error).__name__}", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
