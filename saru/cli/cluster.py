"""``saru cluster crm|pcs``: print the guide's Pacemaker configuration generated from saru.toml.

``saru cluster crm [--settings saru.toml] [--config ldirectord.cf] [--binary PATH]`` prints crm shell
text for ``crm configure load update FILE``; ``saru cluster pcs`` prints the same as pcs commands.
The director resource runs the ldirectord.cf named by ``--config`` (default: saru.toml's
``[director] config``) with the executable named by ``--binary`` (default: this installation's
``saru``, or ``saru-ldirectord`` when ``[cluster] agent = "ldirectord"``), as an absolute path because
Pacemaker runs agents with a system PATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from saru.cluster.crm import ClusterConfigError, crm_configuration, pcs_commands, pcs_script
from saru.config.diagnostics import ConfigError
from saru.config.native import Settings, load_settings

DEFAULT_SETTINGS = "/etc/saru/saru.toml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="print the Pacemaker configuration (crm or pcs) for saru.toml",
                       description="Generate the guide's Pacemaker configuration from saru.toml: the group "
                                   "VIPcheck -> IPaddr2 -> director, the ping clone and its constraints, "
                                   "no fencing, no quorum policy, no fail-back.")
    tools = p.add_subparsers(dest="tool", metavar="TOOL")
    tools.required = True
    for tool, text in (("crm", "crm shell text (crm configure load update FILE)"),
                       ("pcs", "pcs commands, one per line")):
        t = tools.add_parser(tool, help=text, description=f"Print the cluster configuration as {text}.")
        t.add_argument("--settings", "-s", metavar="FILE", default=None,
                       help=f"saru.toml with [ha] (default {DEFAULT_SETTINGS})")
        t.add_argument("--config", "-c", metavar="FILE",
                       help="ldirectord.cf the director runs (default: [director] config of saru.toml)")
        t.add_argument("--binary", metavar="PATH",
                       help="absolute path of saru (or saru-ldirectord) on the cluster nodes "
                            "(default: this installation's)")
        t.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
        t.set_defaults(func=run)


def default_binary(name: str) -> str:
    """This installation's executable ``name``: next to the running interpreter's scripts, else on PATH."""
    candidate = Path(sys.prefix) / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name) or name


def run(args: argparse.Namespace) -> int:
    path = args.settings or DEFAULT_SETTINGS
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    for warning in settings.warnings:
        print(warning, file=sys.stderr)
    config = args.config or settings.director.config
    if not config:
        print(f"saru cluster: {path} names no ldirectord.cf ([director] config); give --config FILE",
              file=sys.stderr)
        return 2
    config = os.path.abspath(config)
    if not os.path.isfile(config):
        print(f"saru cluster: warning: {config} does not exist here (it must exist on the cluster nodes)",
              file=sys.stderr)
    _warn_mode(settings, path)
    name = "saru" if settings.cluster.agent == "saru" else "saru-ldirectord"
    binary = args.binary or default_binary(name)
    if not os.path.isabs(binary):
        print(f"saru cluster: warning: binary {binary!r} is not an absolute path; Pacemaker's PATH may not "
              "find it (use --binary)", file=sys.stderr)
    settings_path = settings.path if settings.cluster.agent == "saru" else None
    try:
        if args.tool == "crm":
            text = crm_configuration(settings, config=config, binary=binary, settings_path=settings_path,
                                     source=settings.path)
        else:
            text = pcs_script(pcs_commands(settings, config=config, binary=binary, settings_path=settings_path),
                              source=settings.path)
    except ClusterConfigError as exc:
        print(f"saru cluster: {path}: {exc}", file=sys.stderr)
        return 2
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"saru cluster: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


def _warn_mode(settings: Settings, path: str) -> None:
    if settings.ha is not None and settings.ha.mode != "pacemaker":
        print(f'saru cluster: warning: {path}: [ha] mode is "{settings.ha.mode}"; set mode = "pacemaker" so '
              "that the director leaves the floating IP to the cluster", file=sys.stderr)
