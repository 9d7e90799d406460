"""``saru doctor [-c ldirectord.cf] [--settings saru.toml] [--json]``: check this director against the
guide's checklist (forwarding, redirects, reverse-path filter, data plane, conntrack, VIP ownership) and
probe the real servers (DR: ARP for the VIP, VIP accepted; NAT: return path through this director).

One line per item, ``[ ok ]``, ``[fail]``, ``[warn]`` or ``[stby]`` (with HA the VIP is on the peer),
each problem followed by a one-line fix. Exit 0 when nothing fails, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from saru.cli.target import TargetError, split_files
from saru.config.diagnostics import ConfigError
from saru.setup.item import exit_status, render

DEFAULT_CONFIG = "/etc/ha.d/ldirectord.cf"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check this director and probe its real servers",
                       description="The guide's director checklist, checked here, with active probes of the "
                                   "real servers (root needed for the probes).")
    p.add_argument("-c", "--config", metavar="FILE",
                   help=f"ldirectord.cf, or saru.toml (default: [director] config of --settings, else "
                        f"{DEFAULT_CONFIG})")
    p.add_argument("--settings", metavar="FILE", help="saru.toml ([ha] VIPs may be on the peer)")
    p.add_argument("--no-probe", action="store_true", help="skip the active probes (no packets sent)")
    p.add_argument("--timeout", type=float, default=0.5, metavar="S", help="seconds per probe (default 0.5)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"saru doctor: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from saru.config.ldirectord import parse_file
    from saru.config.native import load_settings
    from saru.setup.doctor import make_plan
    from saru.setup.doctor_run import run as doctor

    if not 0.01 <= args.timeout <= 30:
        return _fail("--timeout must be between 0.01 and 30 seconds")
    try:
        cf, toml = split_files(args.config, args.settings)  # -c saru.toml works as --settings
        settings = load_settings(toml) if toml else None
        path = cf or (settings.director.config if settings else None) or DEFAULT_CONFIG
        config = parse_file(path) if (cf or os.path.exists(path) or not settings) else None
    except TargetError as exc:
        return _fail(str(exc))
    except ConfigError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return 2
    plan = make_plan(config, settings)
    if not plan.vips and not plan.reals:
        return _fail(f"{path} defines no virtual service and no [ha] VIP: nothing to check")
    show = None if args.json else (lambda item: print(render([item]), flush=True))
    try:
        items = doctor(plan, probes=not args.no_probe, timeout=args.timeout, progress=show)
    except Exception as exc:  # netlink refused, no /proc: say so rather than a traceback
        return _fail(f"cannot inspect this host: {exc}")
    status = exit_status(items)
    if args.json:
        print(json.dumps({"ok": status == 0, "config": path, "items": [i.to_dict() for i in items]}, indent=2))
    else:
        fails = sum(1 for i in items if i.status == "fail")
        warns = sum(1 for i in items if i.status == "warn")
        print(f"{len(items)} checks: {fails} failed, {warns} warnings")
    return status
