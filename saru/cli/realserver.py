"""``saru realserver apply|check --vip VIP [--vip VIP6 ...]``: the guide's real-server preparation for
LVS direct routing, done (``apply``), verified (``check``) or reverted (``apply --undo``).

``apply`` puts each VIP on ``lo`` (/32 or /128), sets ``arp_ignore=1`` / ``arp_announce=2`` on ``all``
and on the outgoing interface (the default route's unless ``--interface``), and makes both persistent:
``/etc/sysctl.d/90-saru-realserver.conf`` plus one snippet for the network configuration system in use
(``--netconf`` overrides the detection). It is idempotent: a second run changes nothing and says so.
``--root DIR`` puts every file (and the state file ``/var/lib/saru/realserver.json``) under DIR;
``--no-runtime`` only writes the files (image builders). ``check`` exits 0 when every item is done,
1 otherwise; ``--json`` prints the items (or the changes) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saru.setup import netconf
from saru.setup.item import exit_status, render
from saru.setup.realserver_prep import Change, SetupError, Want, apply, check_items, observe, parse_vips, undo


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("realserver", help="prepare (apply) or verify (check) a direct-routing real server",
                       description="Put the VIPs on the loopback and restrict ARP (the guide's real-server "
                                   "steps), live and persistent; or check that it is done.")
    p.add_argument("action", choices=("apply", "check"))
    p.add_argument("--vip", action="append", default=[], metavar="VIP",
                   help="a virtual IP address (IPv4 or IPv6; repeat for several)")
    p.add_argument("--interface", metavar="IF",
                   help="the outgoing interface for the ARP sysctls (default: the default route's)")
    p.add_argument("--netconf", choices=netconf.SYSTEMS,
                   help="network configuration system for the persistent VIPs (default: detected)")
    p.add_argument("--root", default="/", metavar="DIR", help="write (and read) every file under DIR")
    p.add_argument("--no-runtime", action="store_true",
                   help="only the files: do not touch the live addresses and sysctls")
    p.add_argument("--undo", action="store_true", help="with apply: revert exactly what apply changed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"saru realserver: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    runtime = not args.no_runtime
    if args.undo:
        if args.action != "apply":
            return _fail("--undo goes with apply")
        return _undo(args, root, runtime)
    try:
        vips = parse_vips(args.vip)
    except SetupError as exc:
        return _fail(str(exc))
    try:
        want = _want(args, vips, root, runtime)
        if args.action == "check":
            items = check_items(want, observe(want, root, runtime), args.root)
            if args.json:
                print(json.dumps({"ok": exit_status(items) == 0, "netconf": want.netconf,
                                  "interface": want.interface, "items": [i.to_dict() for i in items]}, indent=2))
            else:
                print(render(items))
            return exit_status(items)
        show = None if args.json else (lambda change: print(change.text()))
        changes = apply(want, root, runtime, report=show)
        for vip, where in observe(want, root, runtime).elsewhere.items():
            print(f"saru realserver: warning: {vip} is also on {', '.join(where)} (not removed: apply only "
                  f"adds); this real answers ARP for it until you run: ip addr del {where[0]}", file=sys.stderr)
    except SetupError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({"changed": [c.__dict__ for c in changes], "netconf": want.netconf,
                          "interface": want.interface}, indent=2))
    elif not changes:
        print("nothing to do: this real server is already prepared for " + ", ".join(vips))
    return 0


def _want(args: argparse.Namespace, vips: tuple[str, ...], root: Path, runtime: bool) -> Want:
    from saru.setup import netinfo

    system = args.netconf
    if system is None:
        system, why = netconf.detect(root)
        if not args.json and args.action == "apply":
            print(f"network configuration: {system} ({why})", file=sys.stderr)
    interface = args.interface
    has_v4 = any(":" not in v for v in vips)
    if has_v4 and interface is None:
        if not runtime:
            raise SetupError("--no-runtime needs --interface (the real server's outgoing interface)")
        interface = netinfo.default_interface(4) or netinfo.default_interface(6)
        if interface is None:
            raise SetupError("no default route: name the outgoing interface with --interface")
    if interface is not None and runtime and not netinfo.link_exists(interface):
        raise SetupError(f"no interface {interface!r} on this host")
    if interface in ("lo", "all", "default"):
        raise SetupError(f"--interface {interface}: name the interface packets leave by (e.g. eth0)")
    return Want(vips, interface, system)


def _undo(args: argparse.Namespace, root: Path, runtime: bool) -> int:
    show = None if args.json else (lambda change: print(change.text()))
    try:
        changes: list[Change] = undo(root, runtime, report=show)
    except SetupError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({"changed": [c.__dict__ for c in changes]}, indent=2))
    elif not changes:
        print("nothing to undo: no record of a saru realserver apply here")
    return 0
