"""``saru plan``: the operations applying a config would make, without applying them.

With a daemon running the config's control socket, the plan starts from its live table and the
current health of the reals (what ``saru reload`` would do now), for the data plane that daemon
runs. Without one, it starts from an empty table and assumes every real is up (``--assume down``
shows the all-down table instead), for the data plane ``saru run`` would use (saru.toml's
``[director] dataplane``, else auto on this machine). Only the proxy keeps a gate/ipip real's own
port; the kernel planes give it the virtual's port, as IPVS does.

The daemon checks its table against the kernel before it answers: a drift (the table changed
behind its back) is repaired first, and the plan says what was found.
"""

from __future__ import annotations

import argparse
import json
import sys

from saru.cli.common import add_target_arguments, target_of
from saru.cli.target import Target
from saru.compat.ipvsadm import describe_op
from saru.config.diagnostics import ConfigError
from saru.config.ldirectord import parse_file
from saru.control import request_sync
from saru.control.codec import key_from_dict, table_from_list, table_to_list
from saru.dataplane.base import DataplaneError
from saru.dataplane.select import choose
from saru.diff import diff
from saru.events.narrate import narrate
from saru.model import Config, RealRef, ServiceKey, Table
from saru.planner import desired_table, real_ref


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="show the table operations a config would cause",
                       description=__doc__)
    add_target_arguments(p, config_required=True)
    p.add_argument("--assume", choices=("up", "down"), default="up",
                   help="health assumed for reals the daemon does not check yet, or for every real "
                        "when no daemon is running (default: up)")
    p.add_argument("--proxy-ports", action="store_true",
                   help="plan for the proxy data plane (gate/ipip reals keep their own port) whatever "
                        "plane the daemon or saru.toml names")
    p.add_argument("--json", action="store_true", help="print ops and the desired table as JSON")
    p.set_defaults(func=plan)


#: the daemon's table, the reals' health, the services it owns, its data plane, and the drift it
#: found and repaired on this request
LiveState = tuple[Table, dict[RealRef, bool | None], set[ServiceKey], str | None, str | None]


def _live_state(args: argparse.Namespace, target: Target, config: Config) -> LiveState | None:
    path = target.control
    if not path.exists():
        return None
    try:
        answer = request_sync(path, "table", timeout=10)
    except (OSError, ConnectionError, TimeoutError):
        return None
    if not answer.get("ok"):
        return None
    current = table_from_list(answer["table"])
    known = {RealRef(key_from_dict(h["service"]), h["address"], h["port"]): h["up"] for h in answer["health"]}
    health: dict[RealRef, bool | None] = {}
    for v in config.virtuals:
        for r in v.reals:
            ref = real_ref(v, r)
            # a real the daemon does not check yet (new in this file) gets the assumed health
            health[ref] = known[ref] if ref in known else args.assume == "up"
    owned = {key_from_dict(k) for k in answer.get("owned", [])} & set(current.services)
    plane = answer.get("dataplane")
    drift = answer.get("drift")
    return (current, health, owned, plane if isinstance(plane, str) else None,
            drift.get("detail") if isinstance(drift, dict) else None)


def _planned_plane(target: Target) -> str | None:
    """The plane ``saru run`` would use with these files (None when none could run here)."""
    try:
        return choose(target.dataplane, dry_run=True)[0]
    except DataplaneError:
        return None


def plan(args: argparse.Namespace) -> int:
    target = target_of(args, "saru plan", require_config=True)
    if target is None:
        return 2
    assert target.config is not None
    try:
        config = parse_file(target.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    live = _live_state(args, target, config)
    if live is None:
        source = f"no running daemon; empty table, every real assumed {args.assume}"
        current = Table()
        assumed = args.assume == "up"
        health = {real_ref(v, r): assumed for v in config.virtuals for r in v.reals}
        owned: set[ServiceKey] = set()
        plane = _planned_plane(target)
        drift = None
    else:
        source = f"live table of the daemon at {target.control}"
        current, health, owned, plane, drift = live
    if args.proxy_ports:
        plane = "proxy"
    if plane:
        source += f"; {plane} data plane"
    desired = desired_table(config, health, current, kernel_ports=plane != "proxy")
    ops = diff(current, desired, owned=owned | {v.key for v in config.virtuals})
    if args.json:
        print(json.dumps({"source": source, "drift": drift, "ops": [describe_op(o) for o in ops],
                          "desired": table_to_list(desired)}, indent=2))
        return 0
    print(f"# plan for {target.config} ({source})")
    if drift:  # the daemon checked its kernel table on this request, found it changed and repaired it
        print(f"# {drift}")
    if not ops:
        print("# no changes")
    for op, change in zip(ops, narrate(ops, current, config), strict=True):
        print(f"{describe_op(op):<60}  # {change.message()}")
    return 0
