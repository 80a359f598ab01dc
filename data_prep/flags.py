"""The one flag spelling of ttc's command lines (underscores, as TRL's): a hint for a flag typed with hyphens."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every `--flag` of `parser` and of its subcommands."""
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(option for option in action.option_strings if option.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                flags |= option_strings(subparser)
    return flags


def hyphen_spelling_error(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """For the first `--some-flag` in `argv` that is unknown but known as `--some_flag`: the error naming the
    underscore spelling; None when there is none."""
    known = option_strings(parser)
    for token in argv:
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and "-" in flag[2:] and flag not in known:
            underscored = "--" + flag[2:].replace("-", "_")
            if underscored in known:
                return f"unrecognized flag {flag}; flags use underscores: {underscored}"
    return None
