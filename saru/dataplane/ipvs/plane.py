"""The IPVS data plane: the Linux kernel's virtual server table, programmed over generic netlink.

Talks to the kernel's "IPVS" genl family through ``netlink.GenlSocket`` (Saru's own batched
socket on the stdlib; pyroute2 serves the other netlink families, see ``netlink`` for why not this
one). The attributes are packed and unpacked by the pure ``codec`` package, which also plans
validation and rollback; this module does the I/O.

* ``read`` dumps every service and its destinations — Saru's and anybody else's; the daemon's diff
  only touches the services it owns.
* ``apply`` validates the whole batch first (nothing is sent if one op is malformed), then sends
  the ops in order, many per system call (``GenlSocket.batch``: only each chunk's last request is
  acked; failures are reported by the kernel anyway). IPVS has no transactions: when an op fails,
  the ops of this batch that succeeded (including later ones of the same chunk) are undone in
  reverse order (best effort: a deleted service comes back with its destinations but with zeroed
  counters), and ``DataplaneError`` is raised naming the failed op and the kernel's reason. The
  state an undo needs (old settings, old destinations) comes from the table this plane last read
  or applied — nothing is read before a batch — and is re-read (only the services concerned)
  after a failure or when the plane never read the table. A cancelled caller does not cut a
  batch short; big batches run in a thread so that the event loop keeps serving.
  Many destination changes of a wrr or mh service are made under rr, the service's scheduler
  coming back right after them (``codec.with_cheap_scheduler``): those kernel schedulers
  rebuild their state over all destinations on every change, which made N changes cost O(N²).
* ``stats`` reads the 64-bit counters (connections, bytes) and the active/inactive connection
  counts of every destination; the kernel refreshes totals every 2 s (its rate estimator).
  ``zero`` resets them (``ipvsadm -Z``); ``connections`` reads the connection entries from
  /proc/net/ip_vs_conn, as ipvsadm does for ``-L -c``.
* ``verify`` (drift): dumps the kernel's table and returns it with the one this plane expects —
  adopted at the first read, then updated by every successful apply (from the table the ops were
  computed against). IPVS has no generation counter, so a check costs a full dump: one request for
  the services plus one per service for its destinations. A table update that finds the kernel
  changed behind Saru's back (the daemon's diff starts from a fresh read, so it repairs at once)
  is kept for the next ``verify`` to report.
* ``netlink_request`` / ``netlink_dump`` give other IPVS commands (the sync daemons,
  ``sync``) the plane's socket.
* ``available()`` tells whether this kernel has IPVS: ``/proc/net/ip_vs`` exists once the ip_vs
  module is loaded; like ipvsadm, Saru runs ``modprobe ip_vs`` once when the module is installed
  but not loaded.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from saru.compat.ipvsadm import describe_op
from saru.dataplane.base import (
    Capabilities,
    ConnEntry,
    Dataplane,
    DataplaneError,
    DestStats,
    ServiceStats,
    Verification,
)
from saru.dataplane.ipvs import codec
from saru.dataplane.ipvs.netlink import GenlSocket, NetlinkError, run_in_netns
from saru.dataplane.privilege import has_net_admin
from saru.diff import OpError, apply_ops
from saru.model import AddService, EditService, Op, Service, ServiceKey, Table

CAPABILITIES = Capabilities(
    name="ipvs",
    forwards=frozenset(codec.FORWARD_CODES),
    schedulers=codec.SCHEDULERS,
    protocols=frozenset({"tcp", "udp", "fwm"}),
    ipv6=True,
    persistence=True,
    thresholds=True,
    rewrites_gate_ports=True,
)

PROC_IP_VS = Path("/proc/net/ip_vs")
PROC_IP_VS_CONN = Path("/proc/net/ip_vs_conn")
#: the kernel's switch behind saru.toml's ``[director] expire_nodest_conn`` (one per network namespace)
EXPIRE_NODEST_CONN = Path("/proc/sys/net/ipv4/vs/expire_nodest_conn")


def set_sysctl(path: Path, value: str) -> bool:
    """Write ``value`` to a /proc/sys file unless it holds it already; True when it was written.
    OSError when it cannot be read or written (/proc/sys read-only under ProtectKernelTunables=)."""
    if path.read_text().strip() == value:
        return False
    path.write_text(value + "\n")
    return True
#: Batches with more requests than this are sent from a worker thread.
THREADED_BATCH = 256
ERRNO_REASONS = {
    errno.EEXIST: "already exists",
    errno.ENOENT: "not found (or no such scheduler in this kernel)",
    errno.ESRCH: "no such service",
    errno.EINVAL: "invalid argument",
    errno.EPERM: "not permitted (needs CAP_NET_ADMIN)",
    errno.EBUSY: "busy",
    errno.ENOMEM: "out of memory",
}


def module_installed(name: str) -> bool:
    """Whether ``modules.dep`` of the running kernel lists the module."""
    try:
        text = Path(f"/lib/modules/{os.uname().release}/modules.dep").read_text()
    except OSError:
        return False
    return f"/{name}.ko" in text


def _try_modprobe(name: str) -> None:
    modprobe = shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin")
    if modprobe is None:
        return
    try:
        subprocess.run([modprobe, "-q", name], check=False, timeout=10,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        pass


def describe_error(exc: BaseException, op: Op | None = None) -> str:
    code = getattr(exc, "code", None)
    match op:
        case AddService(settings=settings) | EditService(settings=settings) if code == errno.ENOENT:
            name = settings.scheduler
            return f"scheduler {name!r} is not available in this kernel (no ip_vs_{name} module) (errno 2)"
    if isinstance(code, int) and code:
        return f"{ERRNO_REASONS.get(code, os.strerror(code))} (errno {code})"
    return str(exc) or type(exc).__name__


class IpvsDataplane(Dataplane):
    """Saru's forwarding table in the kernel's IPVS (``netns``: a namespace file such as
    ``/run/netns/NAME`` to work on that namespace's IPVS instead of this process's)."""

    capabilities = CAPABILITIES

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._nl: GenlSocket | None = None
        self._lock = asyncio.Lock()
        #: the services as last read or applied (rollback's "before" state); None = unknown
        self._known: dict[ServiceKey, Service] | None = None
        #: the table Saru expects the kernel to hold (drift); None until the first read adopts it
        self._expected: Table | None = None
        #: (expected, kernel) pairs an apply found out of line, for the next ``verify``
        self._mismatches: list[tuple[Table, Table]] = []

    # ------------------------------------------------------------------ availability and life cycle

    @classmethod
    def available(cls, dry_run: bool = False) -> tuple[bool, str]:
        """Whether IPVS can run here; loads the ip_vs module when installed (``dry_run``: counts an
        installed module as available instead of loading it)."""
        loadable = not PROC_IP_VS.exists() and module_installed("ip_vs")
        if loadable and not dry_run:
            _try_modprobe("ip_vs")
        if not PROC_IP_VS.exists() and not (dry_run and loadable):
            return False, "no IPVS in this kernel (no /proc/net/ip_vs; ip_vs module not loaded)"
        if not has_net_admin():
            return False, "IPVS needs CAP_NET_ADMIN (run as root)"
        if not PROC_IP_VS.exists():
            return True, "IPVS is available (the ip_vs module would be loaded)"
        return True, "IPVS is available"

    async def start(self) -> None:
        if self._nl is not None:
            return
        try:
            self._nl = GenlSocket("IPVS", self.netns)
        except OSError as exc:
            if getattr(exc, "code", None) == errno.ENOENT:
                raise DataplaneError("no IPVS in this kernel (genl family IPVS not found)") from exc
            raise DataplaneError(f"cannot open the IPVS netlink socket: {describe_error(exc)}") from exc
        if self.expire_nodest_conn is not None:
            await self._set_expire_nodest_conn("1" if self.expire_nodest_conn else "0")

    async def _set_expire_nodest_conn(self, value: str) -> None:
        """saru.toml ``expire_nodest_conn`` written: make the kernel's sysctl say the same (not written:
        the sysctl is left as it is). A sysctl that cannot be set fails the start, naming the fix."""
        try:
            await asyncio.to_thread(run_in_netns, self.netns, lambda: set_sysctl(EXPIRE_NODEST_CONN, value))
        except OSError as exc:
            self._nl, nl = None, self._nl
            if nl is not None:
                nl.close()
            raise DataplaneError(
                f"[director] expire_nodest_conn: cannot set net.ipv4.vs.expire_nodest_conn={value}: "
                f"{exc.strerror or exc} (set it before the daemon starts, e.g. in /etc/sysctl.d/, "
                "where /proc/sys is read-only to it: saru.service's ProtectKernelTunables=)") from None

    async def close(self) -> None:
        nl, self._nl = self._nl, None
        self._known = None
        self._expected = None
        if nl is not None:
            nl.close()

    def _netlink(self) -> GenlSocket:
        if self._nl is None:
            raise DataplaneError("the IPVS data plane is not started")
        return self._nl

    # ------------------------------------------------------------------ reading

    def _dump_dests(self, key: ServiceKey) -> list[codec.Nla] | None:
        """The destinations of a service; None when the service vanished since it was listed."""
        payload = codec.pack_attrs([("IPVS_CMD_ATTR_SERVICE", {"attrs": codec.service_key_attrs(key)})])
        try:
            raws = self._netlink().dump(codec.CMD_GET_DEST, payload)
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENOENT):
                return None
            raise
        dests = [codec.dumped(raw, 2) for raw in raws]
        return [d for d in dests if d is not None]

    def _dump_services(self) -> list[tuple[ServiceKey, codec.Nla]]:
        out: list[tuple[ServiceKey, codec.Nla]] = []
        for raw in self._netlink().dump(codec.CMD_GET_SERVICE):
            nla = codec.dumped(raw, 1)
            key = codec.decode_service_key(nla) if nla is not None else None
            if nla is not None and key is not None:
                out.append((key, nla))
        return out

    def _read(self, only: set[ServiceKey] | None = None, with_dests: set[ServiceKey] | None = None) -> Table:
        services = []
        for key, nla in self._dump_services():
            if only is not None and key not in only:
                continue
            dests = {}
            if with_dests is None or key in with_dests:
                dumped = self._dump_dests(key)
                if dumped is None:
                    continue
                for dnla in dumped:
                    dest = codec.decode_dest(dnla, key.family)
                    dests[dest.key] = dest
            services.append(Service(key=key, settings=codec.decode_settings(nla, key.family), dests=dests))
        return Table.of(services)

    async def read(self) -> Table:
        async with self._lock:
            try:
                table = self._read()
            except DataplaneError:
                raise
            except Exception as exc:
                raise DataplaneError(f"reading the IPVS table failed: {describe_error(exc)}") from exc
            self._known = dict(table.services)
            if self._expected is None:
                self._expected = table
            return table

    async def verify(self) -> Verification | None:
        table = await self.read()  # refreshes ``_known`` (the repair's rollback state)
        async with self._lock:
            earlier, self._mismatches = tuple(self._mismatches), []
            expected = self._expected if self._expected is not None else table
            self._expected = table  # reported now: what comes next starts from the kernel's table
        return Verification(expected, table, earlier=earlier, how="dump")

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        async with self._lock:
            try:
                return self._stats()
            except DataplaneError:
                raise
            except Exception as exc:
                raise DataplaneError(f"reading IPVS statistics failed: {describe_error(exc)}") from exc

    def _stats(self) -> dict[ServiceKey, ServiceStats]:
        result: dict[ServiceKey, ServiceStats] = {}
        for key, nla in self._dump_services():
            total = codec.stats64(nla, codec.SVC_STATS64)
            dumped = self._dump_dests(key)
            if dumped is None:
                continue
            dests = {}
            for dnla in dumped:
                dest = codec.decode_dest(dnla, key.family)
                counters = codec.stats64(dnla, codec.DEST_STATS64)
                active, inactive = codec.dest_connections(dnla)
                dests[dest.key] = DestStats(
                    active_connections=active,
                    inactive_connections=inactive,
                    connections=counters.get("conns", 0),
                    bytes_in=counters.get("inbytes", 0),
                    bytes_out=counters.get("outbytes", 0),
                )
            result[key] = ServiceStats(
                connections=total.get("conns", 0),
                bytes_in=total.get("inbytes", 0),
                bytes_out=total.get("outbytes", 0),
                dests=dests,
            )
        return result

    async def zero(self, key: ServiceKey | None = None) -> None:
        """``ipvsadm -Z``: the kernel zeroes the counters of one service (and its destinations) or
        of all, including the totals; rates restart from zero."""
        payload = b""
        if key is not None:
            payload = codec.pack_attrs([("IPVS_CMD_ATTR_SERVICE", {"attrs": codec.service_key_attrs(key)})])
        try:
            await self.netlink_request(codec.CMD_ZERO, payload)
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENOENT):
                raise DataplaneError("No such service") from exc
            raise DataplaneError(f"zeroing the IPVS counters failed: {describe_error(exc)}") from exc

    async def connections(self) -> list[ConnEntry]:
        """The kernel's connection entries, from /proc/net/ip_vs_conn as ipvsadm reads them (of
        this plane's network namespace)."""
        # /proc/net is /proc/self/net, the namespace of the process's main thread: a thread that
        # entered another namespace reads its own through /proc/thread-self
        path = PROC_IP_VS_CONN if self.netns is None else Path("/proc/thread-self/net/ip_vs_conn")
        try:
            text = await asyncio.to_thread(run_in_netns, self.netns, path.read_text)
        except OSError as exc:
            raise DataplaneError(f"cannot read {PROC_IP_VS_CONN}: {exc.strerror or exc}") from exc
        return codec.parse_conn_table(text)

    # ------------------------------------------------------------------ other IPVS commands

    async def netlink_request(self, cmd: int, payload: bytes) -> None:
        """One IPVS command with its ack (sync daemons, zero); raises NetlinkError."""
        async with self._lock:
            self._netlink().request(cmd, payload)

    async def netlink_dump(self, cmd: int, payload: bytes = b"") -> list[bytes]:
        """The raw messages of an IPVS dump (e.g. GET_DAEMON); raises NetlinkError."""
        async with self._lock:
            return self._netlink().dump(cmd, payload)

    # ------------------------------------------------------------------ writing

    async def apply(self, ops: Sequence[Op]) -> None:
        ops = list(ops)
        if not ops:
            return
        for op in ops:
            try:
                codec.validate(op)
            except codec.InvalidOp as exc:
                raise DataplaneError(f"{describe_op(op)}: {exc}") from exc
        # a cancelled caller must not leave half a batch behind: the batch runs to its end (or
        # its rollback) in a task of its own
        task = asyncio.ensure_future(self._apply(ops))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(task)

    def _before(self, ops: list[Op]) -> dict[ServiceKey, Service]:
        """The state of the services ``ops`` edit or delete, for their rollback: from what this
        plane last read or applied, else read (only those services; destinations only where an
        op edits or deletes one)."""
        settings_keys, dest_keys = codec.needs_snapshot(ops)
        needed = settings_keys | dest_keys
        if not needed:
            return {}
        if self._known is not None:
            return {key: self._known[key] for key in needed if key in self._known}
        try:
            return dict(self._read(only=needed, with_dests=dest_keys).services)
        except Exception as exc:
            raise DataplaneError(f"reading the IPVS table failed: {describe_error(exc)}") from exc

    async def _apply(self, ops: list[Op]) -> None:
        async with self._lock:
            nl = self._netlink()
            known = {key: service.settings for key, service in (self._known or {}).items()}
            ops = codec.with_cheap_scheduler(ops, known)
            requests = codec.wire_all(ops)
            before = self._before(ops)
            try:
                if len(requests) > THREADED_BATCH:  # keep the event loop serving meanwhile
                    failures = await asyncio.to_thread(nl.batch, requests)
                else:
                    failures = nl.batch(requests)
            except OSError as exc:  # the socket itself failed: what the kernel did is unknown
                self._known = None
                raise DataplaneError(f"talking to IPVS failed after {nl.sent} of {len(requests)} "
                                     f"request(s) were sent: {describe_error(exc)}") from exc
            if not failures:
                self._remember(ops)
                return
            failed = {index for index, _ in failures}
            succeeded = [ops[i] for i in range(nl.sent) if i not in failed]
            self._known = None  # re-read when next needed
            note = self._rollback(succeeded, before)
            index, error = failures[0]
            op = ops[index]
            raise DataplaneError(f"{describe_op(op)}: {describe_error(error, op)}{note}") from error

    def _remember(self, ops: list[Op]) -> None:
        """After a successful apply: the table the kernel now holds as far as Saru knows (the one
        the ops were computed against, plus the ops), worked out once for both uses: ``_known``
        (rollback snapshots) and ``_expected`` (drift). A kernel that had changed since Saru last
        wrote it is noted for ``verify``; the ops (diffed from a fresh read) have repaired it."""
        read = self._known
        if read is None:
            self._expected = None  # unknown: the next read adopts the kernel's table
            return
        before = Table(read)
        if self._expected is not None and before != self._expected:
            self._mismatches = [*self._mismatches[-7:], (self._expected, before)]
        try:
            after = apply_ops(before, ops)
        except OpError:  # the kernel had changed behind our back: forget, re-read when needed
            self._known = None
            self._expected = None
            return
        self._known = dict(after.services)
        self._expected = after

    def _rollback(self, done: Sequence[Op], before: dict[ServiceKey, Service]) -> str:
        """Undo ``done`` (best effort: an undo op that fails does not stop the others)."""
        if not done:
            return ""
        plan = codec.rollback_plan(done, before)
        try:
            failures = self._netlink().batch([codec.wire(op) for op in plan], stop_after_failure=False)
        except OSError as exc:
            return f"; rolling back the {len(done)} op(s) of this batch that succeeded failed: {describe_error(exc)}"
        if failures:
            details = "; ".join(
                f"{describe_op(plan[i])}: {describe_error(exc, plan[i])}" for i, exc in failures[:5]
            )
            return (f"; rolling back the {len(done)} op(s) of this batch that succeeded failed for "
                    f"{len(failures)}: {details}")
        return f"; the {len(done)} op(s) of this batch that succeeded were rolled back"
