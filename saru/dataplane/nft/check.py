"""How the nftables plane checks the kernel against what it applied, cheaply.

* ``Generation``: the ruleset's generation id, read with one ``NFT_MSG_GETGEN`` netlink request
  (a stdlib socket, ~20 µs). The kernel bumps it by exactly one on every committed transaction of
  the network namespace, whoever commits (an aborted one leaves it alone; packet-path set updates
  and element expiry do not count). While it has not moved since Saru last saw its tables in
  sync, nothing — anywhere in the ruleset — has changed, and no listing is needed.
* ``object_problems``: Saru's objects (chains, sets and maps, flowtables, rule counts per chain, elements of
  the static maps) in the kernel's JSON listing against the ones the plane rendered — damage that
  the table read back from the comments would not show (``nft flush chain inet saru nat_pre``).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from saru.dataplane.nft.names import TABLE
from saru.dataplane.nft.transaction import UNKNOWN, UNKNOWN_MAP, Objects

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFT_MSG_NEWGEN = 15
NFTA_GEN_ID = 1
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_NFGEN = struct.Struct("=BBH")  # struct nfgenmsg

__all__ = ["Generation", "next_generation", "object_problems", "parse_generation"]


def next_generation(gen: int) -> int:
    """The id after ``gen`` (a u32 that skips 0 when it wraps, as the kernel's counter does)."""
    following = (gen + 1) & 0xFFFFFFFF
    return following or 1


class Generation:
    """The ruleset generation of this process's network namespace; ``read()`` is None when the
    kernel will not say (then every check lists Saru's tables)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self.broken = False

    def read(self) -> int | None:
        if self.broken:
            return None
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                           NETLINK_NETFILTER)
                self._sock.settimeout(2.0)
                self._sock.bind((0, 0))
            self._seq += 1
            kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN
            body = _NFGEN.pack(socket.AF_UNSPEC, 0, 0)
            self._sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST, self._seq, 0) + body)
            while True:
                data = self._sock.recv(8192)
                gen = parse_generation(data, self._seq)
                if gen is not None:
                    return gen
        except (OSError, ValueError):
            self.close()
            self.broken = True  # e.g. no nf_tables netlink here: fall back to listings
            return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def parse_generation(data: bytes, seq: int) -> int | None:
    """The generation id in a NEWGEN answer to request ``seq`` (ValueError on a netlink error)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, got_seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if got_seq == seq and kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, offset + _HEADER.size)[0]
            if code:
                raise ValueError(f"GETGEN refused (errno {-code})")
        elif got_seq == seq and kind == (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN):
            at = offset + _HEADER.size + _NFGEN.size
            while at + 4 <= offset + length:
                alen, akind = struct.unpack_from("=HH", data, at)
                if alen < 4:
                    break
                if akind & 0x3FFF == NFTA_GEN_ID and alen >= 8:
                    return int(struct.unpack_from("!I", data, at + 4)[0])
                at += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return None


# --------------------------------------------------------------------------------------------------
# Saru's objects in a listing
# --------------------------------------------------------------------------------------------------


class _Seen:
    """One family's objects in the kernel's listing."""

    def __init__(self) -> None:
        self.table = False
        self.chains: set[str] = set()
        self.sets: set[str] = set()
        self.flowtables: set[str] = set()
        self.rules: dict[str, int] = {}
        self.elements: dict[str, int] = {}


def _seen(documents: Iterable[Mapping[str, Any]]) -> dict[str, _Seen]:
    out: dict[str, _Seen] = {}
    for doc in documents:
        for item in doc.get("nftables", []):
            kind = next((k for k in ("table", "chain", "rule", "set", "map", "flowtable") if k in item), None)
            if kind is None or item[kind].get("table", item[kind].get("name")) != TABLE:
                continue
            obj = item[kind]
            seen = out.setdefault(str(obj.get("family")), _Seen())
            seen.table = True
            if kind == "chain":
                seen.chains.add(str(obj["name"]))
            elif kind == "rule":
                chain = str(obj.get("chain"))
                seen.rules[chain] = seen.rules.get(chain, 0) + 1
            elif kind == "flowtable":
                seen.flowtables.add(str(obj["name"]))
            elif kind in ("set", "map"):
                seen.sets.add(str(obj["name"]))
                if "elem" in obj:  # listed with its elements (a terse listing has none)
                    seen.elements[str(obj["name"])] = len(obj["elem"])
    return out


def object_problems(expected: Mapping[str, Objects], existed: Mapping[str, bool],
                    documents: Iterable[Mapping[str, Any]], listed: Iterable[str] = ()) -> list[str]:
    """What the kernel's objects lack or have in excess (one sentence each, per table).

    ``expected``: family → the objects the plane rendered (adopted ones are UNKNOWN: only their
    names count); ``existed``: whether the plane left each table in the kernel; ``listed``: the
    static maps whose elements ``documents`` hold (a map listed without elements counts 0 only
    when named here).
    """
    seen_all = _seen(documents)
    listed = set(listed)
    problems: list[str] = []
    for family, objects in expected.items():
        name = f"table {family} {TABLE}"
        seen = seen_all.get(family, _Seen())
        if existed.get(family) and not seen.table:
            problems.append(f"{name} missing")
            continue
        missing = [c for c in objects.chains if c not in seen.chains]
        missing += [s for s in objects.sets if s not in seen.sets]
        missing += [f for f in objects.flowtables if f not in seen.flowtables]
        extra = sorted((seen.chains - objects.chains.keys()) | (seen.sets - objects.sets.keys())
                       | (seen.flowtables - objects.flowtables.keys()))
        if missing:
            problems.append(f"{name}: {_few(missing)} missing")
        if extra:
            problems.append(f"{name}: {_few(extra)} not made by Saru")
        for chain, rules in objects.rules.items():
            if chain in seen.chains and rules != [UNKNOWN] and seen.rules.get(chain, 0) != len(rules):
                problems.append(f"{name}: chain {chain} has {seen.rules.get(chain, 0)} rule(s), "
                                f"Saru wrote {len(rules)}")
        for map_name, elements in objects.elements.items():
            if objects.sets.get(map_name) in (UNKNOWN, UNKNOWN_MAP, None) or map_name not in seen.sets:
                continue
            if map_name not in seen.elements and map_name not in listed:
                continue
            count = seen.elements.get(map_name, 0)
            if count != len(elements):
                problems.append(f"{name}: map {map_name} has {count} element(s), Saru wrote {len(elements)}")
    return problems


def _few(names: list[str], limit: int = 3) -> str:
    text = ", ".join(names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")
