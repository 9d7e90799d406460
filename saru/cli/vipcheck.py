"""``saru vipcheck -i IF ADDRESS``: does any other host answer on ADDRESS? (the guide's VIPcheck step).

Sends an ARP probe (IPv4, sender 0.0.0.0 so nobody's cache changes) or a DAD-style neighbour
solicitation (IPv6), then an ICMP echo, and prints who answered. Exit status 0: the address is free;
1: someone answered (their MAC is printed); 2: the probe could not run (bad argument, no such
interface, not root). ``ocf:saru:VIPcheck`` can use it instead of ``ping`` (``method=arp``).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys

EXIT_FREE, EXIT_ANSWERED, EXIT_ERROR = 0, 1, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("vipcheck", help="probe whether another host answers on an address",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("address", help="the floating IP to probe (IPv4 or IPv6)")
    p.add_argument("-i", "--interface", required=True, help="the link to probe on")
    p.add_argument("-t", "--timeout", type=float, default=0.5, help="seconds to wait for answers (default 0.5)")
    p.add_argument("--all", action="store_true", help="list every host that answered, not just the first")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from saru.ha.vip import VIPError
    from saru.ha.vipcheck import probe_all, probe_vip

    try:
        address = str(ipaddress.ip_address(args.address))
    except ValueError:
        print(f"saru vipcheck: {args.address!r} is not an IP address", file=sys.stderr)
        return EXIT_ERROR
    if not 0 < args.timeout <= 60:
        print("saru vipcheck: --timeout must be between 0 and 60 seconds", file=sys.stderr)
        return EXIT_ERROR
    try:
        if args.all:
            answers = asyncio.run(probe_all(args.interface, address, args.timeout))
        else:
            first = asyncio.run(probe_vip(args.interface, address, args.timeout))
            answers = [first] if first else []
    except (VIPError, OSError) as exc:
        print(f"saru vipcheck: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        json.dump({"address": address, "interface": args.interface, "free": not answers,
                   "answers": [{"mac": a.mac, "method": a.method} for a in answers]}, sys.stdout)
        sys.stdout.write("\n")
    elif answers:
        for answer in answers:
            print(f"{address} answered by {answer.mac} ({answer.method}) on {args.interface}")
    else:
        print(f"{address}: nobody answered on {args.interface} within {args.timeout:g}s")
    return EXIT_ANSWERED if answers else EXIT_FREE
