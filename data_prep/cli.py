"""`ttc-data`: write the synthetic datasets and corrupted-solution step labels, validate and convert benchmark and
step-label files."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from data_prep.benchmarks import BENCHMARK_NAMES, FieldMapping, load_benchmark, load_gsm8k, load_math500, load_problems
from data_prep.flags import hyphen_spelling_error
from data_prep.io import write_jsonl
from data_prep.labels import LABEL_FORMATS
from data_prep.records import Problem, StepLabels

logger = logging.getLogger(__name__)

_FIELD_OPTIONS = ("problem_field", "answer_field", "id_field", "level_field", "answer_after", "answer_regex", "source")


class UsageError(Exception):
    """A command line that argparse rejects."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so `main` prints one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _check_flag_spelling(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Flags are spelled with underscores; an old hyphen spelling of a known flag gets the new one in its error."""
    error = hyphen_spelling_error(parser, argv)
    if error:
        raise UsageError(error)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        help=f"a benchmark name ({', '.join(BENCHMARK_NAMES)}) or a .jsonl/.parquet file",
    )
    parser.add_argument(
        "--format",
        choices=("math500", "gsm8k", "generic"),
        help="how to read a file PATH: MATH-500 fields, GSM8K fields, or the field mapping below "
        "(default: generic)",
    )
    mapping = parser.add_argument_group("field mapping (generic format only)")
    mapping.add_argument("--problem_field", help="column with the problem text (default: problem)")
    mapping.add_argument("--answer_field", help="column with the gold answer (default: answer)")
    mapping.add_argument("--id_field", help="column with a unique id (default: number the rows)")
    mapping.add_argument("--level_field", help="column with the level 1-5 (default: no levels)")
    mapping.add_argument("--answer_after", help="take the answer after the last occurrence of this marker, e.g. ####")
    mapping.add_argument("--answer_regex", help="take the answer from this regex's first capture group")
    mapping.add_argument("--source", help="source name stored in each problem (default: the file stem)")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ttc-data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "synth",
        help="write the synthetic arithmetic-chain datasets",
        description="Write train.jsonl and test.jsonl (Problem rows) and gold_train.jsonl (gold step solutions "
        "as stepwise-supervision rows, every step labelled correct) into DIR.",
    )
    synth.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory (created)")
    synth.add_argument("--num_per_level_train", type=int, default=200, metavar="N", help="train problems per level (default: 200)")
    synth.add_argument("--num_per_level_test", type=int, default=100, metavar="N", help="test problems per level (default: 100)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    corrupt = commands.add_parser(
        "corrupt",
        help="write step labels for gold and corrupted solutions of synthetic problems (PRM training data)",
        description="Write stepwise-supervision rows (JSONL or Parquet, by the suffix of OUT): per synthetic "
        "problem its gold solution and solutions with one wrong result (labels from the exact checker: True "
        "before the first wrong step, False from it on). Costs seconds; no model is run.",
    )
    corrupt.add_argument("--out", required=True, type=Path, metavar="OUT.jsonl", help="output file")
    corrupt.add_argument("--split", choices=("train", "test"), default="train", help="problem split (default: train)")
    corrupt.add_argument("--num_per_level", type=int, default=400, metavar="N",
                         help="problems per level (default: 400)")
    corrupt.add_argument("--corrupted_per_problem", type=int, default=3, metavar="K",
                         help="corrupted solutions per problem, besides its gold one (default: 3)")
    corrupt.add_argument("--final_answer_fraction", type=float, default=0.1, metavar="F",
                         help="share of corrupted solutions whose only mistake is the boxed answer (default: 0.1)")
    corrupt.add_argument("--seed", type=int, default=0, help="seed of the problems and the corruptions (default: 0)")

    validate = commands.add_parser(
        "validate",
        help="load a benchmark and print its problem count per level",
        description="Load a benchmark, print its problem count and per-level counts; exit 1 with the first "
        "problem found (file, line, field) when the input is malformed.",
    )
    _add_source_options(validate)

    convert = commands.add_parser(
        "convert",
        help="convert a benchmark to normalised Problem JSONL",
        description="Load a benchmark and write one Problem per line (id, problem, answer, level, source).",
    )
    _add_source_options(convert)
    convert.add_argument("--out", required=True, type=Path, metavar="OUT.jsonl", help="output file (written atomically)")
    convert.add_argument("--limit", type=int, help="keep only the first N problems")

    labels = commands.add_parser(
        "labels",
        help="validate or convert a step-label file (stepwise, Math-Shepherd, PRM800K, RLHFlow)",
        description="Check a PRM training file without starting a training, or convert it to stepwise JSONL. "
        "The file may be JSONL, a JSON array, Parquet or a saved `datasets` directory (told from its content). "
        "Prints rows, examples, steps, positive steps and what was dropped and why; bad input gets one error "
        "line naming file, row and field, and exit status 2.",
    )
    label_commands = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    for name, text in (("validate", "read the file and print its counts"),
                       ("convert", "write the file's examples as stepwise rows (prompt, completions, labels, meta)")):
        action = label_commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument("path", type=Path, metavar="FILE", help="the step-label file")
        action.add_argument("--format", required=True, choices=LABEL_FORMATS, help="the file's row layout")
        action.add_argument("--neutral_as", choices=("true", "false"),
                            help="PRM800K only: the label of a neutral (0) rating (default: true)")
        action.add_argument("--skip_invalid_rows", action="store_true",
                            help="drop malformed rows (counted) instead of stopping at the first one")
        if name == "convert":
            action.add_argument("--out", required=True, type=Path, metavar="OUT.jsonl",
                                help="output file, .jsonl or .parquet (written atomically for .jsonl)")
    return parser


def _load_from_args(args: argparse.Namespace, limit: int | None = None) -> list[Problem]:
    given = ["--" + name for name in _FIELD_OPTIONS if getattr(args, name) is not None]
    if args.path in BENCHMARK_NAMES:
        if given or args.format:
            options = ", ".join(given + (["--format"] if args.format else []))
            raise UsageError(f"{options}: these options apply to files, not to the named benchmark {args.path!r}")
        return load_benchmark(args.path, limit=limit)
    file_format = args.format or "generic"
    if given and file_format != "generic":
        raise UsageError(f"{', '.join(given)}: field options apply only to --format generic, not --format {file_format}")
    if file_format == "math500":
        problems = load_math500(args.path)
    elif file_format == "gsm8k":
        problems = load_gsm8k(args.path)
    else:
        try:
            fields = FieldMapping(
                problem=args.problem_field or "problem",
                answer=args.answer_field or "answer",
                id=args.id_field,
                level=args.level_field,
                answer_after=args.answer_after,
                answer_regex=args.answer_regex,
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        problems = load_problems(args.path, fields=fields, source=args.source)
    return problems[:limit] if limit is not None else problems


def _synth(args: argparse.Namespace) -> None:
    from data_prep.synthetic import generate_problems, gold_steps

    for flag, value in (("--num_per_level_train", args.num_per_level_train), ("--num_per_level_test", args.num_per_level_test)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    train = generate_problems("train", args.num_per_level_train, seed=args.seed)
    test = generate_problems("test", args.num_per_level_test, seed=args.seed)
    gold = []
    for problem in train:
        steps = gold_steps(problem)
        gold.append(StepLabels(prompt=problem.problem, completions=steps, labels=[True] * len(steps)))
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "test.jsonl", test)
    write_jsonl(args.out / "gold_train.jsonl", gold)
    print(f"wrote {len(train)} train, {len(test)} test and {len(gold)} gold-step rows to {args.out}")


def _corrupt(args: argparse.Namespace) -> None:
    from data_prep.labels import write_step_labels
    from data_prep.synthetic import corrupted_step_labels, generate_problems

    if args.num_per_level < 1:
        raise UsageError(f"--num_per_level must be >= 1, got {args.num_per_level}")
    problems = generate_problems(args.split, args.num_per_level, seed=args.seed)
    records = corrupted_step_labels(problems, args.corrupted_per_problem, seed=args.seed,
                                    final_answer_fraction=args.final_answer_fraction)
    write_step_labels(records, args.out)
    labels = [label for record in records for label in record.labels]
    print(f"wrote {len(records)} solutions ({len(problems)} problems, {len(labels)} steps, "
          f"{sum(labels) / len(labels):.1%} labelled correct) to {args.out}")


def _validate(args: argparse.Namespace) -> None:
    problems = _load_from_args(args)
    sources = ", ".join(sorted({problem.source for problem in problems}))
    print(f"{args.path}: {len(problems)} problems (source: {sources})")
    levels = Counter(problem.level for problem in problems)
    for level in sorted(level for level in levels if level is not None):
        print(f"  level {level}: {levels[level]}")
    if None in levels:
        print(f"  level unknown: {levels[None]}")


def _convert(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    problems = _load_from_args(args, limit=args.limit)
    count = write_jsonl(args.out, problems)
    print(f"wrote {count} problems to {args.out}")


class LabelInputError(Exception):
    """A step-label file that cannot be read as the given format (exit status 2, as a bad command line)."""


def _labels(args: argparse.Namespace) -> None:
    from data_prep.labels import LabelFileError, convert_label_file, write_step_labels

    if args.neutral_as is not None and args.format != "prm800k":
        raise UsageError(f"--neutral_as applies to --format prm800k only, not --format {args.format}")
    if args.labels_command == "convert" and args.format == "outcome":
        # Each step of an outcome record carries its solution's label: written as step labels, a wrong solution's
        # right steps would read as wrong ones.
        raise UsageError(f"{args.path}: --format outcome has one label per solution (field 'label'), so it cannot "
                         "be written as step labels; train prm_style implicit on it with --data_format outcome")
    try:
        records, counts = convert_label_file(args.path, args.format, neutral_as=args.neutral_as != "false",
                                             skip_invalid_rows=args.skip_invalid_rows)
    except (LabelFileError, ValueError, OSError) as error:
        raise LabelInputError(str(error)) from None
    lines = counts.summary_lines()
    print(f"{args.path} ({args.format}): {lines[0]}")
    for line in lines[1:]:
        print(line)
    if not records:
        raise LabelInputError(f"{args.path}: no labelled examples; every row was dropped")
    if args.labels_command == "convert":
        write_step_labels(records, args.out)
        print(f"wrote {len(records)} examples to {args.out}")


_COMMANDS = {"synth": _synth, "corrupt": _corrupt, "validate": _validate, "convert": _convert, "labels": _labels}


def main(argv: list[str] | None = None) -> int:
    """Run `ttc-data`; return 0 on success, 1 for bad benchmark data, 2 for a bad command line or a bad step-label
    file (`ttc-data labels`)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        parser = make_parser()
        argv = sys.argv[1:] if argv is None else list(argv)
        _check_flag_spelling(parser, argv)
        args = parser.parse_args(argv)
        _COMMANDS[args.command](args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (UsageError, LabelInputError) as error:
        print(f"ttc-data: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:
        print(f"ttc-data: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
