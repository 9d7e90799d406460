"""``saru plan``: the operations applying a config would make, without applying them.

With a daemon running the config's control socket, the plan starts from its live table and the
current health of the reals (what ``saru reload`` would do now), for the data plane that daemon
runs, planned as its reconciler plans: a virtual in panic mode (``[director] panic_threshold``)
keeps the reals whose checks failed together, and a ``# panic:`` line says so; the operator's
drain/disable/weight overrides apply; on an HA backup without warm standby (``[ha]``,
``warm_standby = false``) the plan is the empty table, as the daemon keeps its services out of the
table until it becomes master, and a ``# gated:`` line says so. Without one, it starts from an
empty table and assumes every real is up (``--assume down`` shows the all-down table instead), for
the data plane ``saru run`` would use (saru.toml's ``[director] dataplane``, else auto on this
machine). Only the proxy keeps a gate/ipip real's own port; the kernel planes give it the
virtual's port, as IPVS does.

The daemon checks its table against the kernel before it answers: a drift (the table changed
behind its back) is repaired first, and the plan says what was found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

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
from saru.model import Config, Override, RealRef, ServiceKey, Table, VirtualConfig
from saru.planner import desired_table, panic_counts, panic_state, real_ref


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


@dataclass
class LiveState:
    """What a running daemon plans from: its table, the reals' health, the services it owns, its data
    plane, the drift it found and repaired on this request — and what panic mode needs (when its
    reals' checks failed, its panics, its threshold) and the operator's overrides."""

    current: Table
    health: dict[RealRef, bool | None]
    owned: set[ServiceKey]
    plane: str | None
    drift: str | None
    failed: dict[RealRef, float] = field(default_factory=dict)  # this process's monotonic clock
    panic: dict[ServiceKey, float] = field(default_factory=dict)  # when each panic started (same clock)
    threshold: int = 0
    overrides: dict[RealRef, Override] = field(default_factory=dict)
    gated: bool = False  # an HA backup without warm standby: its services stay out of the table


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
    now = time.monotonic()
    current = table_from_list(answer["table"])
    known: dict[RealRef, bool | None] = {}
    live = LiveState(current, {}, set(), None, None, threshold=int(answer.get("panic_threshold", 0)))
    for h in answer["health"]:
        ref = RealRef(key_from_dict(h["service"]), h["address"], h["port"])
        known[ref] = h["up"]
        if h.get("failed_for") is not None:
            live.failed[ref] = now - float(h["failed_for"])
        if h.get("override"):
            live.overrides[ref] = Override(h["override"]["state"], h["override"].get("weight"))
    for v in config.virtuals:
        for r in v.reals:
            ref = real_ref(v, r)
            # a real the daemon does not check yet (new in this file) gets the assumed health
            live.health[ref] = known[ref] if ref in known else args.assume == "up"
    live.panic = {key_from_dict(p["service"]): now - float(p["since"]) for p in answer.get("panic", [])}
    live.owned = {key_from_dict(k) for k in answer.get("owned", [])} & set(current.services)
    plane = answer.get("dataplane")
    drift = answer.get("drift")
    live.plane = plane if isinstance(plane, str) else None
    live.gated = answer.get("gated") is True
    live.drift = drift.get("detail") if isinstance(drift, dict) else None
    return live


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
        assumed = args.assume == "up"
        live = LiveState(Table(), {real_ref(v, r): assumed for v in config.virtuals for r in v.reals}, set(),
                         _planned_plane(target), None)
    else:
        source = f"live table of the daemon at {target.control}"
    current = live.current
    plane = "proxy" if args.proxy_ports else live.plane
    if plane:
        source += f"; {plane} data plane"
    # as the daemon's reconciler plans: its panics (``panic_threshold``) and the operator's overrides
    panic, held = panic_state(config.virtuals, live.failed, live.threshold, live.panic, current, live.overrides)
    desired = desired_table(config, live.health, current, kernel_ports=plane != "proxy",
                            overrides=live.overrides, held=held)
    if live.gated:  # as the reconciler: an HA backup without warm standby keeps the owned services out
        desired = Table()
    ops = diff(current, desired, owned=live.owned | {v.key for v in config.virtuals})
    panics = [_panic_line(v, live) for v in config.virtuals if v.key in panic]
    if args.json:
        print(json.dumps({"source": source, "drift": live.drift, "panic": panics, "gated": live.gated,
                          "ops": [describe_op(o) for o in ops], "desired": table_to_list(desired)}, indent=2))
        return 0
    print(f"# plan for {target.config} ({source})")
    if live.drift:  # the daemon checked its kernel table on this request, found it changed and repaired it
        print(f"# {live.drift}")
    for line in panics:
        print(f"# {line}")
    if live.gated:
        print(f"# {GATED}")
    if not ops:
        print("# no changes")
    for op, change in zip(ops, narrate(ops, current, config), strict=True):
        print(f"{describe_op(op):<60}  # {change.message()}")
    return 0


GATED = ("gated: this director is an HA backup without warm_standby: its virtual services stay out of the "
         "table until it becomes master")


def _panic_line(virtual: VirtualConfig, live: LiveState) -> str:
    counted, times = panic_counts(virtual, live.failed, live.overrides)
    return (f"panic: virtual {virtual.name} keeps its last known set: {len(times)} of its {counted} reals "
            f"are down, more than panic_threshold {live.threshold}%; their failures are not applied")
