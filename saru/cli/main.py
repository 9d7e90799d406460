"""The ``saru`` command: one argparse parser, one module per command group under ``saru.cli``.

Each command module exposes ``register(subparsers)`` which adds its sub-parser and sets
``func`` (a callable taking the parsed arguments and returning an exit status). Descriptions often
come from module docstrings; ``SaruParser`` shows their ``literal`` markup as plain text.

Output into a pipe that closes early (``saru status | head -1``) ends the command quietly, the
standard Python way: stdout is flushed inside ``main``, and a ``BrokenPipeError`` redirects the
standard streams to /dev/null (so the interpreter's final flush cannot fail again) and exits
with status 141 (128 + SIGPIPE, what a shell reports for a command killed by SIGPIPE). SIGPIPE
itself stays ignored, as Python sets it: a daemon must survive a client hanging up.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from saru import __version__

#: command modules, in the order they appear in ``saru --help``.
COMMAND_MODULES = (
    "saru.cli.run",
    "saru.cli.check_config",
    "saru.cli.plan",
    "saru.cli.daemon_cmds",
    "saru.cli.operator",
    "saru.cli.ipvsadm",
    "saru.cli.demo",
    "saru.cli.failover_test",
    "saru.cli.cluster",
    "saru.cli.realserver",
    "saru.cli.doctor",
    "saru.cli.vipcheck",
)


#: exit status after the reader of our output went away (128 + SIGPIPE)
EXIT_BROKEN_PIPE = 141


class SaruParser(argparse.ArgumentParser):
    """An ArgumentParser whose help and usage show docstring markup (````x````) as plain text.

    Sub-parsers (``add_subparsers``) are of the parent's class, so every command gets it."""

    def format_help(self) -> str:
        return plain_text(super().format_help())

    def format_usage(self) -> str:
        return plain_text(super().format_usage())


def plain_text(text: str) -> str:
    """Docstring text for a terminal: reStructuredText's double backquotes removed."""
    return text.replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    parser = SaruParser(
        prog="saru",
        description="UltraMonkey-style load balancer: ldirectord.cf in, health-checked tables out.",
    )
    parser.add_argument("--version", action="version", version=f"saru {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return quiet_on_broken_pipe(lambda: _dispatch(parser.parse_args(argv)))


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def quiet_on_broken_pipe(command: Callable[[], int]) -> int:
    """Run ``command``, flushing stdout before returning; a closed pipe ends it quietly (141)."""
    try:
        status = command()
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):  # a replaced stream without a file descriptor
                pass
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
