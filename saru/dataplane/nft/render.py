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

import functools
import hashlib
import ipaddress
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from saru.dataplane.maglev import maglev_table
from saru.dataplane.netmask import parse_netmask
from saru.model import Dest, Service, ServiceKey, ServiceSettings, Table
from saru.schedflags import flag_names

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
PARK = 1 << 31  # slot-map keys from here on hold reals without a slot (no slot number gets there)


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
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)  # sets and maps
    maps: Mapping[str, frozenset[str]] = field(default_factory=dict)  # which of them are maps

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
    #: map-scheduled services: the real owning each slot (slot order)
    slot_owners: Mapping[ServiceKey, list[tuple[str, int]]] = field(default_factory=dict)


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


def real_comment(dest: Dest) -> str:
    """The metadata of a map-scheduled (masq) real on its map elements; the element itself holds
    the address and port (short: 10,000 of these are parsed by libnftables in one apply)."""
    return f"saru R {dest.weight} {dest.upper_threshold} {dest.lower_threshold} {dest.port}"


def parse_real_comment(text: str, address: str | None) -> tuple[Dest, str] | None:
    """A real from a map element's comment (``real_comment``, or a full ``dest_comment``) and the
    address the element holds."""
    parts = text.split(" ")
    if len(parts) == 6 and parts[:2] == ["saru", "R"] and address is not None:
        try:
            weight, upper, lower, port = (int(x) for x in parts[2:])
        except ValueError:
            return None
        return Dest(address, port, "masq", weight, upper, lower), "live"
    return parse_dest_comment(text)


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
    if min(live) == max(live):  # equal weights (the common case): one slot each, in order
        return [i for i, w in enumerate(weights) if w > 0]
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


def maglev(dests: Sequence[tuple[str, int]], weights: Sequence[int], size: int = MAGLEV_SIZE) -> list[int]:
    """A Maglev lookup table: slot → index into ``dests`` (``saru.dataplane.maglev``)."""
    return maglev_table(dests, weights, size)


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


@functools.lru_cache(maxsize=1 << 16)
def _address(address: str) -> tuple[int, bool] | None:
    """(IP version, loopback?) of an address, None if it is not one (cached: the hot path of a
    10,000-real apply must not build 10,000 ``ipaddress`` objects each time)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return ip.version, ip.is_loopback


def is_loopback(address: str) -> bool:
    parsed = _address(address)
    return parsed is not None and parsed[1]


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
    flags = flag_names(settings.schedflags, sched)
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
    """One family's table as objects: the unit the plane diffs between two applies.

    ``sets``: name → declaration; ``chains``: name → hook spec ("" for regular chains), in creation
    order; ``rules``: chain → its rules in order; ``elements``: set/map name → element key → the
    element's text (static elements only; dynamic sets carry none).
    """

    family: str
    sets: dict[str, str] = field(default_factory=dict)
    chains: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)

    def chain(self, name: str, spec: str = "") -> None:
        self.chains[name] = spec
        self.rules.setdefault(name, [])

    def rule(self, chain: str, text: str) -> None:
        self.rules.setdefault(chain, []).append(text)

    def element(self, name: str, key: str, text: str) -> None:
        self.elements.setdefault(name, {})[key] = text

    @property
    def empty(self) -> bool:
        return not self.chains and not self.sets


#: the public name of one family's rendered objects
Objects = _Script

#: marks what an adopted table holds but Saru did not render in this process (contents unknown)
UNKNOWN = "\0unknown"
UNKNOWN_MAP = "\0unknown : map"  # an adopted map (a set and a map of one name are not interchangeable)


def unknown_script(family: str, existing: Existing) -> _Script:
    """The objects ``existing`` names, contents unknown: every chain is flushed and rebuilt,
    every map refilled; dynamic sets that stay keep their entries."""
    old = _Script(family)
    for name in existing.chains.get(family, frozenset()):
        old.chains[name] = UNKNOWN
        old.rules[name] = [UNKNOWN]
    maps = existing.maps.get(family, frozenset())
    for name in existing.sets.get(family, frozenset()):
        old.sets[name] = UNKNOWN_MAP if name in maps else UNKNOWN
    return old


def _is_map(spec: str) -> bool:
    return " : " in spec


def _references(rules: Sequence[str], names: set[str]) -> bool:
    return any(f"@{name} " in f"{rule} " for rule in rules for name in names)


def transaction(old: _Script, new: _Script, existed: bool | None = None) -> list[str]:
    """The nft commands turning ``old`` into ``new``, touching only what differs.

    Order inside the one transaction: flush changed chains, delete stale elements, delete chains
    and sets that go, add sets and chains that come, add elements, add the changed chains' rules.
    ``existed``: whether the table exists in the kernel (default: ``old`` has objects).
    """
    fam = f"{new.family} {TABLE}"
    existed = (not old.empty) if existed is None else existed
    if new.empty:
        return [f"delete table {fam}"] if existed else []
    out = [] if existed else [f"add table {fam}"]
    recreated = {n for n, spec in new.sets.items() if n in old.sets and old.sets[n] != spec
                 and not (old.sets[n] in (UNKNOWN, UNKNOWN_MAP) and _is_map(old.sets[n]) == _is_map(spec))}
    gone_sets = (old.sets.keys() - new.sets.keys()) | recreated
    gone_chains = {c for c in old.chains if c not in new.chains or old.chains[c] not in (new.chains[c], UNKNOWN)}
    changed = [c for c in new.chains if c in old.chains and c not in gone_chains
               and (old.rules.get(c) != new.rules.get(c) or _references(new.rules.get(c, []), recreated))]
    out += [f"flush chain {fam} {c}" for c in sorted(gone_chains | set(changed))]
    for name, elements in sorted(new.elements.items()):
        before = old.elements.get(name)
        if name in gone_sets or name not in old.sets:
            continue
        if old.sets[name] in (UNKNOWN, UNKNOWN_MAP):  # adopted: whatever it holds is replaced
            out.append(f"flush {'map' if _is_map(new.sets[name]) else 'set'} {fam} {name}")
            continue
        if not before:
            continue
        stale = [k for k, text in before.items() if elements.get(k) != text]
        if stale and len(stale) == len(before) and len(stale) > 1:  # all go: cheaper as one flush
            out.append(f"flush {'map' if _is_map(new.sets[name]) else 'set'} {fam} {name}")
        elif stale:
            out.append(f"delete element {fam} {name} {{ {', '.join(stale)} }}")
    for name, before in sorted(old.elements.items()):  # maps that stay but lose every element
        if name in new.sets and name not in gone_sets and name not in new.elements and before:
            out.append(f"flush {'map' if _is_map(new.sets[name]) else 'set'} {fam} {name}")
    out += [f"delete chain {fam} {c}" for c in sorted(gone_chains)]
    out += [f"delete {'map' if _is_map(old.sets[n]) else 'set'} {fam} {n}" for n in sorted(gone_sets)]
    out += [f"add set {fam} {n} {{ {spec} }}" if not _is_map(spec) else f"add map {fam} {n} {{ {spec} }}"
            for n, spec in sorted(new.sets.items()) if n not in old.sets or n in gone_sets]
    out += [f"add chain {fam} {c}" + (f" {{ {spec} }}" if spec else "")
            for c, spec in new.chains.items() if c not in old.chains or c in gone_chains]
    for name, elements in sorted(new.elements.items()):
        before = old.elements.get(name) or {}
        fresh = name not in old.sets or name in gone_sets or old.sets[name] in (UNKNOWN, UNKNOWN_MAP)
        add = [text for k, text in elements.items() if fresh or before.get(k) != text]
        if add:
            out.append(f"add element {fam} {name} {{ {', '.join(add)} }}")
    for c in new.chains:
        if c not in old.chains or c in gone_chains or c in changed:
            out += [f"add rule {fam} {c} {text}" for text in new.rules.get(c, [])]
    return out


def _classify(service: Service, drain: Mapping[tuple[str, int], Dest], env: Environment) -> str:
    """``dr`` when the service has a (non-local) gate destination, else ``nat``."""
    forwards = {d.forward for d in service.dests.values()} | {d.forward for d in drain.values()}
    if forwards <= {"masq"}:  # the common case, without a look at each real
        return "nat"
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
    parsed = _address(address)
    if parsed is None:
        raise RenderError(f"{what}: {address!r} is not an IP address")
    return parsed[0]


def _check(
    service: Service, draining: Mapping[tuple[str, int], Dest], fresh: Sequence[Dest] | None = None
) -> None:
    """Refuse what nftables cannot do, and anything that is not plain data (the script is text).
    ``fresh``: the reals to look at (default: all; the others passed at an earlier build)."""
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
    family = key.family
    for dest in [*(service.dests.values() if fresh is None else fresh), *draining.values()]:
        parsed = _address(dest.address)
        if parsed is None or parsed[0] != family or not 0 <= dest.port < 65536 or dest.weight < 0:
            _family_of(dest.address, f"{key}: destination")
            if parsed is not None and parsed[0] != family:
                raise RenderError(f"{key}: destination {dest.hostport} is not IPv{family}")
            if not 0 <= dest.port < 65536:
                raise RenderError(f"{key}: destination port {dest.port} out of range")
            raise RenderError(f"{key}: negative weight for {dest.hostport}")


_DEVICE = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")


def _device(name: str) -> str:
    if not _DEVICE.fullmatch(name):
        raise RenderError(f"unexpected network interface name {name!r}")
    return name


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


def stable_slots(
    table: Sequence[int], keys: Sequence[tuple[str, int]], previous: Sequence[tuple[str, int]] | None
) -> list[int]:
    """``table`` (slot → dest index) rearranged so that slots keep their previous owner where the
    owner keeps that many slots: a change touches only the map elements it must (rr/wrr/fo only;
    the hashing schedulers need the canonical table, identical on every director)."""
    if not previous:
        return list(table)
    index = {k: i for i, k in enumerate(keys)}
    need = Counter(table)
    out = [-1] * len(table)
    for pos in range(min(len(table), len(previous))):
        i = index.get(previous[pos])
        if i is not None and need[i] > 0:
            out[pos] = i
            need[i] -= 1
    rest = []
    for i in table:
        if need[i] > 0:
            rest.append(i)
            need[i] -= 1
    fill = iter(rest)
    return [i if i >= 0 else next(fill) for i in out]


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


def park_key(key: tuple[str, int]) -> int:
    """Where a real without a slot is kept in its service's slot map: a key no slot number reaches
    (>= ``PARK``), derived from the real so that it stays put from apply to apply."""
    return PARK | (zlib.crc32(f"{key[0]}|{key[1]}".encode()) & (PARK - 1))


def _render_nat_map(
    nat: _Script, service: Service, previous: Sequence[tuple[str, int]] | None, memo: Memo | None = None,
    seen: _Seen | None = None,
) -> list[tuple[str, int]]:
    """A map-scheduled NAT service: slot → real address (all reals on one port, which the rule
    adds: the cheapest element for libnftables to parse) or slot → address . port."""
    key, settings = service.key, service.settings
    sid = service_id(key)
    keys = sorted(service.dests)
    dests = [service.dests[k] for k in keys]
    ip = _ipk(key.family)
    ports = {k[1] for k in keys}
    concat = key.protocol != "fwm" and len(ports) > 1  # fwm: addresses only (tcp and udp, port 0)
    s_chain, m_map = f"s_{sid}", f"m_{sid}"
    nat.chain(s_chain)
    nat.rule("nat_pre", f"{_match(key)} goto {s_chain}")
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
        pick = f"{_hash_expr(key, settings, len(table), dr=False)} map @{m_map}"
        if key.protocol == "fwm":
            nat.rule(s_chain, f"dnat {ip} to {pick}")
        else:
            port = "" if concat else f" : {next(iter(ports))}"
            nat.rule(s_chain, f"meta l4proto {key.protocol} dnat {ip} to {pick}{port}")
    nat.rule(s_chain, "drop")
    return [keys[i] for i in table]


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


@dataclass
class Rendered:
    """Saru's two tables as objects, and the slot owners of each map-scheduled service."""

    scripts: dict[str, _Script]
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
    nat = _Script(NAT_FAMILY)
    dr = _Script(DR_FAMILY)
    owners: dict[ServiceKey, list[tuple[str, int]]] = {}
    nat_services: list[Service] = []
    dr_services: list[Service] = []
    fresh: dict[ServiceKey, tuple[list[Dest], _Seen | None]] = {}
    for key in sorted(table.services, key=lambda k: (k.protocol, k.family, k.address, k.port, k.fwmark or 0)):
        service = table.services[key]
        drain = draining.get(key, {})
        changed, seen = fresh[key] = memo.fresh(service) if memo is not None else (list(service.dests.values()), None)
        _check(service, drain, changed if seen is not None else None)
        (dr_services if _classify(service, drain, env) == "dr" else nat_services).append(service)
    if memo is not None:
        for key in list(memo.seen):
            if key not in table.services:
                del memo.seen[key]
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
    if dr_services:
        if not env.ingress:
            raise RenderError("direct routing needs the director's network interface (none found)")
        for device in map(_device, env.ingress):
            name = f"in_{_h(device, 8)}"
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
    maps: dict[str, set[str]] = {}
    services: dict[str, Service] = {}  # sid → service (dests added below)
    service_counters: dict[str, tuple[int, int]] = {}
    dests: dict[str, list[tuple[Dest, str, tuple[int, int]]]] = {}
    new_counts: dict[tuple[str, str], int] = {}
    slots_of: dict[str, list[tuple[int, tuple[str, int]]]] = {}
    for doc in documents:
        for item in doc.get("nftables", []):
            if "table" in item:
                chains.setdefault(item["table"]["family"], set())
            elif "chain" in item:
                chains.setdefault(item["chain"]["family"], set()).add(item["chain"]["name"])
            elif "set" in item or "map" in item:
                obj = item.get("set") or item["map"]
                sets.setdefault(obj["family"], set()).add(obj["name"])
                if "map" in item:
                    maps.setdefault(obj["family"], set()).add(obj["name"])
                name = str(obj["name"])
                if name[:2] in ("m_", "r_"):
                    for slot, comment, real in _element_comments(obj.get("elem", [])):
                        parsed = parse_real_comment(comment, real)
                        if parsed is not None:
                            dests.setdefault(name[2:], []).append((*parsed, (-1, -1)))
                            if slot is not None:
                                slots_of.setdefault(name[2:], []).append((slot, parsed[0].key))
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
    owners: dict[ServiceKey, list[tuple[str, int]]] = {}
    for sid, service in services.items():
        live = {}
        for dest, state, (packets, nbytes) in dests.get(sid, []):
            if state == "drain":
                draining.setdefault(service.key, {})[dest.key] = dest
                continue
            live[dest.key] = dest
            if packets < 0:  # recorded in a map: no counter of its own
                continue
            conns = new_counts.get((sid, dest_id(dest.key)), packets)
            dest_counters[(service.key, dest.key)] = DestCounters(conns, packets, nbytes)
        table[service.key] = Service(service.key, service.settings, live)
        svc_counters[service.key] = service_counters.get(sid, (0, 0))
        if sid in slots_of:
            owners[service.key] = [dkey for _, dkey in sorted(slots_of[sid])]
    existing = Existing({f: frozenset(c) for f, c in chains.items()},
                        {f: frozenset(s) for f, s in sets.items()},
                        {f: frozenset(m) for f, m in maps.items()})
    return Listing(Table(table), existing, draining, svc_counters, dest_counters, owners)


def _element_comments(elements: Iterable[Any]) -> Iterable[tuple[int | None, str, str | None]]:
    """(slot or None, comment, the real's address) of the elements of a slot map or of
    a set of reals, in nft's JSON listing (map element: ``[{"elem": {"val": slot, "comment": …}},
    value]``; set element: ``{"elem": {"val": {"concat": [address, port]}, "comment": …}}``)."""
    for entry in elements:
        is_map = isinstance(entry, list) and len(entry) == 2
        head = entry[0] if is_map else entry
        if not (isinstance(head, dict) and isinstance(head.get("elem"), dict)):
            continue
        comment, val = head["elem"].get("comment"), head["elem"].get("val")
        if not isinstance(comment, str):
            continue
        real = _real(entry[1] if is_map else val)
        yield (val if is_map and isinstance(val, int) and val < PARK else None), comment, real


def _real(value: Any) -> str | None:
    """The address in a slot map's value (address, or address . port) or a set's key."""
    if isinstance(value, str):
        return value
    parts = value.get("concat") if isinstance(value, dict) else None
    return str(parts[0]) if isinstance(parts, list) and parts else None
