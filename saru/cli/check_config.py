"""``saru check-config FILE [--json]``: parse an ldirectord.cf and report, without touching anything.

Exit status: 0 when the file is accepted (warnings go to stderr), 2 when it is not (diagnostics on
stderr, one ``FILE:LINE: message`` per line) or cannot be read.  ``--json`` prints the parsed
configuration, every default resolved, to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from saru.config.diagnostics import ConfigError
from saru.config.json_view import config_to_dict
from saru.config.ldirectord import parse_file

EXIT_OK = 0
EXIT_CONFIG = 2  # ldirectord's exit status for configuration errors


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="check an ldirectord.cf file",
        description="Parse an ldirectord.cf file and report problems and warnings "
        "(exit 0: usable, 2: not usable).",
    )
    parser.add_argument("file", metavar="FILE", help="the configuration file (e.g. /etc/ha.d/ldirectord.cf)")
    parser.add_argument(
        "--json", action="store_true", help="print the parsed configuration as JSON on stdout"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path: str = args.file
    if not os.path.isfile(path):
        reason = "no such file" if not os.path.exists(path) else "not a regular file"
        print(f"saru check-config: cannot read {path}: {reason}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = parse_file(path)
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        errors = len(exc.errors)
        print(f"{path}: {errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    if args.json:
        json.dump(config_to_dict(config), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        reals = sum(len(v.reals) for v in config.virtuals)
        print(f"{path}: OK ({len(config.virtuals)} virtual services, {reals} real servers)")
    return EXIT_OK
