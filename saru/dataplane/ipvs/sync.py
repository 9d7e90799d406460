"""IPVS connection synchronisation: the kernel's sync daemons, configured from saru.toml ``[ipvs.sync]``.

The kernel keeps the connection table in step between directors by itself: a *master* sync daemon
multicasts the state of the connections it handles, a *backup* daemon receives them and creates
the same entries, so a standby that becomes active carries on established connections (issue #5,
item 7). Saru only starts and stops these kernel threads, over generic netlink, exactly as
``ipvsadm --start-daemon master --mcast-interface eth0 --syncid N`` does (IPVS_CMD_NEW_DAEMON /
DEL_DAEMON / GET_DAEMON with the daemon attributes of include/uapi/linux/ip_vs.h).

* ``SyncDaemon`` is one daemon's configuration (pure); ``daemon_payload`` / ``decode_daemon`` its
  netlink attributes; ``desired_daemons(settings, ha_state)`` what should run (pure);
* ``read_daemons`` / ``start_daemon`` / ``stop_daemon`` talk to the kernel through an
  ``IpvsDataplane`` (its socket, its network namespace);
* ``apply_sync(dataplane, settings, ha_state)`` brings the running daemons in line with the settings
  and returns what it did, in short sentences for the log.

Roles: ``both`` runs a master and a backup daemon (each director sends its connections and
receives the peer's — the usual choice without HA integration); ``master`` / ``backup`` one of
them; ``follow-ha`` follows the VRRP state: a master daemon while the node is MASTER, a backup
daemon otherwise (BACKUP, INIT, FAULT or no HA state yet: a node that is not active should be
ready to take over with the active node's connections).

Kernel defaults, which ipvsadm also relies on: multicast group 224.0.0.81, port 8848, TTL 1,
message size from the interface's MTU. The kernel refuses a second daemon of the same role
(EEXIST) and needs the interface to exist with an IPv4 address (ENODEV / EADDRNOTAVAIL otherwise).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from saru.dataplane.base import Dataplane, DataplaneError
from saru.dataplane.ipvs import codec

if TYPE_CHECKING:
    from saru.dataplane.ipvs.plane import IpvsDataplane
    from saru.model import IPVSSyncSettings

STATE_MASTER = 0x1
STATE_BACKUP = 0x2
ROLES = {"master": STATE_MASTER, "backup": STATE_BACKUP}
ROLE_NAMES = {number: name for name, number in ROLES.items()}

ERRORS = {
    errno.EEXIST: "Daemon has already run",  # libipvs's words
    errno.ESRCH: "No daemon is running",
    errno.ENODEV: "no such interface",
    errno.EADDRNOTAVAIL: "the interface has no IPv4 address",
    errno.EINVAL: "invalid sync daemon settings",
    errno.EPERM: "not permitted (needs CAP_NET_ADMIN)",
}


class SyncError(DataplaneError):
    """A sync daemon could not be started, stopped or listed."""


@dataclass(frozen=True)
class SyncDaemon:
    """One sync daemon: its role and its settings (0 / None: the kernel's default)."""

    role: str  # "master" | "backup"
    interface: str
    syncid: int = 0
    maxlen: int = 0
    mcast_group: str | None = None
    port: int = 0
    ttl: int = 0

    def describe(self) -> str:
        text = f"{self.role} sync daemon (mcast={self.interface}, syncid={self.syncid}"
        if self.mcast_group:
            text += f", group={self.mcast_group}"
        return text + ")"

    def satisfies(self, wanted: SyncDaemon) -> bool:
        """Whether this running daemon is what ``wanted`` asks for (its zero fields: any value)."""
        return (self.role == wanted.role and self.interface == wanted.interface
                and self.syncid == wanted.syncid
                and (not wanted.maxlen or self.maxlen == wanted.maxlen)
                and (wanted.mcast_group is None or _same_address(self.mcast_group, wanted.mcast_group))
                and (not wanted.port or self.port == wanted.port)
                and (not wanted.ttl or self.ttl == wanted.ttl))


def _same_address(a: str | None, b: str) -> bool:
    return a is not None and ipaddress.ip_address(a) == ipaddress.ip_address(b)


# -------------------------------------------------------------------------------------------- pure


def daemon_payload(daemon: SyncDaemon, full: bool = True) -> bytes:
    """The IPVS_CMD_ATTR_DAEMON attribute of NEW_DAEMON (``full``) or DEL_DAEMON, as libipvs
    builds it: state, interface and syncid always, the rest only when set."""
    attrs: codec.Attrs = [
        ("IPVS_DAEMON_ATTR_STATE", ROLES[daemon.role]),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", daemon.interface),
        ("IPVS_DAEMON_ATTR_SYNC_ID", daemon.syncid),
    ]
    if full:
        if daemon.maxlen:
            attrs.append(("IPVS_DAEMON_ATTR_SYNC_MAXLEN", daemon.maxlen))
        if daemon.port:
            attrs.append(("IPVS_DAEMON_ATTR_MCAST_PORT", daemon.port))
        if daemon.ttl:
            attrs.append(("IPVS_DAEMON_ATTR_MCAST_TTL", daemon.ttl))
        if daemon.mcast_group:
            if ipaddress.ip_address(daemon.mcast_group).version == 6:
                attrs.append(("IPVS_DAEMON_ATTR_MCAST_GROUP6", daemon.mcast_group))
            else:
                attrs.append(("IPVS_DAEMON_ATTR_MCAST_GROUP", daemon.mcast_group))
    return codec.pack_attrs([("IPVS_CMD_ATTR_DAEMON", {"attrs": attrs})])


def decode_daemon(raw: bytes) -> SyncDaemon | None:
    """One message of a GET_DAEMON dump (None if it is not a master or backup daemon)."""
    nla = codec.dumped(raw, 3)
    if nla is None:
        return None
    state = struct.unpack_from("=I", nla[1])[0] if len(nla.get(1, b"")) >= 4 else 0
    role = ROLE_NAMES.get(state & (STATE_MASTER | STATE_BACKUP))
    if role is None:
        return None
    group = None
    if len(nla.get(5, b"")) >= 4:
        group = socket.inet_ntoa(nla[5][:4])
    elif len(nla.get(6, b"")) >= 16:
        group = str(ipaddress.IPv6Address(nla[6][:16]))

    def number(kind: int, fmt: str) -> int:
        value = nla.get(kind, b"")
        return struct.unpack_from(fmt, value)[0] if len(value) >= struct.calcsize(fmt) else 0

    return SyncDaemon(
        role=role,
        interface=nla.get(2, b"").split(b"\0", 1)[0].decode(errors="replace"),
        syncid=number(3, "=I"),
        maxlen=number(4, "=H"),
        mcast_group=group,
        port=number(7, "=H"),
        ttl=number(8, "=B"),
    )


def roles_for(role: str, ha_state: object = None) -> tuple[str, ...]:
    """Which daemons run for a configured role and the node's VRRP state (see the module doc):
    ``ha_state`` is a state name ("MASTER", "backup", ...), a ``saru.ha.vrrp.State`` or None."""
    if role == "both":
        return ("master", "backup")
    if role in ("master", "backup"):
        return (role,)
    if role == "follow-ha":
        name = str(getattr(ha_state, "name", ha_state) or "")
        return ("master",) if name.upper() == "MASTER" else ("backup",)
    raise ValueError(f"unknown sync role {role!r}")


def desired_daemons(settings: IPVSSyncSettings | None, ha_state: object = None) -> list[SyncDaemon]:
    """The daemons that should run (none without ``[ipvs.sync]``)."""
    if settings is None:
        return []
    return [SyncDaemon(role=role, interface=settings.interface, syncid=settings.syncid,
                       maxlen=settings.maxlen, mcast_group=settings.mcast_group,
                       port=settings.port, ttl=settings.ttl)
            for role in roles_for(settings.role, ha_state)]


# ----------------------------------------------------------------------------------------- kernel


def _ipvs(dataplane: Dataplane) -> IpvsDataplane:
    from saru.dataplane.ipvs.plane import IpvsDataplane

    if not isinstance(dataplane, IpvsDataplane):
        raise SyncError(f"connection synchronisation needs the IPVS data plane, not {dataplane.capabilities.name}")
    return dataplane


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code:
        return f"{ERRORS.get(code, os.strerror(code))} (errno {code})"
    return str(exc) or type(exc).__name__


async def read_daemons(dataplane: Dataplane) -> list[SyncDaemon]:
    """The sync daemons running in the plane's network namespace (master first, like the kernel)."""
    plane = _ipvs(dataplane)
    try:
        raws = await plane.netlink_dump(codec.CMD_GET_DAEMON)
    except OSError as exc:
        raise SyncError(f"listing the sync daemons failed: {_reason(exc)}") from exc
    return [d for d in map(decode_daemon, raws) if d is not None]


async def start_daemon(dataplane: Dataplane, daemon: SyncDaemon) -> None:
    plane = _ipvs(dataplane)
    try:
        await plane.netlink_request(codec.CMD_NEW_DAEMON, daemon_payload(daemon))
    except OSError as exc:
        raise SyncError(f"starting the {daemon.describe()} failed: {_reason(exc)}") from exc


async def stop_daemon(dataplane: Dataplane, role: str, interface: str = "", syncid: int = 0) -> None:
    plane = _ipvs(dataplane)
    daemon = SyncDaemon(role=role, interface=interface, syncid=syncid)
    try:
        await plane.netlink_request(codec.CMD_DEL_DAEMON, daemon_payload(daemon, full=False))
    except OSError as exc:
        raise SyncError(f"stopping the {role} sync daemon failed: {_reason(exc)}") from exc


async def apply_sync(dataplane: Dataplane, settings: IPVSSyncSettings | None, ha_state: object = None) -> list[str]:
    """Start and stop the kernel's sync daemons so that exactly ``desired_daemons(settings,
    ha_state)`` run; a daemon already running as wanted is left alone (its entries keep flowing).
    ``settings=None`` stops both daemons: call it so only when Saru manages sync (the
    ``[ipvs.sync]`` section was removed). Returns what was done, one sentence each; raises
    SyncError (after trying every change) when one failed."""
    wanted = {d.role: d for d in desired_daemons(settings, ha_state)}
    running = {d.role: d for d in await read_daemons(dataplane)}
    done: list[str] = []
    problems: list[str] = []
    for role in ("master", "backup"):
        have, want = running.get(role), wanted.get(role)
        if have is not None and (want is None or not have.satisfies(want)):
            try:
                await stop_daemon(dataplane, role, have.interface, have.syncid)
                done.append(f"stopped the {have.describe()}")
            except SyncError as exc:
                problems.append(str(exc))
                continue
            have = None
        if want is not None and have is None:
            try:
                await start_daemon(dataplane, want)
                done.append(f"started the {want.describe()}")
            except SyncError as exc:
                problems.append(str(exc))
    if problems:
        raise SyncError("; ".join(problems) + (f" (done: {'; '.join(done)})" if done else ""))
    return done
