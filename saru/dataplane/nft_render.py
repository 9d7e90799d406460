"""Pure translation between Saru's forwarding ``Table`` and nftables (no I/O in here).

``render(table, env, existing, draining)`` returns ONE nft script that the kernel applies as one
transaction. Saru owns two tables named ``saru`` and never touches any other:

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

Scheduling (hashing is per connection, never per packet):

* ``rr``/``wrr``: a slot sequence like IPVS's wrr (weights / gcd, interleaved); NAT walks it with
  ``numgen inc`` (exact round robin), DR hashes the client address . port into it;
* ``sh``/``mh``/``dh``: a Maglev lookup table (``MAGLEV_SIZE`` slots) rendered into a verdict map,
  indexed by ``jhash`` of the client address (``sh-port``/``mh-port``: . port; ``dh``: the
  destination address) with a fixed seed: two directors with the same table pick the same real;
* ``fo``: every new connection to the highest-weight real.

Persistence (``persistent`` seconds, ``netmask``): one dynamic set of masked client addresses per
destination with that timeout, refreshed by every new connection (and, in DR, every packet).

A table's identity and settings are written into rule comments (``saru S …`` / ``saru D …``) so that
``parse`` reads back exactly the ``Table`` that was applied: a restart with nothing changed writes
nothing. Object names are derived from stable hashes of the keys, so an apply only replaces chains;
the dynamic sets of destinations that stay survive every apply.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from saru.dataplane.schedulers import parse_flags, parse_netmask
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table

TABLE = "saru"
NAT_FAMILY = "inet"
DR_FAMILY = "netdev"
MAGLEV_SIZE = 1021  # prime; slots of the sh/mh/dh lookup table
MAX_SLOTS = 1024  # rr/wrr sequences longer than this are scaled down
HASH_SEED = 0x53415255  # "SARU": fixed, so every director hashes alike
FLOW_TIMEOUT = {"tcp": 900, "udp": 300, "fwm": 900}  # IPVS's tcp established / udp timeouts
CLOSING_TIMEOUT = 120  # a TCP flow after FIN/RST (IPVS's fin_wait / time_wait)
FLOW_SET_SIZE = 262144
PERSIST_SET_SIZE = 65536
DR_PRIORITY = 0
SUPPORTED_SCHEDULERS = frozenset({"rr", "wrr", "sh", "mh", "dh", "fo"})
COMMENT_MAX = 127


class RenderError(ValueError):
    """The table cannot be expressed in nftables (the message says why)."""


@dataclass(frozen=True)
class Environment:
    """What the renderer needs to know about the director (found by the data plane).

    ``devices``: NIC through which each non-local gate destination is reached (on-link);
    ``local``: addresses of the director itself (gate destinations there are served locally);
    ``ingress``: NICs whose ingress carries direct-routing virtuals;
    ``flow_timeouts`` / ``closing_timeout``: idle seconds of a DR flow by protocol, and of a TCP flow
    after its FIN or RST (they apply to flow sets created from then on).
    """

    devices: Mapping[str, str] = field(default_factory=dict)
    local: frozenset[str] = frozenset()
    ingress: tuple[str, ...] = ()
    flow_timeouts: Mapping[str, int] = field(default_factory=lambda: dict(FLOW_TIMEOUT))
    closing_timeout: int = CLOSING_TIMEOUT


@dataclass(frozen=True)
class Existing:
    """Objects currently in Saru's tables: family → chain names / set names."""

    chains: Mapping[str, frozenset[str]] = field(default_factory=dict)
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def has_table(self, family: str) -> bool:
        return family in self.chains or family in self.sets


Draining = Mapping[ServiceKey, Mapping[tuple[str, int], Dest]]


@dataclass(frozen=True)
class DestCounters:
    """Counters of one destination read from the kernel."""

    connections: int = 0
    packets: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Listing:
    """Saru's tables as read back from the kernel."""

    table: Table
    existing: Existing
    draining: Mapping[ServiceKey, Mapping[tuple[str, int], Dest]]
    service_counters: Mapping[ServiceKey, tuple[int, int]]  # packets, bytes
    dest_counters: Mapping[tuple[ServiceKey, tuple[str, int]], DestCounters]


# --------------------------------------------------------------------------------------------------
# names and metadata
# --------------------------------------------------------------------------------------------------


def _h(text: str, n: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def service_id(key: ServiceKey) -> str:
    return _h(f"{key.protocol}|{key.family}|{key.address}|{key.port}|{key.fwmark}", 10)


def dest_id(key: tuple[str, int]) -> str:
    return _h(f"{key[0]}|{key[1]}", 8)


def flow_set(sid: str, did: str) -> str:
    return f"f_{sid}_{did}"


def closing_set(sid: str, did: str) -> str:
    return f"z_{sid}_{did}"


def persist_set(sid: str, did: str, settings: ServiceSettings) -> str:
    return f"p_{sid}_{did}_{_h(f'{settings.persistent}|{settings.netmask}', 6)}"


def _opt(value: object) -> str:
    return "-" if value is None else quote(str(value), safe="")


def _unopt(text: str) -> str | None:
    return None if text == "-" else unquote(text)


def service_comment(service: Service) -> str:
    k, s = service.key, service.settings
    text = (f"saru S {k.protocol} {k.family} {_opt(k.address or None)} {k.port} {_opt(k.fwmark)} "
            f"{_opt(s.scheduler)} {_opt(s.persistent)} {_opt(s.netmask)} {_opt(s.schedflags)} {int(s.ops)}")
    if len(text) > COMMENT_MAX:
        raise RenderError(f"{k}: service settings too long to record in nftables")
    return text


def dest_comment(dest: Dest, state: str) -> str:
    text = (f"saru D {dest.forward} {dest.address} {dest.port} {dest.weight} {dest.upper_threshold} "
            f"{dest.lower_threshold} {state}")
    if len(text) > COMMENT_MAX:
        raise RenderError(f"destination {dest.hostport}: too long to record in nftables")
    return text


def parse_service_comment(text: str) -> Service | None:
    parts = text.split(" ")
    if len(parts) != 12 or parts[:2] != ["saru", "S"]:
        return None
    _, _, proto, family, address, port, fwmark, sched, persistent, netmask, schedflags, ops = parts
    fw = _unopt(fwmark)
    pers = _unopt(persistent)
    key = ServiceKey(proto, _unopt(address) or "", int(port), int(fw) if fw is not None else None,  # type: ignore[arg-type]
                     int(family))
    settings = ServiceSettings(
        scheduler=_unopt(sched) or "wrr",
        persistent=int(pers) if pers is not None else None,
        netmask=_unopt(netmask),
        schedflags=_unopt(schedflags),
        ops=ops == "1",
    )
    return Service(key, settings, {})


def parse_dest_comment(text: str) -> tuple[Dest, str] | None:
    parts = text.split(" ")
    if len(parts) != 9 or parts[:2] != ["saru", "D"]:
        return None
    _, _, forward, address, port, weight, upper, lower, state = parts
    dest = Dest(address, int(port), forward, int(weight), int(upper), int(lower))  # type: ignore[arg-type]
    return dest, state


# --------------------------------------------------------------------------------------------------
# scheduling slots
# --------------------------------------------------------------------------------------------------


def wrr_sequence(weights: Sequence[int]) -> list[int]:
    """Indices in IPVS wrr order for one full cycle (weights / gcd; 3:1 → 0 0 0 1)."""
    live = [w for w in weights if w > 0]
    if not live:
        return []
    g = math.gcd(*live)
    scaled = [w // g if w > 0 else 0 for w in weights]
    total = sum(scaled)
    if total > MAX_SLOTS:  # keep the map small: proportional, at least one slot each
        factor = MAX_SLOTS / total
        scaled = [max(1, round(w * factor)) if w > 0 else 0 for w in scaled]
        g2 = math.gcd(*[w for w in scaled if w > 0])
        scaled = [w // g2 for w in scaled]
    seq: list[int] = []
    for cw in range(max(scaled), 0, -1):
        seq.extend(i for i, w in enumerate(scaled) if w >= cw)
    return seq


def _digest64(data: str, person: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8, person=person).digest(), "big")


def maglev(dests: Sequence[tuple[str, int]], weights: Sequence[int], size: int = MAGLEV_SIZE) -> list[int]:
    """A Maglev lookup table: slot → index into ``dests`` (weights by turns; weight-0 owns none)."""
    owners = [i for i, w in enumerate(weights) if w > 0]
    if not owners:
        return []
    g = math.gcd(*[weights[i] for i in owners])
    table = [-1] * size
    perm = {i: _digest64(f"{dests[i][0]}|{dests[i][1]}", b"saru-mh-offset") % size for i in owners}
    skip = {i: _digest64(f"{dests[i][0]}|{dests[i][1]}", b"saru-mh-skip") % (size - 1) + 1 for i in owners}
    filled = 0
    while filled < size:
        for i in owners:
            for _ in range(weights[i] // g):
                p = perm[i]
                while table[p] != -1:
                    p = (p + skip[i]) % size
                table[p] = i
                perm[i] = p
                filled += 1
                if filled >= size:
                    return table
    return table


def slots(settings: ServiceSettings, dests: Sequence[Dest]) -> list[int]:
    """The slot table of a service: slot number → index into ``dests`` (sorted by key)."""
    weights = [d.weight for d in dests]
    sched = settings.scheduler
    if sched == "rr":
        return [i for i, w in enumerate(weights) if w > 0]
    if sched == "wrr":
        return wrr_sequence(weights)
    if sched == "fo":
        live = [i for i, w in enumerate(weights) if w > 0]
        if not live:
            return []
        best = max(weights[i] for i in live)
        return [next(i for i in live if weights[i] == best)]
    if sched in ("sh", "mh", "dh"):
        return maglev([d.key for d in dests], weights)
    raise RenderError(f"scheduler {sched!r} needs connection counts, which nftables does not keep "
                      f"(supported: {', '.join(sorted(SUPPORTED_SCHEDULERS))})")


def _intervals(table: Sequence[int]) -> list[tuple[int, int, int]]:
    """Runs of equal owners: (first slot, last slot, owner)."""
    runs: list[tuple[int, int, int]] = []
    for slot, owner in enumerate(table):
        if runs and runs[-1][2] == owner and runs[-1][1] == slot - 1:
            runs[-1] = (runs[-1][0], slot, owner)
        else:
            runs.append((slot, slot, owner))
    return runs


def _vmap(table: Sequence[int], target: Sequence[str]) -> str:
    parts = []
    for first, last, owner in _intervals(table):
        slot = str(first) if first == last else f"{first}-{last}"
        parts.append(f"{slot} : goto {target[owner]}")
    return "{ " + ", ".join(parts) + " }"


# --------------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------------


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _ipk(family: int) -> str:
    return "ip6" if family == 6 else "ip"


def _l4(key: ServiceKey) -> str:
    return "th" if key.protocol == "fwm" else key.protocol


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _persist_key(key: ServiceKey, settings: ServiceSettings) -> str:
    v4mask, v6prefix = parse_netmask(settings.netmask)
    ip = _ipk(key.family)
    if key.family == 6:
        if v6prefix >= 128:
            return f"{ip} saddr"
        mask = ipaddress.IPv6Address(((1 << 128) - 1) ^ ((1 << (128 - v6prefix)) - 1))
        return f"{ip} saddr & {mask}"
    if v4mask == 0xFFFFFFFF:
        return f"{ip} saddr"
    return f"{ip} saddr & {ipaddress.IPv4Address(v4mask)}"


def _hash_expr(key: ServiceKey, settings: ServiceSettings, size: int, dr: bool) -> str:
    ip, l4 = _ipk(key.family), _l4(key)
    sched = settings.scheduler
    flags = parse_flags(settings.schedflags)
    if sched in ("sh", "mh"):
        fields = f"{ip} saddr"
        if f"{sched}-port" in flags:
            fields += f" . {l4} sport"
    elif sched == "dh":
        fields = f"{ip} daddr"
    elif settings.persistent is not None:
        # a client's first connections may race before its persistence entry exists: hashing on
        # the client address alone sends them all to the same real
        fields = f"{ip} saddr"
    elif dr:
        fields = f"{ip} saddr . {l4} sport"
    else:
        return f"numgen inc mod {size}"
    return f"jhash {fields} mod {size} seed {HASH_SEED:#x}"


def _match(key: ServiceKey) -> str:
    if key.protocol == "fwm":
        nfproto = "ipv6" if key.family == 6 else "ipv4"
        return f"meta nfproto {nfproto} meta mark {key.fwmark or 0:#x}"
    return f"{_ipk(key.family)} daddr {key.address} {key.protocol} dport {key.port}"


def _match_dr(key: ServiceKey) -> str:
    if key.protocol == "fwm":
        proto = "ip6" if key.family == 6 else "ip"
        return f"meta protocol {proto} meta mark {key.fwmark or 0:#x} meta l4proto {{ tcp, udp }}"
    return f"{_ipk(key.family)} daddr {key.address} {key.protocol} dport {key.port}"


@dataclass
class _Script:
    """Objects and rules of one family's table, rendered into nft commands."""

    family: str
    sets: dict[str, str] = field(default_factory=dict)  # name → spec
    chains: dict[str, str] = field(default_factory=dict)  # name → spec ("" for regular chains)
    rules: list[tuple[str, str]] = field(default_factory=list)

    def chain(self, name: str, spec: str = "") -> None:
        self.chains[name] = spec

    def rule(self, chain: str, text: str) -> None:
        self.rules.append((chain, text))

    def commands(self, existing: Existing) -> list[str]:
        fam = f"{self.family} {TABLE}"
        have_chains = existing.chains.get(self.family, frozenset())
        have_sets = existing.sets.get(self.family, frozenset())
        if not self.chains and not self.sets:
            return [f"delete table {fam}"] if existing.has_table(self.family) else []
        out = [f"add table {fam}"]
        out += [f"flush chain {fam} {c}" for c in sorted(have_chains)]
        out += [f"delete chain {fam} {c}" for c in sorted(have_chains - self.chains.keys())]
        out += [f"delete set {fam} {s}" for s in sorted(have_sets - self.sets.keys())]
        out += [f"add set {fam} {s} {{ {spec} }}" for s, spec in sorted(self.sets.items())
                if s not in have_sets]
        out += [f"add chain {fam} {c}" + (f" {{ {spec} }}" if spec else "")
                for c, spec in self.chains.items()]
        out += [f"add rule {fam} {c} {text}" for c, text in self.rules]
        return out


def _classify(service: Service, drain: Mapping[tuple[str, int], Dest], env: Environment) -> str:
    """``dr`` when the service has a (non-local) gate destination, else ``nat``."""
    kinds = set()
    for dest in [*service.dests.values(), *drain.values()]:
        if is_local(dest, env):
            continue
        if dest.forward not in ("gate", "masq"):
            raise RenderError(f"{service.key}: forwarding method {dest.forward!r} of {dest.hostport} "
                              "is not supported by nftables (use gate or masq)")
        kinds.add(dest.forward)
    if kinds == {"gate", "masq"}:
        raise RenderError(f"{service.key}: nftables cannot mix gate and masq reals in one virtual service")
    return "dr" if "gate" in kinds else "nat"


def is_local(dest: Dest, env: Environment) -> bool:
    """A destination on the director itself (loopback, or a gate real at one of its addresses)."""
    return is_loopback(dest.address) or (dest.forward == "gate" and dest.address in env.local)


def _family_of(address: str, what: str) -> int:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        raise RenderError(f"{what}: {address!r} is not an IP address") from None


def _check(service: Service, draining: Mapping[tuple[str, int], Dest]) -> None:
    """Refuse what nftables cannot do, and anything that is not plain data (the script is text)."""
    key, settings = service.key, service.settings
    if key.protocol not in ("tcp", "udp", "fwm"):
        raise RenderError(f"{key}: unknown protocol")
    if settings.scheduler not in SUPPORTED_SCHEDULERS:
        slots(settings, [])  # raises with the explanation
    if settings.ops:
        raise RenderError(f"{key}: one-packet scheduling (ops) is not supported by nftables")
    if settings.persistent is not None and not 0 <= int(settings.persistent) < 2**31:
        raise RenderError(f"{key}: invalid persistent timeout {settings.persistent}")
    try:
        parse_netmask(settings.netmask)
    except ValueError as exc:
        raise RenderError(f"{key}: {exc}") from None
    if key.protocol == "fwm":
        if not isinstance(key.fwmark, int) or not 0 < key.fwmark < 2**32:
            raise RenderError(f"{key}: firewall-mark service without a valid mark")
    else:
        if _family_of(key.address, str(key)) != key.family:
            raise RenderError(f"{key}: the address is not IPv{key.family}")
        if not 0 < key.port < 65536:
            raise RenderError(f"{key}: port {key.port} out of range")
    for dest in [*service.dests.values(), *draining.values()]:
        if _family_of(dest.address, f"{key}: destination") != key.family:
            raise RenderError(f"{key}: destination {dest.hostport} is not IPv{key.family}")
        if not 0 <= dest.port < 65536:
            raise RenderError(f"{key}: destination port {dest.port} out of range")
        if dest.weight < 0:
            raise RenderError(f"{key}: negative weight for {dest.hostport}")


_DEVICE = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")


def _device(name: str) -> str:
    if not _DEVICE.fullmatch(name):
        raise RenderError(f"unexpected network interface name {name!r}")
    return name


def _render_nat(nat: _Script, service: Service, env: Environment) -> None:
    key, settings = service.key, service.settings
    sid = service_id(key)
    dests = [service.dests[k] for k in sorted(service.dests)]
    s_chain = f"s_{sid}"
    nat.chain(s_chain)
    nat.rule("nat_pre", f"{_match(key)} goto {s_chain}")
    nat.rule(s_chain, f'counter comment "{service_comment(service)}"')
    d_chains = [f"d_{sid}_{dest_id(d.key)}" for d in dests]
    persist = settings.persistent is not None
    for d, d_chain in zip(dests, d_chains, strict=True):
        nat.chain(d_chain)
        nat.rule(d_chain, f'counter comment "{dest_comment(d, "live")}"')
        if persist:
            pset = persist_set(sid, dest_id(d.key), settings)
            nat.sets[pset] = _persist_spec(key, settings)
            nat.rule(d_chain, f"update @{pset} {{ {_persist_key(key, settings)} }}")
            if d.weight > 0:
                nat.rule(s_chain, f"{_persist_key(key, settings)} @{pset} goto {d_chain}")
        nat.rule(d_chain, _nat_action(key, d))
    table = slots(settings, dests)
    if table:
        nat.rule(s_chain, f"{_hash_expr(key, settings, len(table), dr=False)} vmap {_vmap(table, d_chains)}")
    nat.rule(s_chain, "drop")


def _nat_action(key: ServiceKey, d: Dest) -> str:
    if is_loopback(d.address):
        if key.protocol == "fwm" or d.port in (0, key.port):
            return "accept"
        return f"meta l4proto {key.protocol} redirect to :{d.port}"
    ip = _ipk(key.family)
    if d.port == 0:
        return f"dnat {ip} to {d.address}"
    proto = "{ tcp, udp }" if key.protocol == "fwm" else key.protocol
    return f"meta l4proto {proto} dnat {ip} to {_host(d.address)}:{d.port}"


def _persist_spec(key: ServiceKey, settings: ServiceSettings) -> str:
    kind = "ipv6_addr" if key.family == 6 else "ipv4_addr"
    return (f"type {kind}; size {PERSIST_SET_SIZE}; flags dynamic,timeout; "
            f"timeout {max(1, settings.persistent or 0)}s;")


def _render_dr(
    dr: _Script, service: Service, drain: Mapping[tuple[str, int], Dest], env: Environment
) -> None:
    key, settings = service.key, service.settings
    sid = service_id(key)
    ip, l4 = _ipk(key.family), _l4(key)
    flow_key = f"{ip} saddr . {l4} sport"
    live = [service.dests[k] for k in sorted(service.dests)]
    gone = [drain[k] for k in sorted(drain) if k not in service.dests]
    s_chain, c_chain = f"s_{sid}", f"c_{sid}"
    dr.chain(s_chain)
    dr.chain(c_chain)
    dr.rule("dispatch", f"{_match_dr(key)} goto {s_chain}")
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
        dr.rule(d_chain, _dr_action(key, d, env))
        if state == "drain":
            continue
        dr.chain(n_chain)
        n_chains.append(n_chain)
        update = f"update @{fset} {{ {flow_key} }}"
        if persist:
            pset = persist_set(sid, did, settings)
            dr.sets[pset] = _persist_spec(key, settings)
            update += f" update @{pset} {{ {_persist_key(key, settings)} }}"
            if d.weight > 0:
                dr.rule(c_chain, f"{_persist_key(key, settings)} @{pset} goto {n_chain}")
        dr.rule(n_chain, f"{update} counter goto {d_chain}")
    dr.rule(s_chain, f"goto {c_chain}")
    if fsets and tcp:
        dr.rule(x_chain, f"goto {c_chain}")
    table = slots(settings, live)
    if table:
        dr.rule(c_chain, f"{_hash_expr(key, settings, len(table), dr=True)} vmap {_vmap(table, n_chains)}")
    dr.rule(c_chain, "drop")


def _dr_action(key: ServiceKey, d: Dest, env: Environment) -> str:
    if is_local(d, env):
        return "accept"
    device = env.devices.get(d.address)
    if device is None:
        raise RenderError(f"{key}: no network interface known for gate real {d.address}")
    return f'fwd {_ipk(key.family)} to {d.address} device "{_device(device)}"'


def render(
    table: Table,
    env: Environment = Environment(),
    existing: Existing = Existing(),
    draining: Draining | None = None,
) -> str:
    """The whole nft script (one transaction) that makes Saru's tables hold ``table``."""
    draining = draining or {}
    nat = _Script(NAT_FAMILY)
    dr = _Script(DR_FAMILY)
    nat_services: list[Service] = []
    dr_services: list[Service] = []
    for key in sorted(table.services, key=lambda k: (k.protocol, k.family, k.address, k.port, k.fwmark or 0)):
        service = table.services[key]
        drain = draining.get(key, {})
        _check(service, drain)
        (dr_services if _classify(service, drain, env) == "dr" else nat_services).append(service)
    if nat_services:
        nat.chain("nat_pre", "type nat hook prerouting priority dstnat; policy accept;")
        for service in nat_services:
            _render_nat(nat, service, env)
    if dr_services:
        if not env.ingress:
            raise RenderError("direct routing needs the director's network interface (none found)")
        for device in map(_device, env.ingress):
            name = f"in_{_h(device, 8)}"
            hook = f'type filter hook ingress device "{device}" priority {DR_PRIORITY}; policy accept;'
            dr.chain(name, hook)
            dr.rule(name, "goto dispatch")
        dr.chain("dispatch")
        for service in dr_services:
            _render_dr(dr, service, draining.get(service.key, {}), env)
    lines = nat.commands(existing) + dr.commands(existing)
    return "\n".join(lines) + ("\n" if lines else "")


# --------------------------------------------------------------------------------------------------
# reading back
# --------------------------------------------------------------------------------------------------


def _counter(expr: Iterable[Any]) -> tuple[int, int]:
    for e in expr:
        if isinstance(e, dict) and "counter" in e and isinstance(e["counter"], dict):
            return int(e["counter"].get("packets", 0)), int(e["counter"].get("bytes", 0))
    return 0, 0


def parse(documents: Iterable[Mapping[str, Any]]) -> Listing:
    """Saru's tables from ``nft -j list table …`` outputs (one document per table)."""
    chains: dict[str, set[str]] = {}
    sets: dict[str, set[str]] = {}
    services: dict[str, Service] = {}  # sid → service (dests added below)
    service_counters: dict[str, tuple[int, int]] = {}
    dests: dict[str, list[tuple[Dest, str, tuple[int, int]]]] = {}
    new_counts: dict[tuple[str, str], int] = {}
    for doc in documents:
        for item in doc.get("nftables", []):
            if "table" in item:
                chains.setdefault(item["table"]["family"], set())
            elif "chain" in item:
                chains.setdefault(item["chain"]["family"], set()).add(item["chain"]["name"])
            elif "set" in item:
                sets.setdefault(item["set"]["family"], set()).add(item["set"]["name"])
            elif "rule" in item:
                rule = item["rule"]
                chain = str(rule.get("chain", ""))
                comment = rule.get("comment")
                parts = chain.split("_")
                if comment and chain.startswith("s_"):
                    service = parse_service_comment(comment)
                    if service is not None:
                        services[parts[1]] = service
                        service_counters[parts[1]] = _counter(rule.get("expr", []))
                elif comment and chain.startswith("d_") and len(parts) == 3:
                    parsed = parse_dest_comment(comment)
                    if parsed is not None:
                        dests.setdefault(parts[1], []).append((*parsed, _counter(rule.get("expr", []))))
                elif chain.startswith("n_") and len(parts) == 3:
                    new_counts[(parts[1], parts[2])] = _counter(rule.get("expr", []))[0]
    table: dict[ServiceKey, Service] = {}
    draining: dict[ServiceKey, dict[tuple[str, int], Dest]] = {}
    svc_counters: dict[ServiceKey, tuple[int, int]] = {}
    dest_counters: dict[tuple[ServiceKey, tuple[str, int]], DestCounters] = {}
    for sid, service in services.items():
        live = {}
        for dest, state, (packets, nbytes) in dests.get(sid, []):
            if state == "drain":
                draining.setdefault(service.key, {})[dest.key] = dest
                continue
            live[dest.key] = dest
            conns = new_counts.get((sid, dest_id(dest.key)), packets)
            dest_counters[(service.key, dest.key)] = DestCounters(conns, packets, nbytes)
        table[service.key] = Service(service.key, service.settings, live)
        svc_counters[service.key] = service_counters.get(sid, (0, 0))
    existing = Existing({f: frozenset(c) for f, c in chains.items()},
                        {f: frozenset(s) for f, s in sets.items()})
    return Listing(Table(table), existing, draining, svc_counters, dest_counters)
