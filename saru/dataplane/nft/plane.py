"""The nftables data plane: the kernel forwards, Saru writes one nft transaction per apply.

``NftDataplane`` owns two tables (``table inet saru`` for NAT, ``table netdev saru`` for direct
routing — see ``render`` for the rulesets) and is their only writer. It reads them back from
the kernel once (adoption, at the first ``read``/``apply``) and from then on keeps in memory the
applied ``Table`` and the objects it rendered (chains, rules, sets, map elements). An apply turns
ops into the new table (``saru.diff.apply_ops`` semantics), renders it, and sends the kernel ONE
libnftables transaction holding only the difference: the chains whose rules changed, the map
elements that differ (a NAT service's reals are elements of a slot map, so 10,000 reals are a few
element batches, not 10,000 chains). The kernel applies the transaction wholesale or not at all;
when it refuses, the in-memory state is dropped and re-read from the kernel (so it stays in sync)
and the change is tried once more as a full rewrite of Saru's objects. Other tables are never
touched.

The impure part lives here and next door: finding the NIC behind each gate real and the NIC
holding a direct-routed VIP (``routes``), the draining of removed gate reals (their flow sets are
dropped at a later apply once empty — or at once with ``expire_nodest_conn``, which also deletes the
conntrack entries of removed NAT reals: ``connections.expire_nat``), counters (``stats``/``zero``)
and the connection list (``connections``: conntrack for NAT, flow sets for DR).

Drift (``verify``/``repair``, see ``check``): the in-memory state is trusted only while the
ruleset's generation id has not moved since Saru last saw its tables in sync (one netlink round
trip per check); once it moved (someone committed anything, anywhere in the ruleset), Saru's tables
are listed and compared with the state — the table read back from the comments, and the objects
(chains, sets, rule counts, map elements). ``repair`` re-reads the kernel and rewrites all of
Saru's objects in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from saru.dataplane.base import (
    Capabilities,
    ConnEntry,
    Dataplane,
    DataplaneError,
    DestStats,
    ServiceStats,
    Verification,
)
from saru.dataplane.nft.check import Generation, next_generation, object_problems
from saru.dataplane.nft.connections import dr_connections, expire_nat, flows_left, nat_connections
from saru.dataplane.nft.environment import CLOSING_TIMEOUT, FLOW_TIMEOUT, Environment, is_loopback
from saru.dataplane.nft.libnft import Nft, NftError, backend
from saru.dataplane.nft.names import DR_FAMILY, NAT_FAMILY, TABLE, RenderError, service_id
from saru.dataplane.nft.offload import render_offload
from saru.dataplane.nft.parse import Listing, parse
from saru.dataplane.nft.render import Memo, build
from saru.dataplane.nft.routes import Routes, device_exists, discover
from saru.dataplane.nft.slots import SUPPORTED_SCHEDULERS
from saru.dataplane.nft.stateless import PRE_CHAIN
from saru.dataplane.nft.transaction import UNKNOWN, Objects, transaction, unknown_script
from saru.dataplane.nft.validation import device_name
from saru.dataplane.privilege import has_net_admin
from saru.diff import OpError, apply_ops
from saru.model import Dest, Op, ServiceKey, Table

log = logging.getLogger(__name__)
FAMILIES = (NAT_FAMILY, DR_FAMILY)
#: how NAT virtuals are forwarded (``[nft] nat``; see ``stateless``)
NAT_MODES = ("stateful", "stateless")
Draining = dict[ServiceKey, dict[tuple[str, int], Dest]]


def left_the_table(before: Table, after: Table, forward: str) -> dict[ServiceKey, list[tuple[str, int]]]:
    """The reals (of this forwarding method) in ``before`` but not in their virtual in ``after``
    (all of a deleted virtual's), by virtual."""
    gone: dict[ServiceKey, list[tuple[str, int]]] = {}
    for key, service in before.services.items():
        now = after.services.get(key)
        left = [dkey for dkey, d in service.dests.items()
                if d.forward == forward and (now is None or dkey not in now.dests)]
        if left:
            gone[key] = left
    return gone

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


@dataclass
class State:
    """What Saru's tables hold, as this process last wrote (or adopted) them."""

    table: Table
    draining: Draining
    scripts: dict[str, Objects]  # family → objects (contents UNKNOWN right after adoption)
    existed: dict[str, bool]  # family → the table exists in the kernel
    owners: dict[ServiceKey, list[tuple[str, int]]]  # slot owners of map-scheduled services


class NftDataplane(Dataplane):
    """Kernel forwarding through Saru's own nftables tables.

    ``flow_timeouts`` (protocol → seconds) and ``closing_timeout``: how long a direct-routed flow
    lives without packets, and after its FIN/RST (defaults: IPVS's 900 s TCP, 300 s UDP, 120 s).
    """

    capabilities = CAPABILITIES

    def __init__(
        self, flow_timeouts: Mapping[str, int] | None = None, closing_timeout: int | None = None,
        nat: str = "stateful", flowtable: Sequence[str] = (),
    ) -> None:
        if nat not in NAT_MODES:
            raise DataplaneError(f"unknown NAT mode {nat!r} (choose from {', '.join(NAT_MODES)})")
        if flowtable and nat != "stateful":  # what config validation refuses up front
            raise DataplaneError("a flowtable offloads conntrack's NAT flows: stateless NAT has none")
        for device in flowtable:
            try:
                device_name(device)
            except RenderError as exc:
                raise DataplaneError(f"[nft] flowtable: {exc}") from None
        self._nft: Nft | None = None
        self._lock = asyncio.Lock()
        self._base = Environment(flow_timeouts={**FLOW_TIMEOUT, **(flow_timeouts or {})},
                                 closing_timeout=closing_timeout or CLOSING_TIMEOUT, nat=nat,
                                 flowtable=tuple(flowtable))
        #: the kernel's NAT virtuals were written in the other NAT mode, or its flowtable under another
        #: ``[nft] flowtable``: the next apply rewrites them
        self._other_mode = False
        if nat == "stateless":  # what config validation must refuse up front
            self.capabilities = replace(CAPABILITIES, stateless_nat=True)
        if flowtable:
            self.capabilities = replace(CAPABILITIES, flowtable=tuple(flowtable))
        self._state: State | None = None
        self._routes = Routes()
        self._memo = Memo()
        self._generation = Generation()
        #: the ruleset generation at which the kernel was last seen to hold exactly ``_state``
        self._verified_gen: int | None = None
        #: (applied, kernel) when a write found the kernel changed behind Saru's back (for ``verify``)
        self._mismatches: list[tuple[Table, Table]] = []
        #: how the last apply went: "incremental", "full" (after a refusal or adoption) or "none"
        self.last_apply = "none"

    @classmethod
    def available(cls, dry_run: bool = False) -> tuple[bool, str]:
        """Whether nftables can be programmed here (``list tables`` changes nothing, so ``dry_run``
        probes the same way)."""
        if not has_net_admin():
            return False, "programming nftables needs CAP_NET_ADMIN (run as root or grant the capability)"
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
        self._generation.close()
        self._state = None
        self._verified_gen = None

    def _ensure(self) -> Nft:
        if self._nft is None:
            self._nft = Nft()
        return self._nft

    # -- reading ----------------------------------------------------------------------------------

    def _documents(self, terse: bool = True, listed: list[str] | None = None) -> list[dict[str, Any]]:
        """Saru's tables as nft JSON documents (terse: without set elements, then the slot maps
        and real sets of map-scheduled services, which carry the reals; their names are appended
        to ``listed``)."""
        nft = self._ensure()
        docs = []
        for family in FAMILIES:
            try:
                out = nft.run(f"list table {family} {TABLE}", json_out=True, terse=terse)
            except NftError as exc:
                if "No such file or directory" in str(exc):
                    continue
                raise DataplaneError(f"cannot read table {family} {TABLE}: {exc}") from None
            doc = json.loads(out)
            docs.append(doc)
            if not terse:
                continue
            for item in doc.get("nftables", []):
                obj = item.get("map") or item.get("set")
                if obj and str(obj.get("name", ""))[:2] in ("m_", "r_"):
                    kind = "map" if "map" in item else "set"
                    docs.append(json.loads(nft.run(f"list {kind} {family} {TABLE} {obj['name']}", json_out=True)))
                    if listed is not None:
                        listed.append(str(obj["name"]))
        return docs

    def _list(self) -> Listing:
        return parse(self._documents())

    def _adopt(self) -> State:
        """Read Saru's tables from the kernel (once; again only after a refused transaction)."""
        gen = self._generation.read()
        listing = self._list()
        chains = listing.existing.chains.get(NAT_FAMILY, frozenset())
        self._other_mode = (PRE_CHAIN if self._base.nat == "stateful" else "nat_pre") in chains
        wanted = Objects(NAT_FAMILY)  # the flowtable this table needs under this plane's [nft] flowtable
        if self._base.flowtable:
            render_offload(wanted, list(listing.table.services.values()), self._base.flowtable)
        if dict(listing.existing.flowtables.get(NAT_FAMILY, {})) != wanted.flowtables:
            self._other_mode = True  # written under another setting: the next apply rewrites it
        self._verified_gen = gen  # what was just read is what the kernel held at ``gen`` (or later)
        self._state = State(
            table=listing.table,
            draining={k: dict(v) for k, v in listing.draining.items()},
            scripts={f: unknown_script(f, listing.existing) for f in FAMILIES},
            existed={f: listing.existing.has_table(f) for f in FAMILIES},
            owners={k: list(v) for k, v in listing.slot_owners.items()},
        )
        return self._state

    async def read(self) -> Table:
        async with self._lock:
            if self._state is not None:
                return self._state.table
            return (await asyncio.to_thread(self._adopt)).table

    # -- drift ------------------------------------------------------------------------------------

    async def verify(self) -> Verification | None:
        async with self._lock:
            return await asyncio.to_thread(self._verify)

    def _verify(self) -> Verification | None:
        earlier, self._mismatches = tuple(self._mismatches), []
        state = self._state
        if state is None:  # nothing applied or adopted yet: the next read adopts the kernel
            return Verification(Table(), Table(), earlier=earlier) if earlier else None
        gen = self._generation.read()
        if gen is not None and gen == self._verified_gen:
            return Verification(state.table, state.table, earlier=earlier, how="generation")
        listed: list[str] = []
        docs = self._documents(listed=listed)
        kernel = parse(docs).table
        problems = tuple(object_problems(state.scripts, state.existed, docs, listed))
        if kernel == state.table and not problems:
            self._verified_gen = gen  # in sync at ``gen``: the next checks cost one round trip
        return Verification(state.table, kernel, problems, earlier, how="listing")

    async def repair(self, ops: Sequence[Op]) -> None:
        """Re-read Saru's tables and rewrite every object of theirs in one transaction, applying
        ``ops`` (computed against the kernel's table at the last ``verify``)."""
        async with self._lock:
            await asyncio.to_thread(self._repair, list(ops))

    def _repair(self, ops: list[Op]) -> None:
        self._state = None
        self._routes = Routes()
        state = self._adopt()  # every object UNKNOWN: the write rebuilds them all
        try:
            self._write(state, ops)
        except NftError as exc:
            self._state = None
            raise DataplaneError(f"nftables refused to rebuild Saru's tables: {exc}") from None
        self.last_apply = "full"

    def _commit(self, script: str) -> None:
        """Run one transaction; the state stays verified when it was the only commit in between."""
        before = self._generation.read()
        try:
            self._ensure().run(script)
        finally:
            after = self._generation.read()
            chained = before is not None and before == self._verified_gen and after == next_generation(before)
            self._verified_gen = after if chained else None

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        async with self._lock:
            listing = await asyncio.to_thread(self._list)
            uncounted = frozenset(k for k, s in listing.table.services.items()
                                  if any((k, d) not in listing.dest_counters for d in s.dests))
            try:
                conns = await asyncio.to_thread(nat_connections, listing.table, uncounted)
            except DataplaneError:
                conns = []
        per_dest: dict[tuple[ServiceKey, tuple[str, int]], int] = {}
        for key, entry in conns:
            per_dest[(key, entry.dest)] = per_dest.get((key, entry.dest), 0) + 1
        result: dict[ServiceKey, ServiceStats] = {}
        for key, service in listing.table.services.items():
            packets, nbytes = listing.service_counters.get(key, (0, 0))
            dests = {}
            total = 0
            for dkey in service.dests:
                c = listing.dest_counters.get((key, dkey))
                if c is None:  # a map-scheduled real: conntrack's entries of it (live and closing)
                    n = per_dest.get((key, dkey), 0)
                    total += n
                    dests[dkey] = DestStats(connections=n)
                    continue
                total += c.connections
                dests[dkey] = DestStats(connections=c.connections, bytes_in=c.bytes)
            result[key] = ServiceStats(connections=total, bytes_in=nbytes, dests=dests, packets_in=packets)
        return result

    # -- writing ----------------------------------------------------------------------------------

    async def apply(self, ops: Sequence[Op]) -> None:
        """Apply ``ops``; with none, only drained gate reals are dropped (nothing else is written)."""
        if not ops and not self._other_mode and (self._state is None or not self._state.draining):
            return
        async with self._lock:
            await asyncio.to_thread(self._apply, list(ops))

    def _apply(self, ops: list[Op]) -> None:
        state = self._state or self._adopt()
        adopted = any(UNKNOWN in state.scripts[f].chains.values() for f in FAMILIES)
        try:
            self._write(state, ops)
            self.last_apply = "full" if adopted else "incremental"
            return
        except NftError:
            pass
        # refused: whatever the kernel holds now is the previous table (the transaction is all or
        # nothing); re-read it and try once more as a full rewrite of Saru's objects
        expected = state.table
        self._state = None
        self._routes = Routes()
        state = self._adopt()
        if state.table != expected:  # changed behind Saru's back: tell the drift watcher
            self._mismatches = [*self._mismatches[-7:], (expected, state.table)]
        try:
            self._write(state, ops)
            self.last_apply = "full"
        except NftError as exc:
            self._state = None
            raise DataplaneError(f"nftables refused the transaction: {exc}") from None

    def _write(self, state: State, ops: list[Op]) -> None:
        """Render the new table, send the difference as one transaction, then remember it."""
        try:
            table = apply_ops(state.table, ops)
        except OpError as exc:
            raise DataplaneError(str(exc)) from None
        draining = self._draining(state, table)
        env = discover(table, draining, self._base, self._routes)
        missing = [d for d in env.flowtable if not device_exists(d)]
        if missing:  # the kernel would refuse the flowtable with a bare ENOENT
            raise DataplaneError(f"[nft] flowtable: no network interface {', '.join(missing)} here")
        try:
            built = build(table, env, draining, state.owners, self._memo)
        except (RenderError, ValueError) as exc:
            raise DataplaneError(str(exc)) from None
        commands: list[str] = []
        for family in FAMILIES:
            commands += transaction(state.scripts[family], built.scripts[family], state.existed[family])
        if commands:
            self._commit("\n".join(commands) + "\n")
        before = state.table
        self._state = State(table, draining, built.scripts,
                            {f: not built.scripts[f].empty for f in FAMILIES}, built.slot_owners)
        self._other_mode = False
        if self.expire_nodest_conn:
            gone = left_the_table(before, table, "masq")
            if gone:  # after the commit: no new flow can be DNATed to them any more
                try:
                    expire_nat(gone)
                except DataplaneError as exc:  # the table is applied: say so, do not fail the apply
                    log.warning("expire_nodest_conn: %s", exc)

    def _draining(self, state: State, table: Table) -> Draining:
        """Gate reals removed now or earlier whose connections may still run (kept until empty)."""
        nft = self._ensure()
        draining: Draining = {}
        for key, service in table.services.items():
            before = state.table.services.get(key)
            kept: dict[tuple[str, int], Dest] = {}
            for dkey, dest in state.draining.get(key, {}).items():
                if dkey not in service.dests and not self.expire_nodest_conn and flows_left(nft, key, dkey):
                    kept[dkey] = dest
            if before is not None and not self.expire_nodest_conn:  # expire: their flow sets go now
                for dkey, dest in before.dests.items():
                    if dkey not in service.dests and dest.forward == "gate" and not is_loopback(dest.address):
                        kept[dkey] = dest
            if kept:
                draining[key] = kept
        return draining

    # -- counters and connections -----------------------------------------------------------------

    async def zero(self, key: ServiceKey | None = None) -> None:
        """Reset the rule counters of one service or of all (their chains are rebuilt in one
        transaction; flows, persistence entries and map elements stay)."""
        async with self._lock:
            await asyncio.to_thread(self._zero, key)

    def _zero(self, key: ServiceKey | None) -> None:
        state = self._state or self._adopt()
        if key is not None and key not in state.table.services:
            raise DataplaneError(f"no virtual service {key}")
        if any(UNKNOWN in state.scripts[f].chains.values() for f in FAMILIES):
            # adopted and never written: rebuild our objects once (a full rewrite zeroes everything)
            try:
                self._write(state, [])
            except NftError as exc:
                self._state = None
                raise DataplaneError(f"nftables refused to rebuild Saru's tables: {exc}") from None
            state = self._state or state
        sid = service_id(key) if key is not None else None
        commands = []
        for family in FAMILIES:
            script = state.scripts[family]
            for chain, rules in script.rules.items():
                if not any(r.startswith("counter") or " counter " in f" {r} " for r in rules):
                    continue
                if sid is not None and f"_{sid}" not in chain:
                    continue
                commands.append(f"flush chain {family} {TABLE} {chain}")
                commands += [f"add rule {family} {TABLE} {chain} {r}" for r in rules]
        if commands:
            try:
                self._commit("\n".join(commands) + "\n")
            except NftError as exc:
                self._state = None
                raise DataplaneError(f"nftables refused to zero the counters: {exc}") from None

    async def connections(self) -> list[ConnEntry]:
        """NAT virtuals: the conntrack entries DNATed to a real; direct routing: the flows in the
        reals' flow sets (client address and port only; the director sees no replies, so the
        state is ESTABLISHED, or FIN_WAIT once a FIN/RST went by)."""
        async with self._lock:
            state = self._state
            if state is None:
                state = await asyncio.to_thread(self._adopt)
            nat = await asyncio.to_thread(nat_connections, state.table)
            dr = await asyncio.to_thread(self._dr_connections, state)
        return [entry for _, entry in nat] + dr

    def _dr_connections(self, state: State) -> list[ConnEntry]:
        return dr_connections(self._ensure(), state.table, state.draining)
