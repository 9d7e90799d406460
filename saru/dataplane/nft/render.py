"""Saru's forwarding ``Table`` as nftables objects: the rulesets (pure, no I/O in here).

``build(table, env, draining, previous, memo)`` returns the objects of both tables (``Objects``,
which ``transaction`` turns into the commands of one apply); ``render(table, env, existing,
draining)`` returns ONE nft script that the kernel applies as one transaction. Saru owns two tables
named ``saru`` and never touches any other:

* ``table inet saru`` — LVS-NAT (``masq``): a ``nat`` prerouting chain dispatches each virtual
  (``ip daddr . dport`` or ``meta mark``) to a service chain that picks a destination for the first
  packet of a connection (conntrack keeps the binding, so table changes never move established
  connections) and ``dnat``\\ s to it;
* ``table netdev saru`` — LVS-DR (``gate``): an ``ingress`` chain on the director's NIC(s) forwards
  client packets unchanged to the real's MAC (``fwd ip to <real> device <nic>``: the neighbour table
  resolves the MAC, the source MAC becomes the director's). State lives in one dynamic *flow set*
  per destination (client address . port, with timeout): a SYN clears stale entries and is
  scheduled, every later packet follows its flow set; a FIN or RST moves the flow to the
  destination's short-lived *closing set*, so closed connections leave the flow set at once. So
  removing, quiescing or adding a real never moves another real's connections, and a removed gate
  real keeps its flow sets ("draining") until its connections are gone.

Scheduling, slot tables in ``slots``, rule text in ``exprs`` (hashing is per connection, never per
packet):

* ``rr``/``wrr``: a slot sequence like IPVS's wrr (weights / gcd, interleaved); NAT walks it with
  ``numgen inc`` (exact round robin), DR hashes the client address . port into it;
* ``sh``/``mh``/``dh``: a Maglev lookup table (``MAGLEV_SIZE`` slots) rendered into a verdict map,
  indexed by ``jhash`` of the client address (``sh-port``/``mh-port``: . port; ``dh``: the
  destination address) with a fixed seed: two directors with the same table pick the same real;
* ``fo``: every new connection to the highest-weight real.

With ``[nft] flowtable``, established NAT flows are offloaded to a flowtable (``offload``).

Persistence (``persistent`` seconds, ``netmask``): one dynamic set of masked client addresses per
destination with that timeout, refreshed by every new connection (and, in DR, every packet).

A table's identity and settings are written into rule comments (``names``) so that ``parse`` reads
back exactly the ``Table`` that was applied: a restart with nothing changed writes nothing. Object
names are derived from stable hashes of the keys, so an apply only replaces chains; the dynamic sets
of destinations that stay survive every apply. What nftables cannot do is refused first
(``validation``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from saru.dataplane.nft.environment import Environment, is_loopback
from saru.dataplane.nft.exprs import (
    dr_action,
    hash_expr,
    ip_keyword,
    l4_keyword,
    match_dr,
    match_nat,
    nat_action,
    persist_key,
    persist_spec,
    vmap,
)
from saru.dataplane.nft.names import (
    DR_FAMILY,
    NAT_FAMILY,
    RenderError,
    closing_set,
    dest_comment,
    dest_id,
    flow_set,
    ingress_chain,
    persist_set,
    service_comment,
    service_id,
)
from saru.dataplane.nft.offload import render_offload
from saru.dataplane.nft.slots import PARK, park_key, slots, stable_slots
from saru.dataplane.nft.stateless import render_stateless, start_stateless
from saru.dataplane.nft.transaction import Existing, Objects, transaction, unknown_script
from saru.dataplane.nft.validation import check_service, classify, device_name
from saru.model import Dest, Service, ServiceKey, Table

__all__ = ["Draining", "Memo", "Rendered", "build", "map_mode", "render"]


FLOW_SET_SIZE = 262144
DR_PRIORITY = 0
Draining = Mapping[ServiceKey, Mapping[tuple[str, int], Dest]]


@dataclass
class _Seen:
    dests: Mapping[tuple[str, int], Dest]  # the service's reals at the last build (the objects)
    records: dict[tuple[str, int], tuple[str, int]]
    concat: bool
    map_ok: bool


@dataclass
class Memo:
    """What the last ``build`` worked out per real, reused for the reals that are the very same
    objects this time (``apply_ops`` keeps untouched reals): a change of one real in a service of
    10,000 checks and formats one real, not 10,000. Pure caching: correct with or without it."""

    seen: dict[ServiceKey, _Seen] = field(default_factory=dict)

    def fresh(self, service: Service) -> tuple[list[Dest], _Seen | None]:
        """The reals not seen (as these objects) at the last build, and what was seen."""
        seen = self.seen.get(service.key)
        if seen is None:
            return list(service.dests.values()), None
        last = seen.dests
        return [d for k, d in service.dests.items() if last.get(k) is not d], seen


def map_mode(service: Service, fresh: Sequence[Dest] | None = None, seen: _Seen | None = None) -> bool:
    """A NAT service whose reals all are plain remote ``masq`` ones: scheduled through a data map
    (slot → real), so a change of N reals is N map elements, not N chains. (``fresh``/``seen``:
    only the reals that changed since a build that found all others plain are looked at.)"""
    if service.settings.persistent is not None:
        return False
    fwm = service.key.protocol == "fwm"  # tcp and udp behind one mark: addresses only
    dests = fresh if fresh is not None and seen is not None and seen.map_ok else service.dests.values()
    if any(d.forward != "masq" for d in dests) or any((d.port == 0) != fwm for d in dests):
        return False
    return not any(is_loopback(d.address) for d in dests)


def _records(
    keys: Sequence[tuple[str, int]], dests: Sequence[Dest], concat: bool, seen: _Seen | None = None
) -> dict[tuple[str, int], tuple[str, int]]:
    """Each map-scheduled real as the slot map shows it: the tail of its elements (`` comment
    "<real_comment>" : <address[ . port]>``) and the key it is parked at when it owns no slot.
    Formatted inline (the hot path of a 10,000-real apply); reals ``seen`` unchanged are reused."""
    last = seen.dests if seen is not None and seen.concat == concat else {}
    before = seen.records if seen is not None else {}
    out = {}
    for key, d in zip(keys, dests, strict=True):
        if last.get(key) is d:
            out[key] = before[key]
            continue
        value = f"{d.address} . {d.port}" if concat else d.address
        comment = f"saru R {d.weight} {d.upper_threshold} {d.lower_threshold} {d.port}"  # = real_comment(d)
        out[key] = (f' comment "{comment}" : {value}', park_key(key))
    return out


def _render_nat_map(
    nat: Objects, service: Service, previous: Sequence[tuple[str, int]] | None, memo: Memo | None = None,
    seen: _Seen | None = None,
) -> list[tuple[str, int]]:
    """A map-scheduled NAT service: slot → real address (all reals on one port, which the rule
    adds: the cheapest element for libnftables to parse) or slot → address . port."""
    key, settings = service.key, service.settings
    sid = service_id(key)
    keys = sorted(service.dests)
    dests = [service.dests[k] for k in keys]
    ip = ip_keyword(key.family)
    ports = {k[1] for k in keys}
    concat = key.protocol != "fwm" and len(ports) > 1  # fwm: addresses only (tcp and udp, port 0)
    s_chain, m_map = f"s_{sid}", f"m_{sid}"
    nat.chain(s_chain)
    nat.rule("nat_pre", f"{match_nat(key)} goto {s_chain}")
    nat.rule(s_chain, f'counter comment "{service_comment(service)}"')
    nat.sets[m_map] = f"typeof numgen inc mod 2 : {ip} daddr{f' . {key.protocol} dport' if concat else ''};"
    table = slots(settings, dests)
    if settings.scheduler in ("rr", "wrr", "fo"):
        table = stable_slots(table, keys, previous)
    records = _records(keys, dests, concat, seen)
    if memo is not None:
        memo.seen[key] = _Seen(service.dests, records, concat, True)
    in_order = [records[k] for k in keys]
    elements = {str(slot): f"{slot}{in_order[i][0]}" for slot, i in enumerate(table)}
    owned = set(table)
    used: set[int] = set()
    for i, (tail, park) in enumerate(in_order):  # reals without a slot (weight 0, fo's others)
        if i in owned:
            continue
        while park in used:  # a hash collision (rare): the next free key
            park = PARK | ((park + 1) & (PARK - 1))
        used.add(park)
        elements[str(park)] = f"{park}{tail}"
    nat.elements[m_map] = elements
    if table:
        pick = f"{hash_expr(key, settings, len(table), dr=False)} map @{m_map}"
        if key.protocol == "fwm":
            nat.rule(s_chain, f"dnat {ip} to {pick}")
        else:
            port = "" if concat else f" : {next(iter(ports))}"
            nat.rule(s_chain, f"meta l4proto {key.protocol} dnat {ip} to {pick}{port}")
    nat.rule(s_chain, "drop")
    return [keys[i] for i in table]


def _render_nat(nat: Objects, service: Service, env: Environment) -> None:
    key, settings = service.key, service.settings
    sid = service_id(key)
    dests = [service.dests[k] for k in sorted(service.dests)]
    s_chain = f"s_{sid}"
    nat.chain(s_chain)
    nat.rule("nat_pre", f"{match_nat(key)} goto {s_chain}")
    nat.rule(s_chain, f'counter comment "{service_comment(service)}"')
    d_chains = [f"d_{sid}_{dest_id(d.key)}" for d in dests]
    persist = settings.persistent is not None
    for d, d_chain in zip(dests, d_chains, strict=True):
        nat.chain(d_chain)
        nat.rule(d_chain, f'counter comment "{dest_comment(d, "live")}"')
        if persist:
            pset = persist_set(sid, dest_id(d.key), settings)
            nat.sets[pset] = persist_spec(key, settings)
            nat.rule(d_chain, f"update @{pset} {{ {persist_key(key, settings)} }}")
            if d.weight > 0:
                nat.rule(s_chain, f"{persist_key(key, settings)} @{pset} goto {d_chain}")
        nat.rule(d_chain, nat_action(key, d))
    table = slots(settings, dests)
    if table:
        nat.rule(s_chain, f"{hash_expr(key, settings, len(table), dr=False)} vmap {vmap(table, d_chains)}")
    nat.rule(s_chain, "drop")


def _render_dr(
    dr: Objects, service: Service, drain: Mapping[tuple[str, int], Dest], env: Environment
) -> None:
    key, settings = service.key, service.settings
    sid = service_id(key)
    ip, l4 = ip_keyword(key.family), l4_keyword(key)
    flow_key = f"{ip} saddr . {l4} sport"
    live = [service.dests[k] for k in sorted(service.dests)]
    gone = [drain[k] for k in sorted(drain) if k not in service.dests]
    s_chain, c_chain = f"s_{sid}", f"c_{sid}"
    dr.chain(s_chain)
    dr.chain(c_chain)
    dr.rule("dispatch", f"{match_dr(key)} goto {s_chain}")
    dr.rule(s_chain, f'counter comment "{service_comment(service)}"')
    kind = "ipv6_addr" if key.family == 6 else "ipv4_addr"
    flow_spec = (f"type {kind} . inet_service; size {FLOW_SET_SIZE}; flags dynamic,timeout; "
                 f"timeout {env.flow_timeouts[key.protocol]}s;")
    closing_spec = (f"type {kind} . inet_service; size {FLOW_SET_SIZE}; flags dynamic,timeout; "
                    f"timeout {env.closing_timeout}s;")
    all_dests = [(d, "live") for d in live] + [(d, "drain") for d in gone]
    fsets = {d.key: flow_set(sid, dest_id(d.key)) for d, _ in all_dests}
    for fset in fsets.values():
        dr.sets[fset] = flow_spec
    tcp = key.protocol in ("tcp", "fwm")
    zsets = {d.key: closing_set(sid, dest_id(d.key)) for d, _ in all_dests} if tcp else {}
    for zset in zsets.values():
        dr.sets[zset] = closing_spec
    is_tcp = "meta l4proto tcp " if key.protocol == "fwm" else ""
    x_chain = f"x_{sid}"
    if fsets and tcp:
        clear = " ".join(f"delete @{f} {{ {flow_key} }}" for f in [*fsets.values(), *zsets.values()])
        dr.rule(s_chain, f"{is_tcp}tcp flags & (syn | ack) == syn {clear} goto {c_chain}")
        dr.rule(s_chain, f"{is_tcp}tcp flags & (fin | rst) != 0 goto {x_chain}")
        dr.chain(x_chain)
    persist = settings.persistent is not None
    n_chains = []
    for d, state in all_dests:
        did = dest_id(d.key)
        d_chain, n_chain, fset = f"d_{sid}_{did}", f"n_{sid}_{did}", fsets[d.key]
        dr.chain(d_chain)
        dr.rule(s_chain, f"{flow_key} @{fset} update @{fset} {{ {flow_key} }} goto {d_chain}")
        if tcp:  # a closing connection moves to the short-lived closing set (IPVS's FIN_WAIT)
            zset = zsets[d.key]
            dr.rule(s_chain, f"{flow_key} @{zset} update @{zset} {{ {flow_key} }} goto {d_chain}")
            dr.rule(x_chain, f"{flow_key} @{fset} delete @{fset} {{ {flow_key} }} "
                             f"update @{zset} {{ {flow_key} }} goto {d_chain}")
            dr.rule(x_chain, f"{flow_key} @{zset} update @{zset} {{ {flow_key} }} goto {d_chain}")
        dr.rule(d_chain, f'counter comment "{dest_comment(d, state)}"')
        dr.rule(d_chain, dr_action(key, d, env))
        if state == "drain":
            continue
        dr.chain(n_chain)
        n_chains.append(n_chain)
        update = f"update @{fset} {{ {flow_key} }}"
        if persist:
            pset = persist_set(sid, did, settings)
            dr.sets[pset] = persist_spec(key, settings)
            update += f" update @{pset} {{ {persist_key(key, settings)} }}"
            if d.weight > 0:
                dr.rule(c_chain, f"{persist_key(key, settings)} @{pset} goto {n_chain}")
        dr.rule(n_chain, f"{update} counter goto {d_chain}")
    dr.rule(s_chain, f"goto {c_chain}")
    if fsets and tcp:
        dr.rule(x_chain, f"goto {c_chain}")
    table = slots(settings, live)
    if table:
        dr.rule(c_chain, f"{hash_expr(key, settings, len(table), dr=True)} vmap {vmap(table, n_chains)}")
    dr.rule(c_chain, "drop")


@dataclass
class Rendered:
    """Saru's two tables as objects, and the slot owners of each map-scheduled service."""

    scripts: dict[str, Objects]
    slot_owners: dict[ServiceKey, list[tuple[str, int]]]


def build(
    table: Table,
    env: Environment = Environment(),
    draining: Draining | None = None,
    previous: Mapping[ServiceKey, Sequence[tuple[str, int]]] | None = None,
    memo: Memo | None = None,
) -> Rendered:
    """The objects that make Saru's tables hold ``table`` (``previous``: slot owners of the last
    apply, so that unchanged reals keep their slots; ``memo``: per-real work of the last build)."""
    draining = draining or {}
    previous = previous or {}
    nat = Objects(NAT_FAMILY)
    dr = Objects(DR_FAMILY)
    owners: dict[ServiceKey, list[tuple[str, int]]] = {}
    nat_services: list[Service] = []
    dr_services: list[Service] = []
    fresh: dict[ServiceKey, tuple[list[Dest], _Seen | None]] = {}
    for key in sorted(table.services, key=lambda k: (k.protocol, k.family, k.address, k.port, k.fwmark or 0)):
        service = table.services[key]
        drain = draining.get(key, {})
        changed, seen = fresh[key] = memo.fresh(service) if memo is not None else (list(service.dests.values()), None)
        check_service(service, drain, changed if seen is not None else None)
        (dr_services if classify(service, drain, env) == "dr" else nat_services).append(service)
    if memo is not None:
        for key in list(memo.seen):
            if key not in table.services:
                del memo.seen[key]
    if env.nat == "stateless" and nat_services:
        start_stateless(nat)
        for service in nat_services:
            if memo is not None:
                memo.seen.pop(service.key, None)
            render_stateless(nat, service)
        nat_services = []
    if nat_services:
        nat.chain("nat_pre", "type nat hook prerouting priority dstnat; policy accept;")
        for service in nat_services:
            changed, seen = fresh[service.key]
            if map_mode(service, changed, seen):
                owners[service.key] = _render_nat_map(nat, service, previous.get(service.key), memo, seen)
            else:
                if memo is not None:
                    memo.seen.pop(service.key, None)
                _render_nat(nat, service, env)
        if env.flowtable:
            render_offload(nat, nat_services, env.flowtable)
    if dr_services:
        if not env.ingress:
            raise RenderError("direct routing needs the director's network interface (none found)")
        for device in map(device_name, env.ingress):
            name = ingress_chain(device)
            hook = f'type filter hook ingress device "{device}" priority {DR_PRIORITY}; policy accept;'
            dr.chain(name, hook)
            dr.rule(name, "meta pkttype host goto dispatch")  # not frames a promiscuous NIC overhears
        dr.chain("dispatch")
        for service in dr_services:
            _render_dr(dr, service, draining.get(service.key, {}), env)
    return Rendered({NAT_FAMILY: nat, DR_FAMILY: dr}, owners)


def render(
    table: Table,
    env: Environment = Environment(),
    existing: Existing = Existing(),
    draining: Draining | None = None,
) -> str:
    """The whole nft script (one transaction) that makes Saru's tables hold ``table``, whatever
    the objects ``existing`` names hold (every chain rebuilt, every map refilled)."""
    built = build(table, env, draining)
    lines: list[str] = []
    for family in (NAT_FAMILY, DR_FAMILY):
        old = unknown_script(family, existing)
        lines += transaction(old, built.scripts[family], existed=existing.has_table(family))
    return "\n".join(lines) + ("\n" if lines else "")
