"""The guide's Pacemaker configuration, generated from saru.toml: crm shell text or pcs commands (pure).

What the guide builds by hand, as one model (``cluster_layout``) and two renderings:

- group ``GrpBalancer`` = ``VIPCHK1`` (refuse to start while the VIP answers elsewhere) → ``LB_VIP``
  (``ocf:heartbeat:IPaddr2``, one per VIP) → ``LDIRECTOR1`` (``ocf:saru:director``, or the stock
  ``ocf:heartbeat:ldirectord`` driving ``saru-ldirectord``): monitor 30 s (timeout 60, on-fail
  restart), start delay 5 s, stop timeout 60 (on-fail block);
- ``PINGD-clone``: ``ocf:pacemaker:ping`` on both nodes (``host_list``, ``multiplier``,
  ``name=pingd_score``, monitor 10 s), with a location rule banning the group from a node that reaches
  no upstream host, a colocation with and an order after the clone;
- ``order-VIPCHK1-then-LB_VIP`` and ``order-LB_VIP-then-LDIRECTOR1`` as in the guide (the group
  already implies them);
- ``stonith-enabled=false``, ``no-quorum-policy=ignore``, ``resource-stickiness=INFINITY``
  (no fail-back).

``crm_configuration(...)`` is loadable with ``crm configure load update FILE``; ``pcs_commands(...)``
returns argv lists for pcs 0.10/0.11. Both raise ``ClusterConfigError`` when saru.toml cannot describe
a cluster (no ``[ha]`` section).
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass

from saru.model import Settings


class ClusterConfigError(ValueError):
    """saru.toml does not say enough to build the cluster configuration."""


@dataclass(frozen=True)
class Op:
    """One ``op`` line of a primitive."""

    name: str
    interval: str
    timeout: str
    on_fail: str | None = None
    start_delay: str | None = None

    def options(self) -> list[str]:
        out = [f"interval={self.interval}"]
        if self.start_delay:
            out.append(f"start-delay={self.start_delay}")
        out.append(f"timeout={self.timeout}")
        if self.on_fail:
            out.append(f"on-fail={self.on_fail}")
        return out


@dataclass(frozen=True)
class Primitive:
    """A resource: id, ``class:provider:type`` agent, parameters (in order) and operations."""

    id: str
    agent: str
    params: tuple[tuple[str, str], ...]
    ops: tuple[Op, ...]


@dataclass(frozen=True)
class Order:
    id: str
    first: str
    then: str
    symmetrical: bool


@dataclass(frozen=True)
class Layout:
    """Everything the cluster configuration holds, independent of the tool that loads it."""

    group: str
    members: tuple[Primitive, ...]  # in start order
    ping: Primitive | None
    clone: str | None
    ping_attribute: str
    ping_threshold: int  # the group is banned where the ping score is below this (no upstream host)
    location: str | None
    colocation: str | None
    orders: tuple[Order, ...]
    properties: tuple[tuple[str, str], ...] = (("stonith-enabled", "false"), ("no-quorum-policy", "ignore"))
    rsc_defaults: tuple[tuple[str, str], ...] = (("resource-stickiness", "INFINITY"),)


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s"


def cluster_layout(settings: Settings, *, config: str, binary: str | None = None,
                   settings_path: str | None = None) -> Layout:
    """The guide's resources and constraints for ``settings``.

    ``config`` is the ldirectord.cf the director runs; ``binary`` the absolute path of the ``saru``
    executable (agent ``saru``) or of ``saru-ldirectord`` (agent ``ldirectord``) as the cluster nodes
    see it — Pacemaker's PATH does not include a virtualenv; ``settings_path`` is passed to
    ``ocf:saru:director`` as ``settings``.
    """
    ha = settings.ha
    if ha is None:
        raise ClusterConfigError("saru.toml has no [ha] section: the cluster needs [ha] interface and vips")
    if not ha.vips:
        raise ClusterConfigError("[ha] vips is empty: the cluster needs at least one floating IP")
    if not config:
        raise ClusterConfigError("no ldirectord.cf: give [director] config in saru.toml or --config")
    c = settings.cluster
    members: list[Primitive] = []
    vip_ids = [c.vip_name if i == 0 else f"{c.vip_name}_{i + 1}" for i in range(len(ha.vips))]
    if ha.vipcheck:
        agent = "ocf:saru:VIPcheck" if c.vipcheck_agent == "saru" else "ocf:heartbeat:VIPcheck"
        members.append(Primitive(
            c.vipcheck_name, agent,
            (("target_ip", ",".join(ha.vip_addresses)), ("count", "1"),
             ("wait", str(max(1, math.ceil(ha.vipcheck_timeout))))),
            (Op("start", "0s", "90s", "restart"), Op("monitor", "10s", "60s", "restart"),
             Op("stop", "0s", "100s", "block")),
        ))
    for rid, vip in zip(vip_ids, ha.vips, strict=True):
        members.append(Primitive(
            rid, "ocf:heartbeat:IPaddr2",
            (("ip", str(vip.ip)), ("cidr_netmask", str(vip.network.prefixlen)), ("nic", ha.interface)),
            (Op("start", "0s", "60s", "restart"), Op("monitor", "10s", "60s", "restart"),
             Op("stop", "0s", "60s", "block")),
        ))
    director_ops = (
        Op("start", "0s", "60s", "restart",
           _seconds(c.start_delay) if c.start_delay else None),
        Op("monitor", _seconds(c.monitor_interval), _seconds(c.monitor_timeout), "restart"),
        Op("stop", "0s", _seconds(c.stop_timeout), "block"),
    )
    if c.agent == "saru":
        params: list[tuple[str, str]] = [("config", config)]
        if settings_path:
            params.append(("settings", settings_path))
        params.append(("binary", binary or "saru"))
        params.append(("dataplane", settings.director.dataplane))
        members.append(Primitive(c.director_name, "ocf:saru:director", tuple(params), director_ops))
    else:
        members.append(Primitive(c.director_name, "ocf:heartbeat:ldirectord",
                                 (("configfile", config), ("ldirectord", binary or "saru-ldirectord")),
                                 director_ops))
    orders: list[Order] = []
    ping = None
    clone = location = colocation = None
    threshold = 0
    if ha.ping is not None and ha.ping.hosts:
        p = ha.ping
        ping = Primitive(
            c.ping_name, "ocf:pacemaker:ping",
            (("name", c.ping_attribute), ("host_list", " ".join(p.hosts)), ("multiplier", str(p.multiplier)),
             ("attempts", str(p.attempts)), ("timeout", str(max(1, math.ceil(p.timeout))))),
            (Op("start", "0s", "60s", "restart"),
             Op("monitor", _seconds(c.ping_interval or 10), "60s", "restart"),
             Op("stop", "0s", "60s", "ignore")),
        )
        clone = f"{c.ping_name}-clone"
        threshold = p.multiplier
        location = f"location-{c.group}-{c.ping_name}"
        colocation = f"{c.group}-with-{c.ping_name}"
        orders.append(Order(f"order-{c.ping_name}-then-{c.group}", clone, c.group, symmetrical=False))
    if ha.vipcheck:
        orders.append(Order(f"order-{c.vipcheck_name}-then-{vip_ids[0]}", c.vipcheck_name, vip_ids[0], True))
    orders.append(Order(f"order-{vip_ids[-1]}-then-{c.director_name}", vip_ids[-1], c.director_name, True))
    return Layout(group=c.group, members=tuple(members), ping=ping, clone=clone, ping_attribute=c.ping_attribute,
                  ping_threshold=threshold, location=location, colocation=colocation, orders=tuple(orders))


# --------------------------------------------------------------------------------------------------
# crm shell
# --------------------------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_.,:/@%+=-]+")


def _crm_value(value: str) -> str:
    if value and _PLAIN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _crm_primitive(p: Primitive) -> str:
    lines = [f"primitive {p.id} {p.agent}"]
    if p.params:
        lines.append("params " + " ".join(f"{k}={_crm_value(v)}" for k, v in p.params))
    lines += [f"op {op.name} " + " ".join(op.options()) for op in p.ops]
    return " \\\n\t".join(lines)


def crm_configuration(settings: Settings, *, config: str, binary: str | None = None,
                      settings_path: str | None = None, source: str | None = None) -> str:
    """crm shell text for ``crm configure load update FILE`` (see ``cluster_layout`` for the arguments)."""
    return render_crm(cluster_layout(settings, config=config, binary=binary, settings_path=settings_path), source)


def render_crm(layout: Layout, source: str | None = None) -> str:
    out = [f"# The UltraMonkey guide's cluster, generated by saru cluster crm{f' from {source}' if source else ''}.",
           "# Load it on one node with: crm configure load update FILE ; check with: crm_verify -L -V"]
    out.append("property cib-bootstrap-options: " + " ".join(f"{k}={v}" for k, v in layout.properties))
    out.append("rsc_defaults rsc-options: " + " ".join(f"{k}={v}" for k, v in layout.rsc_defaults))
    out += [_crm_primitive(p) for p in layout.members]
    out.append(f"group {layout.group} " + " ".join(p.id for p in layout.members))
    if layout.ping is not None and layout.clone:
        out.append(_crm_primitive(layout.ping))
        out.append(f"clone {layout.clone} {layout.ping.id} meta interleave=true")
        attr = layout.ping_attribute
        out.append(f"location {layout.location} {layout.group} \\\n\trule -inf: not_defined {attr} "
                   f"or {attr} integer:lt {layout.ping_threshold}")
        out.append(f"colocation {layout.colocation} inf: {layout.group} {layout.clone}")
    for o in layout.orders:
        out.append(f"order {o.id} Mandatory: {o.first} {o.then} symmetrical={str(o.symmetrical).lower()}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# pcs
# --------------------------------------------------------------------------------------------------


def pcs_commands(settings: Settings, *, config: str, binary: str | None = None,
                 settings_path: str | None = None) -> list[list[str]]:
    """The same configuration as pcs (0.10/0.11) command lines, one argv per command."""
    return render_pcs(cluster_layout(settings, config=config, binary=binary, settings_path=settings_path))


def _pcs_create(p: Primitive, *tail: str) -> list[str]:
    argv = ["pcs", "resource", "create", p.id, p.agent, *(f"{k}={v}" for k, v in p.params)]
    for op in p.ops:
        argv += ["op", op.name, *op.options()]
    return [*argv, *tail]


def render_pcs(layout: Layout) -> list[list[str]]:
    cmds: list[list[str]] = [
        ["pcs", "property", "set", *(f"{k}={v}" for k, v in layout.properties)],
        ["pcs", "resource", "defaults", "update", *(f"{k}={v}" for k, v in layout.rsc_defaults)],
    ]
    cmds += [_pcs_create(p, "--group", layout.group) for p in layout.members]
    if layout.ping is not None and layout.clone:
        cmds.append(_pcs_create(layout.ping, "clone", "interleave=true"))
        attr = layout.ping_attribute
        cmds.append(["pcs", "constraint", "location", layout.group, "rule", f"constraint-id={layout.location}",
                     "score=-INFINITY", "not_defined", attr, "or", attr, "lt", "integer",
                     str(layout.ping_threshold)])
        cmds.append(["pcs", "constraint", "colocation", "add", layout.group, "with", layout.clone, "INFINITY",
                     f"id={layout.colocation}"])
    for o in layout.orders:
        cmds.append(["pcs", "constraint", "order", "start", o.first, "then", "start", o.then, "kind=Mandatory",
                     f"symmetrical={str(o.symmetrical).lower()}", f"id={o.id}"])
    return cmds


def pcs_script(commands: list[list[str]], source: str | None = None) -> str:
    """The pcs commands as a shell script (one quoted command per line)."""
    head = [f"# The UltraMonkey guide's cluster, generated by saru cluster pcs{f' from {source}' if source else ''}.",
            "# Run on one node of a running cluster (pcs 0.10 or later)."]
    return "\n".join([*head, *(shlex.join(c) for c in commands)]) + "\n"
