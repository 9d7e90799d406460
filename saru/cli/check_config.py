"""``saru check-config [-c] FILE [--settings SARU.TOML] [--dataplane NAME] [--json]``: check, touching nothing.

FILE is an ldirectord.cf or a saru.toml (``-c FILE`` like every other command, or positional). A
saru.toml is validated, then the ldirectord.cf its ``[director] config`` names, if any. The
ldirectord.cf is then checked against the data plane ``saru run`` would use — ``--dataplane``,
else saru.toml's ``[director] dataplane``, else ``auto`` as this machine would decide it (without
loading modules or programming anything) — with the same check the daemon makes at start, so a
scheduler or forwarding method the plane cannot do is refused here, not at ``saru run``. A named
plane that cannot run on this machine is still checked against, with a warning.

With a saru.toml its ``[nft]`` settings count too (stateless NAT's refusals, ``STATELESS_RULES``).

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

from saru.cli.target import TargetError, split_files
from saru.config.diagnostics import ConfigError
from saru.config.json_view import config_to_dict
from saru.config.ldirectord import parse_file
from saru.config.native import load_settings
from saru.dataplane.base import DataplaneError
from saru.dataplane.select import CHOICES, availability, capabilities, choose, unsupported
from saru.model import Config, Diagnostic, NftSettings, Settings

EXIT_OK = 0
EXIT_CONFIG = 2  # ldirectord's exit status for configuration errors


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="check an ldirectord.cf (or saru.toml) file",
        description="Parse an ldirectord.cf (or a saru.toml and the ldirectord.cf it names) and check it "
        "against the data plane saru run would use; report problems and warnings "
        "(exit 0: usable, 2: not usable).",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("file", metavar="FILE", nargs="?",
                       help="the configuration file (e.g. /etc/ha.d/ldirectord.cf, or a saru.toml)")
    which.add_argument("-c", "--config", metavar="FILE", help="the same, as the other commands take it")
    parser.add_argument("--settings", metavar="SARU.TOML", help="a saru.toml to check with the ldirectord.cf")
    parser.add_argument("--dataplane", choices=CHOICES, default=None,
                        help="check against this data plane (default: saru.toml's [director] dataplane, "
                             "else auto: the one saru run would pick on this machine)")
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

    def plain(value: object) -> object:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return str(value)

    return {f.name: plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def dataplane_problems(config: Config, name: str, nft: NftSettings | None = None) -> tuple[str, list[Diagnostic]]:
    """(the plane checked against, what in ``config`` it cannot do): the daemon's start-up check,
    against the plane as saru.toml's ``[nft]`` settings ``nft`` make it (stateless NAT's refusals).

    ``auto`` is decided as ``saru run`` would decide it here, without side effects; a named plane
    that cannot run here is checked against anyway (a warning says so)."""
    if name == "auto":
        plane, _ = choose("auto", dry_run=True)
        label = f"{plane} (auto)"
    else:
        plane, label = name, name
        ok, why = availability(name, dry_run=True)
        if not ok:
            print(f"saru check-config: warning: the {name} data plane cannot run on this machine: {why}",
                  file=sys.stderr)
    return label, unsupported(config, capabilities(plane, nft))


def _check_cf(cf: str, dataplane: str, nft: NftSettings | None = None) -> tuple[Config, str] | int:
    """Parse and check one ldirectord.cf; (config, plane label), or the exit status after a report."""
    if not _readable(cf):
        return EXIT_CONFIG
    try:
        config = parse_file(cf)
    except ConfigError as exc:
        return _report(cf, exc)
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    try:
        label, problems = dataplane_problems(config, dataplane, nft)
    except DataplaneError as exc:
        print(f"saru check-config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if problems:
        return _report(cf, ConfigError(problems))
    return config, label


def _ok_line(cf: str, config: Config, label: str) -> str:
    reals = sum(len(v.reals) for v in config.virtuals)
    return f"{cf}: OK ({len(config.virtuals)} virtual services, {reals} real servers; data plane {label})"


def run(args: argparse.Namespace) -> int:
    path: str = args.config or args.file
    try:
        cf, toml = split_files(path, args.settings)
    except TargetError as exc:
        print(f"saru check-config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if toml is not None:
        return _run_settings(args, toml, cf)
    assert cf is not None
    checked = _check_cf(cf, args.dataplane or "auto")
    if isinstance(checked, int):
        return checked
    config, label = checked
    if args.json:
        json.dump(config_to_dict(config), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(_ok_line(cf, config, label))
    return EXIT_OK


def _run_settings(args: argparse.Namespace, path: str, cf: str | None) -> int:
    if not _readable(path):
        return EXIT_CONFIG
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
    cf = cf or settings.director.config
    if cf:
        checked = _check_cf(cf, args.dataplane or settings.director.dataplane, settings.nft)
        if isinstance(checked, int):
            return checked
        config, label = checked
        document["config"] = config_to_dict(config)
        summary += "\n" + _ok_line(cf, config, label)
    if args.json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(summary)
    return EXIT_OK
