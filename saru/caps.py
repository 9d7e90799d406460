"""Linux capabilities of this process and of the programs it starts (capget/capset/prctl, nothing else).

A daemon that holds capabilities (``saru.service``: ``AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW
CAP_NET_BIND_SERVICE``; ``saru run`` started as root and dropped to its user) keeps them in its
*permitted* and *effective* sets: that is all it needs itself. What a program it execs gets is decided
by the *ambient* and *inheritable* sets (capabilities(7)): a plain executable gets the ambient set, and
one with file-inheritable capabilities gets those of the inheritable set too. ``keep_for_self_only``
empties both (``capset`` with inheritable 0, which also empties the ambient set; where ``capset`` is
refused, ``PR_CAP_AMBIENT_CLEAR_ALL``): external checks, callbacks, fallback commands and notify scripts
then start with no capability at all, whatever user they run as.

The programs the daemon runs that need a capability: ``nft`` (the nftables plane's fallback when
libnftables is not installed: CAP_NET_ADMIN) and a managed BIRD (``saru.bgp.bird``: CAP_NET_BIND_SERVICE
for port 179, CAP_NET_ADMIN too with BFD). ``raised_for_exec`` gives exactly the named capabilities
to the programs started *by the calling thread* while it is active: capabilities are per thread in Linux,
and a child is forked from the thread that starts it, so other threads' children (the checks) are not
affected. Root (effective uid 0) needs neither: its children are root.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from dataclasses import dataclass

# capability bit numbers (linux/capability.h)
CAP_NET_BIND_SERVICE = 10  # the proxy listening on a port below 1024
CAP_NET_ADMIN = 12  # IPVS, nftables, the VIP, routes, conntrack
CAP_NET_RAW = 13  # VRRP, ARP/NA, ICMP (ping, VIPcheck)

# prctl(2) options
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class CapError(OSError):
    """A capability call failed (``str()`` names the call and the reason)."""


@dataclass(frozen=True)
class CapSets:
    """The calling thread's effective, permitted and inheritable sets (bit masks)."""

    effective: int
    permitted: int
    inheritable: int


def mask(caps: tuple[int, ...]) -> int:
    """The capability set with these bits."""
    value = 0
    for cap in caps:
        value |= 1 << cap
    return value


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def prctl(*args: int) -> None:
    """``prctl(args…)``; ``CapError`` when it fails."""
    libc = _libc()
    padded = [*args, 0, 0, 0, 0][:5]
    if libc.prctl(*(ctypes.c_ulong(a) for a in padded)) != 0:
        errno = ctypes.get_errno()
        raise CapError(errno, f"prctl{tuple(args)}: {os.strerror(errno)}")


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capget() -> CapSets:
    """The calling thread's sets."""
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if _libc().capget(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise CapError(errno, f"capget: {os.strerror(errno)}")
    words = [(data[i].effective, data[i].permitted, data[i].inheritable) for i in range(2)]
    return CapSets(*(words[0][k] | words[1][k] << 32 for k in range(3)))


def capset(sets: CapSets) -> None:
    """Set the calling thread's sets (only ever within what it is permitted); ``CapError`` when refused."""
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (sets.effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (sets.permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (sets.inheritable >> shift) & 0xFFFFFFFF
    if _libc().capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise CapError(errno, f"capset: {os.strerror(errno)}")


def keep_for_self_only() -> str | None:
    """Empty the inheritable and ambient sets of the calling thread (and so of every thread it starts
    later), keeping effective and permitted: the programs it starts get no capability. Call before any
    other thread starts. Returns None, or a warning when only the ambient set could be emptied (``capset``
    refused, e.g. by a unit's ``SystemCallFilter=``), or ``CapError`` when neither could."""
    if os.geteuid() == 0:
        return None  # root's children are root: nothing to hide from them this way
    sets = capget()
    if sets.inheritable == 0:
        with contextlib.suppress(CapError):  # the ambient set is a subset of the inheritable one: empty
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        return None
    try:
        capset(CapSets(sets.effective, sets.permitted, 0))  # the kernel empties the ambient set too
    except CapError as exc:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        return (f"{exc}: the programs Saru runs start without capabilities (ambient set emptied) but keep "
                f"an inheritable set of {sets.inheritable:#x} (allow capset, e.g. SystemCallFilter=capset)")
    return None


@contextlib.contextmanager
def raised_for_exec(caps: tuple[int, ...]) -> Iterator[None]:
    """While active, programs started by the calling thread get ``caps`` (those of them this process
    holds): inheritable and ambient raised for this thread only, emptied again on the way out. Nothing
    to do as root or when the caps are not permitted (the program then fails as it would anyway)."""
    if os.geteuid() == 0:
        yield
        return
    sets = capget()
    wanted = mask(caps) & sets.permitted
    if not wanted or sets.inheritable:  # nothing held, or children inherit as they always did
        yield
        return
    try:
        capset(CapSets(sets.effective, sets.permitted, wanted))
        for cap in caps:
            if wanted >> cap & 1:
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
    except CapError:
        pass  # the program runs without them and reports its own error
    try:
        yield
    finally:
        with contextlib.suppress(CapError):
            capset(sets)  # inheritable empty again: the kernel empties the ambient set with it
