"""The nftables data plane: the kernel forwards, Saru writes one nft transaction per apply.

``NftDataplane`` reads its own tables (``table inet saru`` for NAT, ``table netdev saru`` for
direct routing — see ``nft_render`` for the rulesets) back from the kernel as JSON, applies ops to
that table with ``saru.diff.apply_ops`` semantics, renders the complete result and runs it as ONE
libnftables transaction: either the whole new table is in force or nothing changed. Other tables are
never touched.

The impure part lives here: finding the NIC behind each gate real (``ip -j route get``, exec'd
without a shell), the NIC holding a direct-routed VIP (``ip -j addr``), and the draining of removed
gate reals (their flow sets are dropped at a later apply once empty).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from saru.dataplane.base import Capabilities, Dataplane, DataplaneError, DestStats, ServiceStats
from saru.dataplane.libnft import Nft, NftError, backend
from saru.dataplane.nft_render import (
    CLOSING_TIMEOUT,
    DR_FAMILY,
    FLOW_TIMEOUT,
    NAT_FAMILY,
    SUPPORTED_SCHEDULERS,
    TABLE,
    Environment,
    Listing,
    RenderError,
    closing_set,
    dest_id,
    flow_set,
    is_loopback,
    parse,
    render,
    service_id,
)
from saru.diff import OpError, apply_ops
from saru.model import Dest, Op, ServiceKey, Table

#: Why the schedulers and forwarding methods nftables lacks are missing, for diagnostics.
UNSUPPORTED_HINT = ("lc, wlc, sed, nq, ovf, lblc, lblcr and twos need per-real connection counts, which "
                    "nftables does not keep: use rr/wrr/sh/mh/dh/fo, or the ipvs or proxy data plane; "
                    "ipip (tunnelling) and ops need IPVS; thresholds (u:/l:) are recorded but not enforced; "
                    "firewall-mark virtuals with gate reals need the mark set in a netdev ingress chain "
                    "of priority < 0 (iptables/nft prerouting marks come after direct routing)")

CAPABILITIES = Capabilities(
    name="nft",
    forwards=frozenset({"gate", "masq"}),
    schedulers=SUPPORTED_SCHEDULERS,
    protocols=frozenset({"tcp", "udp", "fwm"}),
    ipv6=True,
    persistence=True,
    thresholds=False,
    rewrites_gate_ports=True,
    ops=False,
    notes=UNSUPPORTED_HINT,
)


def _ip_json(*args: str) -> Any:
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, timeout=10, check=False)
    if proc.returncode != 0:
        raise DataplaneError(f"ip {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return json.loads(proc.stdout or b"[]")


def discover(
    table: Table, draining: dict[ServiceKey, dict[tuple[str, int], Dest]], base: Environment = Environment()
) -> Environment:
    """Devices of the gate reals and of the direct-routed VIPs (blocking: runs ``ip``)."""
    devices: dict[str, str] = {}
    local: set[str] = set()
    vips: set[str] = set()
    for key, service in table.services.items():
        gates = [d for d in [*service.dests.values(), *draining.get(key, {}).values()]
                 if d.forward == "gate" and not is_loopback(d.address)]
        for d in gates:
            if d.address in devices or d.address in local:
                continue
            routes = _ip_json("route", "get", d.address)
            route = routes[0] if routes else {}
            if route.get("type") == "local" or route.get("dev") == "lo":
                local.add(d.address)
            elif route.get("gateway"):
                raise DataplaneError(f"{key}: gate real {d.address} is behind a router "
                                     f"({route['gateway']}); direct routing needs it on the director's LAN")
            elif route.get("dev"):
                devices[d.address] = str(route["dev"])
        if gates and key.address:
            vips.add(key.address)
    ingress = set(devices.values())
    if vips:
        for link in _ip_json("addr", "show"):
            name = link.get("ifname")
            if name and name != "lo" and any(a.get("local") in vips for a in link.get("addr_info", [])):
                ingress.add(str(name))
    return replace(base, devices=devices, local=frozenset(local), ingress=tuple(sorted(ingress)))


class NftDataplane(Dataplane):
    """Kernel forwarding through Saru's own nftables tables.

    ``flow_timeouts`` (protocol → seconds) and ``closing_timeout``: how long a direct-routed flow
    lives without packets, and after its FIN/RST (defaults: IPVS's 900 s TCP, 300 s UDP, 120 s).
    """

    capabilities = CAPABILITIES

    def __init__(
        self, flow_timeouts: Mapping[str, int] | None = None, closing_timeout: int | None = None
    ) -> None:
        self._nft: Nft | None = None
        self._lock = asyncio.Lock()
        self._base = Environment(flow_timeouts={**FLOW_TIMEOUT, **(flow_timeouts or {})},
                                 closing_timeout=closing_timeout or CLOSING_TIMEOUT)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if os.geteuid() != 0:
            return False, "programming nftables needs root"
        which = backend()
        if which is None:
            return False, "neither libnftables.so.1 (Debian libnftables1) nor the nft command is installed"
        try:
            with Nft() as nft:
                nft.run("list tables")
        except (NftError, OSError) as exc:
            return False, f"nf_tables is not usable here: {exc}"
        return True, f"nf_tables through {which}"

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._nft is None:
            try:
                self._nft = Nft()
                await asyncio.to_thread(self._nft.run, "list tables")
            except NftError as exc:
                self._nft = None
                raise DataplaneError(f"nf_tables is not usable: {exc}") from None

    async def close(self) -> None:
        if self._nft is not None:
            self._nft.close()
            self._nft = None

    def _ensure(self) -> Nft:
        if self._nft is None:
            self._nft = Nft()
        return self._nft

    # -- reading ----------------------------------------------------------------------------------

    def _list(self) -> Listing:
        nft = self._ensure()
        docs = []
        for family in (NAT_FAMILY, DR_FAMILY):
            try:
                out = nft.run(f"list table {family} {TABLE}", json_out=True, terse=True)
            except NftError as exc:
                if "No such file or directory" in str(exc):
                    continue
                raise DataplaneError(f"cannot read table {family} {TABLE}: {exc}") from None
            docs.append(json.loads(out))
        return parse(docs)

    async def read(self) -> Table:
        async with self._lock:
            return (await asyncio.to_thread(self._list)).table

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        async with self._lock:
            listing = await asyncio.to_thread(self._list)
        result: dict[ServiceKey, ServiceStats] = {}
        for key, service in listing.table.services.items():
            _packets, nbytes = listing.service_counters.get(key, (0, 0))
            dests = {}
            total = 0
            for dkey in service.dests:
                c = listing.dest_counters.get((key, dkey))
                if c is None:
                    continue
                total += c.connections
                dests[dkey] = DestStats(connections=c.connections, bytes_in=c.bytes)
            result[key] = ServiceStats(connections=total, bytes_in=nbytes, dests=dests)
        return result

    # -- writing ----------------------------------------------------------------------------------

    async def apply(self, ops: Sequence[Op]) -> None:
        async with self._lock:
            await asyncio.to_thread(self._apply, list(ops))

    def _apply(self, ops: list[Op]) -> None:
        nft = self._ensure()
        listing = self._list()
        try:
            table = apply_ops(listing.table, ops)
        except OpError as exc:
            raise DataplaneError(str(exc)) from None
        draining = self._draining(listing, table)
        env = discover(table, draining, self._base)
        try:
            script = render(table, env, listing.existing, draining)
        except (RenderError, ValueError) as exc:
            raise DataplaneError(str(exc)) from None
        if not script:
            return
        try:
            nft.run(script)
        except NftError as exc:
            raise DataplaneError(f"nftables refused the transaction: {exc}") from None

    def _draining(self, listing: Listing, table: Table) -> dict[ServiceKey, dict[tuple[str, int], Dest]]:
        """Gate reals removed now or earlier whose connections may still run (kept until empty)."""
        nft = self._ensure()
        draining: dict[ServiceKey, dict[tuple[str, int], Dest]] = {}
        for key, service in table.services.items():
            before = listing.table.services.get(key)
            kept: dict[tuple[str, int], Dest] = {}
            for dkey, dest in listing.draining.get(key, {}).items():
                if dkey not in service.dests and self._flows_left(nft, key, dkey):
                    kept[dkey] = dest
            if before is not None:
                for dkey, dest in before.dests.items():
                    if dkey not in service.dests and dest.forward == "gate" and not is_loopback(dest.address):
                        kept[dkey] = dest
            if kept:
                draining[key] = kept
        return draining

    @staticmethod
    def _flows_left(nft: Nft, key: ServiceKey, dkey: tuple[str, int]) -> bool:
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
