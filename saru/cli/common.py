"""Helpers shared by the command modules: which daemon a command means, talking to it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from saru.cli.target import Target, TargetError, resolve_target
from saru.config.diagnostics import ConfigError
from saru.control import request_sync

#: exit status of a command whose -c/--settings/--control arguments name nothing usable
EXIT_BAD_TARGET = 2


def add_target_arguments(parser: argparse.ArgumentParser, config_required: bool = False) -> None:
    """``-c FILE``, ``--settings`` and ``--control PATH``: which running daemon a command talks to."""
    parser.add_argument("-c", "--config", metavar="FILE", required=config_required,
                        help="the daemon's ldirectord.cf, or its saru.toml (locates its control socket)")
    parser.add_argument("--settings", metavar="SARU.TOML",
                        help="the daemon's saru.toml, when -c names the ldirectord.cf")
    parser.add_argument("--control", metavar="PATH",
                        help="control socket path (default: derived from the ldirectord.cf's name)")


def target_of(args: argparse.Namespace, prog: str, require_config: bool = False) -> Target | None:
    """The daemon ``args`` mean (see ``saru.cli.target``); prints why not and returns None."""
    try:
        return resolve_target(getattr(args, "config", None), getattr(args, "settings", None),
                              getattr(args, "control", None), require_config=require_config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
    except TargetError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    return None


def ask(target: Target, command: str, **params: Any) -> dict[str, Any] | None:
    """Send a command; print a readable error and return None when the daemon can't be reached."""
    path = target.control
    try:
        answer = request_sync(path, command, **params)
    except (OSError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        print(f"saru: cannot reach the daemon at {path}: {reason}", file=sys.stderr)
        return None
    if not answer.get("ok"):
        print(f"saru: {answer.get('error', 'request failed')}", file=sys.stderr)
        return None
    return answer
