"""``saru check-config FILE [--json]``: parse an ldirectord.cf (or a saru.toml) and report, touching nothing.

A saru.toml is validated, then the ldirectord.cf its ``[director] config`` names, if any.

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
from saru.config.native import Settings, load_settings

EXIT_OK = 0
EXIT_CONFIG = 2  # ldirectord's exit status for configuration errors


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="check an ldirectord.cf (or saru.toml) file",
        description="Parse an ldirectord.cf file and report problems and warnings "
        "(exit 0: usable, 2: not usable).",
    )
    parser.add_argument("file", metavar="FILE",
                        help="the configuration file (e.g. /etc/ha.d/ldirectord.cf, or a saru.toml)")
    parser.add_argument(
        "--json", action="store_true", help="print the parsed configuration as JSON on stdout"
    )
    parser.set_defaults(func=run)


def _report(path: str, exc: ConfigError) -> int:
    for diagnostic in exc.diagnostics:
        print(diagnostic, file=sys.stderr)
    errors = len(exc.errors)
    print(f"{path}: {errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
    return EXIT_CONFIG


def _readable(path: str) -> bool:
    if os.path.isfile(path):
        return True
    reason = "no such file" if not os.path.exists(path) else "not a regular file"
    print(f"saru check-config: cannot read {path}: {reason}", file=sys.stderr)
    return False


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """saru.toml as JSON-friendly data (addresses as text)."""
    import dataclasses

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return str(value)

    return plain(settings)  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> int:
    path: str = args.file
    if not _readable(path):
        return EXIT_CONFIG
    if path.endswith(".toml"):
        return _run_settings(args, path)
    try:
        config = parse_file(path)
    except ConfigError as exc:
        return _report(path, exc)
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    if args.json:
        json.dump(config_to_dict(config), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        reals = sum(len(v.reals) for v in config.virtuals)
        print(f"{path}: OK ({len(config.virtuals)} virtual services, {reals} real servers)")
    return EXIT_OK


def _run_settings(args: argparse.Namespace, path: str) -> int:
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        return _report(path, exc)
    for warning in settings.warnings:
        print(warning, file=sys.stderr)
    document: dict[str, Any] = {"settings": settings_to_dict(settings)}
    summary = f"{path}: OK (settings"
    summary += f"; HA {settings.ha.mode} on {settings.ha.interface}" if settings.ha else ""
    summary += ")"
    cf = settings.director.config
    if cf:
        if not _readable(cf):
            return EXIT_CONFIG
        try:
            config = parse_file(cf)
        except ConfigError as exc:
            return _report(cf, exc)
        for warning in config.warnings:
            print(warning, file=sys.stderr)
        document["config"] = config_to_dict(config)
        reals = sum(len(v.reals) for v in config.virtuals)
        summary += f"\n{cf}: OK ({len(config.virtuals)} virtual services, {reals} real servers)"
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(summary)
    return EXIT_OK
