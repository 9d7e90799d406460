"""Which VIP this director announces, and how: a pure function of the config, the table it holds and
its state (no I/O; the daemon's announcer, ``saru.daemon.announcer``, feeds it and drives the routing
daemon with the answer).

A VIP is ``up`` (announced with ``[bgp] med``) while this director can serve it: the table is
applied, at least one real (not the fallback server) of a virtual on that VIP has a weight in it and
a check that does not fail, and the director is neither draining nor stopping. Otherwise it is
``withdrawn``, or — with ``down = "med"`` and only because its reals are down — ``down``: still
announced with ``down_med``, so the routers prefer the directors that can serve it and fall back to
this one when none can (ExaBGP's healthcheck does the same). A real that panic mode keeps in the
table although its check fails does not count: with several directors, one whose checks fail en
masse (often its own fault) leaves the traffic to the others. A director that has no table yet, is
draining or stopping always withdraws: it must not attract traffic it cannot forward.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from saru.model import BGPSettings, Config, RealRef, Table

__all__ = ["ROUTE_STATES", "Route", "announced_vips", "decide", "serving"]

Route = Literal["up", "down", "withdrawn"]
#: the values of ``Route``
ROUTE_STATES: tuple[Route, ...] = ("up", "down", "withdrawn")


def announced_vips(settings: BGPSettings, config: Config) -> tuple[str, ...]:
    """``[bgp] vips``, or every VIP of the config (firewall-mark virtuals have none), sorted."""
    if settings.vips:
        return tuple(sorted(set(settings.vips)))
    return tuple(sorted({v.key.address for v in config.virtuals if v.key.address}))


def serving(config: Config, table: Table, vips: Iterable[str],
            health: Mapping[RealRef, bool | None] | None = None) -> dict[str, bool]:
    """For each VIP: whether a virtual on it has a real (not its fallback server) with a weight in
    ``table`` whose check does not fail (``health``: the monitor's verdicts; a real that panic mode
    keeps in the table although its check fails does not count — other directors can serve)."""
    up = dict.fromkeys(vips, False)
    for virtual in config.virtuals:
        vip = virtual.key.address
        if vip not in up or up[vip]:
            continue
        service = table.services.get(virtual.key)
        if service is None:
            continue
        weighted = {d.address for d in service.dests.values() if d.weight > 0}
        up[vip] = any(r.address in weighted and (health is None or
                                                 health.get(RealRef(virtual.key, r.address, r.port)) is not False)
                      for r in virtual.reals)
    return up


def decide(vips: Iterable[str], up: Mapping[str, bool], *, ready: bool, draining: bool,
           down: Literal["withdraw", "med"]) -> dict[str, Route]:
    """Each VIP's route: ``up``, ``down`` (announced with the worse MED) or ``withdrawn``."""
    routes: dict[str, Route] = {}
    for vip in vips:
        if not ready or draining:
            routes[vip] = "withdrawn"
        elif up.get(vip, False):
            routes[vip] = "up"
        else:
            routes[vip] = "down" if down == "med" else "withdrawn"
    return routes
