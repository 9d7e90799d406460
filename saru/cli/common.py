"""Helpers shared by the command modules: finding the daemon's control socket, talking to it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from saru.control import default_socket_path, request_sync


def add_target_arguments(parser: argparse.ArgumentParser, config_required: bool = False) -> None:
    """``-c FILE`` and ``--control PATH``: which running daemon a command talks to."""
    parser.add_argument("-c", "--config", metavar="FILE", required=config_required,
                        help="the daemon's config file (locates its control socket)")
    parser.add_argument("--control", metavar="PATH",
                        help="control socket path (default: derived from the config file name)")


def control_path(args: argparse.Namespace) -> Path:
    if args.control:
        return Path(args.control)
    if args.config:
        return default_socket_path(args.config)
    return default_socket_path("ldirectord.cf")


def ask(args: argparse.Namespace, command: str, **params: Any) -> dict[str, Any] | None:
    """Send a command; print a readable error and return None when the daemon can't be reached."""
    path = control_path(args)
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
