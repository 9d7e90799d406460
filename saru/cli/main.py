"""The ``saru`` command: one argparse parser, one module per command group under ``saru.cli``.

Each command module exposes ``register(subparsers)`` which adds its sub-parser and sets
``func`` (a callable taking the parsed arguments and returning an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from saru import __version__

#: command modules, in the order they appear in ``saru --help``.
COMMAND_MODULES = (
    "saru.cli.run",
    "saru.cli.check_config",
    "saru.cli.plan",
    "saru.cli.control",
    "saru.cli.ipvsadm",
    "saru.cli.demo",
    "saru.cli.failover_test",
    "saru.cli.cluster",
    "saru.cli.realserver",
    "saru.cli.doctor",
    "saru.cli.vipcheck",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
