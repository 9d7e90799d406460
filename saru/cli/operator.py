"""``saru drain|enable|disable|weight``: an operator's override of one real, through the control socket.

``saru drain -c FILE PROXY SERVER`` sets the real's weight to 0 while its check passes (existing
connections stay, new ones go to the others); ``disable`` takes it out of the table; ``enable``
brings it back at its configured weight once its check passes; ``weight PROXY SERVER N`` gives it
weight N instead of the configured one. ``PROXY`` is the virtual service as ``tcp/ADDR:PORT``,
``udp/ADDR:PORT`` or ``fwmark/N`` (IPv6 in brackets), ``SERVER`` the real as ``ADDR:PORT``. The
override survives ``saru reload`` and a restart (a ``maintenancedir`` file for ``disable`` when the
config has one, else the daemon's state file). Exit 0 done, 1 refused or no daemon answers, 2 when
``-c`` names no daemon.

``saru drain`` without a real drains the *director* (saru.toml ``[bgp]``, docs/scale-out.md): its
routes are withdrawn first, the daemon stops once no traffic has come for ``--quiet`` seconds (at
most ``--timeout``), and the command waits for that.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from saru.cli.common import EXIT_BAD_TARGET, Target, add_target_arguments, ask, target_of
from saru.control import request_sync

PROXY_HELP = "the virtual service: tcp/ADDR:PORT, udp/ADDR:PORT or fwmark/N (IPv6 as tcp/[ADDR]:PORT)"
SERVER_HELP = "the real server: ADDR:PORT ([ADDR]:PORT for IPv6)"

COMMANDS = {
    "drain": ("drain a real server (weight 0), or without one the director ([bgp])",
              "Set a real server's weight to 0 while its check passes: the connections it has stay, new "
              "ones go to the other reals. Kept across saru reload and restarts until saru enable. "
              "Without PROXY and SERVER, drain this director (saru.toml [bgp]): withdraw its routes, "
              "wait until no traffic arrives for --quiet seconds (at most --timeout), then stop it."),
    "disable": ("take a real server out of the table",
                "Take a real server out of the table whatever its check says. With maintenancedir in the "
                "config this is ldirectord's maintenance file (ADDRESS:PORT in that directory, for every "
                "virtual with that real); otherwise it is kept in the daemon's state file."),
    "enable": ("undo drain, disable or weight",
               "Remove the operator's override: the real is back at its configured weight once its check "
               "passes (its check runs at once)."),
    "weight": ("set a real server's weight",
               "Give a real server weight N (0-65535) instead of the configured one while its check "
               "passes. Kept across saru reload and restarts until saru enable."),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, (short, long) in COMMANDS.items():
        p = sub.add_parser(name, help=short, description=long + " Exit 0 done, 1 refused or no daemon "
                           "answers, 2 when -c names no daemon.")
        add_target_arguments(p)
        p.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
        optional = "?" if name == "drain" else None
        p.add_argument("proxy", metavar="PROXY", help=PROXY_HELP, nargs=optional)
        p.add_argument("server", metavar="SERVER", help=SERVER_HELP, nargs=optional)
        if name == "drain":
            p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                           help="director drain: stop after this long even if traffic still arrives (300)")
            p.add_argument("--quiet", type=float, default=2.0, metavar="SECONDS",
                           help="director drain: stop once no traffic came for this long (2)")
        if name == "weight":
            p.add_argument("weight", metavar="WEIGHT", type=int, help="the new weight, 0-65535")
        p.set_defaults(func=run, operation=name)


def run(args: argparse.Namespace) -> int:
    target = target_of(args, f"saru {args.operation}")
    if target is None:
        return EXIT_BAD_TARGET
    if args.operation == "drain" and args.proxy is None:
        return drain_director(args, target)
    if args.proxy is None or args.server is None:
        print(f"saru {args.operation}: give PROXY and SERVER")
        return EXIT_BAD_TARGET
    params: dict[str, Any] = {"proxy": args.proxy, "server": args.server}
    if args.operation == "weight":
        params["weight"] = args.weight
    answer = ask(target, args.operation, **params)
    if answer is None:
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(describe(answer))
    return 0


def drain_director(args: argparse.Namespace, target: Target) -> int:
    """Withdraw this director's routes, then wait until its daemon has stopped."""
    if not (0 <= args.timeout <= 86400 and 0 <= args.quiet <= 86400):
        print("saru drain: --timeout and --quiet are seconds, 0-86400")
        return EXIT_BAD_TARGET
    answer = ask(target, "drain-director", within=args.timeout, quiet=args.quiet)
    if answer is None:
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(f"draining: withdrawn {', '.join(answer.get('withdrawn', [])) or '(no VIP)'}; stopping when no "
              f"traffic came for {args.quiet:g} s (at most {args.timeout:g} s)", flush=True)
    deadline = time.monotonic() + args.timeout + 60
    while time.monotonic() < deadline:
        try:
            request_sync(target.control, "status", timeout=5)
        except (OSError, ConnectionError, TimeoutError):
            if not args.json:
                print("drained: the director has stopped")
            return 0
        time.sleep(0.2)
    print("saru drain: the director is still running")
    return 1


def describe(answer: dict[str, Any]) -> str:
    """One line (two with a table error) saying what was done."""
    what = {"drain": "drained (weight 0)", "disable": "disabled (out of the table)",
            "enable": "enabled (configured weight once its check passes)",
            "weight": f"weight {answer.get('weight')}"}.get(answer.get("action", ""), answer.get("action", ""))
    reals = answer.get("reals") or [{"proxy": answer.get("proxy"), "server": answer.get("server")}]
    names = ", ".join(f"{r['server']} in {r['proxy']}" for r in reals)
    text = f"{names}: {what}" + ("" if answer.get("changed", True) else " (already so)")
    if answer.get("kept"):
        text += f"; kept in the {answer['kept']} {answer.get('path', '')}".rstrip()
    if answer.get("apply_error"):
        text += f"\nthe table could not be applied yet (the daemon retries): {answer['apply_error']}"
    return text
