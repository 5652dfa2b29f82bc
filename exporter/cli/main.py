"""The ``batch-metrics`` console script: parse arguments, call one command, print, exit.

Each subcommand lives in ``exporter/cli/<name>.py`` and provides ``add_arguments(parser)``
and ``run(args) -> int``. Only the chosen command's module is imported, so ``trends`` does not
pay for the HTTP server's imports. Expected failures (bad input, unreadable archive, a bad
``BATCH_METRICS_*`` variable, a usage error) end as one line on stderr and the exit status of
the convention in :mod:`exporter.util.errors`, never a traceback or argparse's usage block.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Final, NoReturn, Protocol, cast

from exporter.util.errors import EXIT_FINDINGS, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UserError
from exporter.util.settings import load_settings

__all__ = ["COMMANDS", "main"]

PROG: Final = "batch-metrics"

# name -> (module, one-line help); order is the order shown in --help.
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "demo": ("exporter.cli.demo", "run a simulated batch through the real pipeline"),
    "validate": ("exporter.cli.validate", "check every record in an archive"),
    "recover": ("exporter.cli.recover", "record batches whose process died; tidy the archive"),
    "analyze": ("exporter.cli.analyze", "reconstruct records of past batches"),
    "trends": ("exporter.cli.trends", "report durations, success rates and bottlenecks"),
    "prioritize": ("exporter.cli.prioritize", "rank Phase-2 candidates against the archive"),
    "serve": ("exporter.cli.serve", "expose the archive as Prometheus metrics over HTTP"),
    "backfill": ("exporter.cli.backfill", "write the archive's history as OpenMetrics"),
    "rules": ("exporter.cli.rules", "generate or check the Prometheus rule file"),
    "stack": ("exporter.cli.stack", "run Prometheus, Alertmanager and serve on loopback"),
}


_EPILOG: Final = f"""\
Run '{PROG} COMMAND --help' for a command's options and examples.

exit status (every command):
  {EXIT_OK}  done
  {EXIT_FINDINGS}  findings or failure: invalid records, a stale rule file, bottlenecks with
     --fail-on-bottleneck; or the command could not finish (a file it cannot write)
  {EXIT_USAGE}  usage or bad input: unknown option, bad value or BATCH_METRICS_* variable,
     a missing archive, file or directory
  {EXIT_PARTIAL}  done, but part of the input was unavailable (analyze without git history)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: no usage block, a pointer to --help instead."""

    help_hint: str | None = None  # the command's --help, for errors the top parser reports

    def error(self, message: str) -> NoReturn:
        hint = self.help_hint or f"{self.prog} --help"
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{hint}')\n")


def version() -> str:
    """The installed distribution's version."""
    import importlib.metadata  # noqa: PLC0415 (~50 ms: only for --version)

    try:
        return importlib.metadata.version("batch-metrics")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _ShowVersion(argparse.Action):
    """``--version``, looked up only when asked for (argparse's own wants it at every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version"
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    return cast(_Command, importlib.import_module(COMMANDS[name][0]))


def _build_parser(selected: str | None) -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Metrics, trends and monitoring for LLM-agent batch operations.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics to stderr")
    parser.add_argument("--version", action=_ShowVersion)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == selected:
            command = _load(name)
            command_parser.description = _description(command) or command_parser.description
            command.add_arguments(command_parser)
    return parser


def _description(command: _Command) -> str | None:
    """A command module's docstring after its first paragraph: its --help description."""
    parts = (getattr(command, "__doc__", None) or "").split("\n\n", 1)
    return parts[1].strip() if len(parts) > 1 else None


def _selected_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = _selected_command(args_list)
    try:
        load_settings()  # every BATCH_METRICS_* variable checked once, before any command
        parser = _build_parser(selected if selected in COMMANDS else None)
        if selected in COMMANDS:
            parser.help_hint = f"{PROG} {selected} --help"
        args = parser.parse_args(args_list)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format=f"{PROG}: %(levelname)s: %(message)s",
        )
        return _load(args.command).run(args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
