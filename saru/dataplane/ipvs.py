"""The IPVS data plane: the Linux kernel's virtual server table, programmed over generic netlink.

Talks to the kernel's "IPVS" genl family through pyroute2's ``AsyncIPVSSocket`` (family lookup,
sequence numbers, acks, errors as ``NetlinkError``); pyroute2 is imported only when the plane
starts, so probing and ``--help`` stay fast. The attributes are packed and unpacked by the pure
functions of ``ipvs_codec`` (pyroute2's generic codec cost ~0.3 ms per message on the host and
dominated bulk changes), which also plans validation and rollback; this module does the I/O.

* ``read`` dumps every service and its destinations — Saru's and anybody else's; the daemon's diff
  only touches the services it owns.
* ``apply`` validates the whole batch first (nothing is sent if one op is malformed), reads the
  state of the services the batch edits or deletes (one dump per such service, never one per op),
  then sends the ops in order, one netlink request each, ``WINDOW`` requests ahead of their acks.
  IPVS has no transactions: when an op fails, the ops of this batch that succeeded (including
  any later ones of the same window) are undone in reverse order (best effort: a deleted service
  comes back with its destinations but with zeroed counters), and ``DataplaneError`` is raised
  naming the failed op and the kernel's reason. A cancelled caller does not cut a batch short.
* ``stats`` reads the 64-bit counters (connections, bytes) and the active/inactive connection
  counts of every destination; the kernel refreshes totals every 2 s (its rate estimator).
* ``available()`` tells whether this kernel has IPVS: ``/proc/net/ip_vs`` exists once the ip_vs
  module is loaded; like ipvsadm, Saru runs ``modprobe ip_vs`` once when the module is installed
  but not loaded.

pyroute2's ``"update"`` verb sends a DELETE (pyroute2 0.9.7); this module never uses pyroute2's
verbs at all and builds SET requests itself.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import importlib.util
import os
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from saru.dataplane import ipvs_codec as codec
from saru.dataplane.base import Capabilities, Dataplane, DataplaneError, DestStats, ServiceStats
from saru.diff import describe_op
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
#: Requests sent before their acks are read (IPVS handles them in order; acks queue meanwhile).
WINDOW = 64
CAP_NET_ADMIN = 12

ERRNO_REASONS = {
    errno.EEXIST: "already exists",
    errno.ENOENT: "not found (or no such scheduler in this kernel)",
    errno.ESRCH: "no such service",
    errno.EINVAL: "invalid argument",
    errno.EPERM: "not permitted (needs CAP_NET_ADMIN)",
    errno.EBUSY: "busy",
    errno.ENOMEM: "out of memory",
}


def _has_net_admin() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _module_installed(name: str) -> bool:
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
    if code == errno.ENOENT and isinstance(op, AddService | EditService):
        name = op.settings.scheduler
        return f"scheduler {name!r} is not available in this kernel (no ip_vs_{name} module) (errno 2)"
    if isinstance(code, int) and code:
        return f"{ERRNO_REASONS.get(code, os.strerror(code))} (errno {code})"
    return str(exc) or type(exc).__name__


@functools.cache
def _packed_message_class() -> Any:
    """pyroute2's ipvsmsg with attributes packed by ``ipvs_codec`` (its documented encode() hook)."""
    from pyroute2.netlink.generic.ipvs import ipvsmsg

    class PackedIpvsMsg(ipvsmsg):  # type: ignore[misc]
        payload = b""

        def encode(self) -> None:
            header = self["header"]
            body = struct.pack("=BBH", self["cmd"], self["version"], 0) + self.payload
            head = struct.pack("=IHHII", 16 + len(body), header["type"], header["flags"],
                               header["sequence_number"], header["pid"])
            self.data = bytearray(head + body)
            self.length = len(self.data)

    return PackedIpvsMsg


class _Netlink:
    """One pyroute2 generic-netlink socket bound to the IPVS family."""

    def __init__(self) -> None:
        from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST
        from pyroute2.netlink.generic.ipvs import AsyncIPVSSocket

        self._msg_class = _packed_message_class()
        self._sock = AsyncIPVSSocket()
        self._dump_flags = NLM_F_REQUEST | NLM_F_DUMP
        self._ack_flags = NLM_F_REQUEST | NLM_F_ACK
        self._create_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL

    async def open(self) -> None:
        await self._sock.setup_endpoint()

    def close(self) -> None:
        self._sock.close()

    def _message(self, cmd: int, attrs: codec.Attrs) -> Any:
        msg = self._msg_class()
        msg["cmd"] = cmd
        msg["version"] = 1
        msg.payload = codec.pack_attrs(attrs)
        return msg

    async def send(self, req: codec.Request) -> AsyncIterator[Any]:
        """Send one request; the returned replies end with its ack (or raise its error)."""
        flags = self._create_flags if req.create else self._ack_flags
        replies: AsyncIterator[Any] = await self._sock.nlm_request(
            self._message(req.cmd, req.attrs), msg_type=self._sock.prid, msg_flags=flags
        )
        return replies

    @staticmethod
    async def wait(replies: AsyncIterator[Any]) -> None:
        async for _ in replies:
            pass

    async def dump(self, cmd: int, attrs: codec.Attrs) -> list[bytes]:
        """The raw bytes of each message of a dump (decoded by ``ipvs_codec``)."""
        replies = await self._sock.nlm_request(
            self._message(cmd, attrs), msg_type=self._sock.prid, msg_flags=self._dump_flags
        )
        return [bytes(m.data[m.offset : m.offset + m["header"]["length"]]) async for m in replies]


class IpvsDataplane(Dataplane):
    """Saru's forwarding table in the kernel's IPVS."""

    capabilities = CAPABILITIES

    def __init__(self) -> None:
        self._nl: _Netlink | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ availability and life cycle

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("pyroute2") is None:
            return False, "pyroute2 is not installed (pip install 'pyroute2>=0.9.7')"
        if not PROC_IP_VS.exists() and _module_installed("ip_vs"):
            _try_modprobe("ip_vs")
        if not PROC_IP_VS.exists():
            return False, "no IPVS in this kernel (no /proc/net/ip_vs; ip_vs module not loaded)"
        if not _has_net_admin():
            return False, "IPVS needs CAP_NET_ADMIN (run as root)"
        return True, "IPVS is available"

    async def start(self) -> None:
        if self._nl is not None:
            return
        try:
            nl = _Netlink()
            await nl.open()
        except ImportError as exc:
            raise DataplaneError(f"pyroute2 is missing: {exc}") from exc
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code == errno.ENOENT:
                raise DataplaneError("no IPVS in this kernel (genl family IPVS not found)") from exc
            raise DataplaneError(f"cannot open the IPVS netlink socket: {describe_error(exc)}") from exc
        self._nl = nl

    async def close(self) -> None:
        nl, self._nl = self._nl, None
        if nl is not None:
            nl.close()

    def _netlink(self) -> _Netlink:
        if self._nl is None:
            raise DataplaneError("the IPVS data plane is not started")
        return self._nl

    # ------------------------------------------------------------------ reading

    async def _dump_dests(self, key: ServiceKey) -> list[codec.Nla] | None:
        """The destinations of a service; None when the service vanished since it was listed."""
        attrs = [("IPVS_CMD_ATTR_SERVICE", {"attrs": codec.service_key_attrs(key)})]
        try:
            raws = await self._netlink().dump(codec.CMD_GET_DEST, attrs)
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.ESRCH, errno.ENOENT):
                return None
            raise
        dests = [codec.dumped(raw, 2) for raw in raws]
        return [d for d in dests if d is not None]

    async def _dump_services(self) -> list[tuple[ServiceKey, codec.Nla]]:
        out = []
        for raw in await self._netlink().dump(codec.CMD_GET_SERVICE, []):
            nla = codec.dumped(raw, 1)
            key = codec.decode_service_key(nla) if nla is not None else None
            if nla is not None and key is not None:
                out.append((key, nla))
        return out

    async def _read(
        self, only: set[ServiceKey] | None = None, with_dests: set[ServiceKey] | None = None
    ) -> Table:
        services = []
        for key, nla in await self._dump_services():
            if only is not None and key not in only:
                continue
            dests = {}
            if with_dests is None or key in with_dests:
                dumped = await self._dump_dests(key)
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
                return await self._read()
            except DataplaneError:
                raise
            except Exception as exc:
                raise DataplaneError(f"reading the IPVS table failed: {describe_error(exc)}") from exc

    async def stats(self) -> dict[ServiceKey, ServiceStats]:
        async with self._lock:
            try:
                return await self._stats()
            except DataplaneError:
                raise
            except Exception as exc:
                raise DataplaneError(f"reading IPVS statistics failed: {describe_error(exc)}") from exc

    async def _stats(self) -> dict[ServiceKey, ServiceStats]:
        result: dict[ServiceKey, ServiceStats] = {}
        for key, nla in await self._dump_services():
            total = codec.stats64(nla, codec.SVC_STATS64)
            dumped = await self._dump_dests(key)
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

    # ------------------------------------------------------------------ writing

    async def apply(self, ops: Sequence[Op]) -> None:
        ops = list(ops)
        if not ops:
            return
        requests = []
        for op in ops:
            try:
                codec.validate(op)
                requests.append(codec.request(op))
            except codec.InvalidOp as exc:
                raise DataplaneError(f"{describe_op(op)}: {exc}") from exc
        # a cancelled caller must not leave half a batch behind: the batch runs to its end (or
        # its rollback) in a task of its own
        task = asyncio.ensure_future(self._apply(ops, requests))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(task)

    async def _apply(self, ops: list[Op], requests: list[codec.Request]) -> None:
        async with self._lock:
            nl = self._netlink()
            settings_keys, dest_keys = codec.needs_snapshot(ops)
            before: Table = Table()
            if settings_keys or dest_keys:
                try:
                    before = await self._read(only=settings_keys | dest_keys, with_dests=dest_keys)
                except Exception as exc:
                    raise DataplaneError(f"reading the IPVS table failed: {describe_error(exc)}") from exc
            succeeded, failures = await self._send_all(nl, requests, stop_on_failure=True)
            if failures:
                index, exc = failures[0]
                note = await self._rollback([ops[i] for i in succeeded], before)
                op = ops[index]
                raise DataplaneError(f"{describe_op(op)}: {describe_error(exc, op)}{note}") from exc

    @staticmethod
    async def _send_all(
        nl: _Netlink, requests: list[codec.Request], stop_on_failure: bool
    ) -> tuple[list[int], list[tuple[int, Exception]]]:
        """Send requests in windows of WINDOW before reading their acks (the kernel handles them in
        order). Returns the indices that succeeded and the failures, both in order; with
        ``stop_on_failure`` nothing is sent after the window that holds the first failure."""
        succeeded: list[int] = []
        failures: list[tuple[int, Exception]] = []
        for start in range(0, len(requests), WINDOW):
            sent = []
            for index in range(start, min(start + WINDOW, len(requests))):
                try:
                    sent.append((index, await nl.send(requests[index])))
                except Exception as exc:  # not sent at all (e.g. the socket is gone)
                    failures.append((index, exc))
                    if stop_on_failure:
                        break
            for index, replies in sent:
                try:
                    await nl.wait(replies)
                    succeeded.append(index)
                except Exception as exc:
                    failures.append((index, exc))
            failures.sort(key=lambda f: f[0])
            if failures and stop_on_failure:
                break
        return succeeded, failures

    async def _rollback(self, done: Sequence[Op], before: Table) -> str:
        """Undo ``done`` (best effort: an undo op that fails does not stop the others)."""
        if not done:
            return ""
        plan = codec.rollback_plan(done, before.services)
        _, failures = await self._send_all(
            self._netlink(), [codec.request(op) for op in plan], stop_on_failure=False
        )
        if failures:
            details = "; ".join(
                f"{describe_op(plan[i])}: {describe_error(exc, plan[i])}" for i, exc in failures[:5]
            )
            return (f"; rolling back the {len(done)} op(s) of this batch that succeeded failed for "
                    f"{len(failures)}: {details}")
        return f"; the {len(done)} op(s) of this batch that succeeded were rolled back"
