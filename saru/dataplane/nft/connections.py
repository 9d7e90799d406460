"""The connections behind the nftables plane: conntrack's NAT entries and the direct-routing flow sets.

* ``nat_connections``: conntrack's entries DNATed to a real of a NAT virtual (pyroute2's
  ``Conntrack``; the kernel filters by virtual address and port);
* ``dr_connections``: the client address and port of each flow in a gate real's flow set
  (ESTABLISHED) or closing set (FIN_WAIT); the director sees no replies;
* ``flows_left``: whether a drained gate real still has flows (its sets are dropped once empty);
* ``expire_nat``: ``expire_nodest_conn`` for NAT, deleting the entries of reals that left the table
  (deleting the entry of a flow offloaded to a flowtable tears the offloaded flow down too).

Blocking; the plane calls these from a thread.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from saru.dataplane.base import ConnEntry, DataplaneError
from saru.dataplane.nft.libnft import Nft, NftError
from saru.dataplane.nft.names import DR_FAMILY, TABLE, closing_set, dest_id, flow_set, service_id
from saru.model import Dest, ServiceKey, Table

__all__ = ["dr_connections", "expire_nat", "flows_left", "nat_connections"]


# What Saru reads of pyroute2's conntrack entries (pyroute2 has no type information).
class _Tuple(Protocol):
    proto: int
    saddr: str
    sport: int
    daddr: str
    dport: int


class _ProtoInfo(Protocol):
    def state_name(self) -> str: ...


@dataclass(frozen=True)
class _Entry:
    """One conntrack entry as Saru reads it (pyroute2's ``ConntrackEntry`` cannot be built for an
    entry offloaded to a flowtable: the kernel dumps no protocol info for those)."""

    tuple_orig: _Tuple
    tuple_reply: _Tuple
    protoinfo: _ProtoInfo | None
    timeout: int | None
    status: int = 0


#: conntrack's IPS_OFFLOAD status bit: the flow is in a flowtable (``[nft] flowtable``)
IPS_OFFLOAD = 1 << 14


def _conntrack() -> tuple[type, type, type[Exception]]:
    """pyroute2's Conntrack, its tuple type and its netlink error."""
    try:
        from pyroute2 import Conntrack
        from pyroute2.conntrack import NFCTAttrTuple
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        raise DataplaneError(f"conntrack is not available: {exc}") from None
    return Conntrack, NFCTAttrTuple, NetlinkError


def _dump(ct: Any, tuple_type: Any, match: Any = None) -> Iterator[_Entry]:
    """Conntrack's entries (``match``: whose original tuple has these fields), read from the raw
    netlink messages: offloaded entries have no CTA_PROTOINFO, which pyroute2's entries require."""
    from pyroute2.conntrack import NFCTATcpProtoInfo

    for msg in ct.dump(tuple_orig=match):
        family = msg["nfgen_family"]
        orig = msg.get_attr("CTA_TUPLE_ORIG")
        if match is not None and not match.nla_eq(family, orig):
            continue
        first = tuple_type.from_netlink(family, orig)
        info = msg.get_attr("CTA_PROTOINFO")
        tcp = first.proto == socket.IPPROTO_TCP and info is not None and info.get_attr("CTA_PROTOINFO_TCP")
        yield _Entry(first, tuple_type.from_netlink(family, msg.get_attr("CTA_TUPLE_REPLY")),
                     NFCTATcpProtoInfo.from_netlink(info) if tcp else None,
                     msg.get_attr("CTA_TIMEOUT"), msg.get_attr("CTA_STATUS") or 0)


#: above this many virtuals a query reads conntrack once and sorts the entries here: each filtered
#: dump is a walk of the whole kernel table plus a netlink round trip through pyroute2 (~25 ms each,
#: measured: 1,000 virtuals made one `saru status` take 24 s), one dump is one walk
FILTERED_DUMPS_MAX = 8


def _destination(key: ServiceKey) -> tuple[int, str, int]:
    """(IP protocol, address, port) of a (non-fwm) virtual, as conntrack's original tuple has them."""
    return socket.IPPROTO_UDP if key.protocol == "udp" else socket.IPPROTO_TCP, key.address, key.port


class _Dumper:
    """Conntrack's entries by virtual: the kernel filters by address and port for a few virtuals;
    for many (``expect`` > FILTERED_DUMPS_MAX) one dump is sorted by original destination."""

    def __init__(self, ct: Any, tuple_type: type, netlink_error: type[Exception], expect: int = 1) -> None:
        self.ct, self.tuple_type, self.netlink_error = ct, tuple_type, netlink_error
        self.cache: list[_Entry] | None = None
        self.by_destination: dict[tuple[int, str, int], list[_Entry]] | None = None
        self.expect = expect

    def everything(self) -> list[_Entry]:
        if self.cache is None:
            self.cache = list(_dump(self.ct, self.tuple_type))
        return self.cache

    def _sorted(self) -> dict[tuple[int, str, int], list[_Entry]]:
        if self.by_destination is None:
            self.by_destination = {}
            for e in self.everything():
                o = e.tuple_orig
                self.by_destination.setdefault((o.proto, o.daddr, o.dport), []).append(e)
        return self.by_destination

    def of_virtual(self, key: ServiceKey) -> list[_Entry]:
        """The entries whose original destination is the (non-fwm) virtual."""
        destination = _destination(key)
        if self.expect > FILTERED_DUMPS_MAX or self.by_destination is not None:
            return self._sorted().get(destination, [])
        family = socket.AF_INET6 if key.family == 6 else socket.AF_INET
        proto, address, port = destination
        match = self.tuple_type(family=family, proto=proto, daddr=address, dport=port)
        try:
            return list(_dump(self.ct, self.tuple_type, match))
        except self.netlink_error:  # the kernel would not filter (seen for IPv6): match here
            return self._sorted().get(destination, [])


def nat_connections(
    table: Table, only: frozenset[ServiceKey] | None = None
) -> list[tuple[ServiceKey, ConnEntry]]:
    """Conntrack's entries of NAT virtuals (``only``: of these); the kernel filters by virtual
    address and port, so a big conntrack table is not copied to Python for each query."""
    conntrack, tuple_type, netlink_error = _conntrack()
    wanted = [s for k, s in table.services.items() if (only is None or k in only) and s.dests
              and all(d.forward == "masq" for d in s.dests.values())]
    if not wanted:
        return []
    out: list[tuple[ServiceKey, ConnEntry]] = []
    try:
        with conntrack() as ct:
            dumper = _Dumper(ct, tuple_type, netlink_error, expect=len(wanted))
            by_dest: dict[tuple[int, str, int], ServiceKey] = {}
            for service in wanted:
                key = service.key
                if key.protocol == "fwm":  # the mark is not in the tuple: match by real
                    for d in service.dests.values():
                        for p in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
                            by_dest[(p, d.address, d.port)] = key
                    continue
                out += [(key, c) for e in dumper.of_virtual(key) if (c := _conn(e)) is not None]
            if by_dest:
                for e in dumper.everything():
                    r = e.tuple_reply
                    key_of = by_dest.get((e.tuple_orig.proto, r.saddr, r.sport)) or by_dest.get(
                        (e.tuple_orig.proto, r.saddr, 0))
                    if key_of is not None and (c := _conn(e)) is not None:
                        out.append((key_of, c))
    except (OSError, netlink_error) as exc:
        raise DataplaneError(f"cannot read conntrack: {exc}") from None
    return out


def expire_nat(gone: Mapping[ServiceKey, Iterable[tuple[str, int]]]) -> int:
    """expire_nodest_conn for NAT: delete conntrack's entries DNATed to reals that left their virtual
    (``gone``: virtual → the reals' (address, port); port 0 matches any port). The next packet of
    such a flow finds no entry and, not being a SYN, is answered by a reset from the real it is
    scheduled to anew (or dropped): the client learns at once instead of waiting on a dead real.
    Returns how many entries were deleted; DataplaneError when conntrack cannot be read."""
    conntrack, tuple_type, netlink_error = _conntrack()
    deleted = 0
    try:
        with conntrack() as ct:
            dumper = _Dumper(ct, tuple_type, netlink_error, expect=len(gone))
            for key, reals in gone.items():
                targets = set(reals)
                if not targets:
                    continue
                entries = dumper.everything() if key.protocol == "fwm" else dumper.of_virtual(key)
                for e in entries:
                    r = e.tuple_reply
                    if (r.saddr, r.sport) in targets or (r.saddr, 0) in targets:
                        if _conn(e) is None:
                            continue  # not translated: not a flow of this virtual's reals
                        try:
                            ct.delete(e.tuple_orig)
                            deleted += 1
                        except netlink_error:  # ended meanwhile
                            pass
    except (OSError, netlink_error) as exc:
        raise DataplaneError(f"cannot expire conntrack entries: {exc}") from None
    return deleted


def dr_connections(
    nft: Nft, table: Table, draining: Mapping[ServiceKey, Mapping[tuple[str, int], Dest]]
) -> list[ConnEntry]:
    """The flows in the flow sets and closing sets of the gate reals (live and draining)."""
    out: list[ConnEntry] = []
    for key, service in table.services.items():
        if not any(d.forward == "gate" for d in service.dests.values()):
            continue
        sid = service_id(key)
        dests = {**draining.get(key, {}), **service.dests}
        for dkey in dests:
            for name, conn_state in ((flow_set(sid, dest_id(dkey)), "ESTABLISHED"),
                                     (closing_set(sid, dest_id(dkey)), "FIN_WAIT")):
                try:
                    text = nft.run(f"list set {DR_FAMILY} {TABLE} {name}", json_out=True)
                except NftError:
                    continue
                for item in json.loads(text).get("nftables", []):
                    for elem in item.get("set", {}).get("elem", []):
                        entry = _flow_entry(key, dkey, elem, conn_state)
                        if entry is not None:
                            out.append(entry)
    return out


def flows_left(nft: Nft, key: ServiceKey, dkey: tuple[str, int]) -> bool:
    """Whether a (drained) gate real still has flows in its flow set or closing set."""
    sid, did = service_id(key), dest_id(dkey)
    for name in (flow_set(sid, did), closing_set(sid, did)):
        try:
            out = nft.run(f"list set {DR_FAMILY} {TABLE} {name}", json_out=True)
        except NftError:
            continue
        for item in json.loads(out).get("nftables", []):
            if "set" in item and item["set"].get("elem"):
                return True
    return False

def _conn(e: _Entry) -> ConnEntry | None:
    """A conntrack entry DNATed to a real (None when it was not translated)."""
    o, r = e.tuple_orig, e.tuple_reply
    if (r.saddr, r.sport) == (o.daddr, o.dport):
        return None
    proto = "UDP" if o.proto == socket.IPPROTO_UDP else "TCP"
    if e.protoinfo is not None:
        state = e.protoinfo.state_name()
    else:  # a TCP flow in a flowtable is established (the kernel says no more)
        state = "ESTABLISHED" if proto == "TCP" and e.status & IPS_OFFLOAD else "NONE"
    return ConnEntry(proto, (o.saddr, o.sport), (o.daddr, o.dport), (r.saddr, r.sport), state, float(e.timeout or 0))


def _flow_entry(key: ServiceKey, dkey: tuple[str, int], elem: object, state: str) -> ConnEntry | None:
    """One flow-set element (``{"elem": {"val": {"concat": [addr, port]}, "expires": s}}``)."""
    body = elem.get("elem", {}) if isinstance(elem, dict) else {}
    val = body.get("val", elem)
    parts = val.get("concat") if isinstance(val, dict) else None
    if not parts or len(parts) != 2:
        return None
    proto = "UDP" if key.protocol == "udp" else "TCP"
    port = key.port or dkey[1]
    return ConnEntry(proto, (str(parts[0]), int(parts[1])), (key.address, port), (dkey[0], dkey[1] or port),
                     state if proto == "TCP" else "NONE", float(body.get("expires", 0)))
