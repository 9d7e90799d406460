"""The sd_notify protocol: telling systemd (or any supervisor that speaks it) how the daemon is doing.

The supervisor passes ``NOTIFY_SOCKET`` in the environment: a ``AF_UNIX`` datagram socket, a path
(``/run/systemd/notify``) or, starting with ``@``, a name in the abstract namespace. Each message is
one datagram of ``KEY=VALUE`` lines. Without ``NOTIFY_SOCKET`` (started by hand, by
``saru-ldirectord``, by a test) every call is a no-op that returns ``False``: the daemon never has to
ask whether it runs under systemd.

API (what the daemon's wiring uses)::

    notifier = Notifier.from_environment(unset=True)   # once, at start; unset: children do not inherit
    notifier.ready(status="MASTER, 2 virtuals, 4/4 reals up, nftables")  # after the first apply (+ HA)
    notifier.status("BACKUP, 2 virtuals, 3/4 reals up, nftables")        # whenever the one-liner changes
    notifier.reloading()          # on SIGHUP / saru reload, before re-reading: RELOADING=1 + MONOTONIC_USEC
    notifier.ready()              # after the reload was applied (or refused: the old config runs on)
    notifier.stopping()           # first thing on SIGTERM / saru stop
    notifier.extend_timeout(30)   # a start or stop that legitimately needs longer than the unit allows
    interval = watchdog_interval()  # WatchdogSec= as seconds, or None; read BEFORE unset=True clears it
    notifier.watchdog()           # every interval / 2 (``ping_period``), only while the loop makes progress

Every method returns ``True`` when the datagram was handed to the socket, ``False`` when there is no
socket or sending failed (``last_error`` says why); none raises. Sending never blocks the event
loop: the socket is non-blocking, a full queue is a failed send.

The file descriptor store (``FileDescriptorStoreMax=`` in the unit): ``store_fd(name, sock)`` hands
systemd a duplicate of a descriptor (``FDSTORE=1`` + ``FDNAME=`` with the descriptor attached as
``SCM_RIGHTS``), ``remove_fd(name)`` makes it close its copy (``FDSTOREREMOVE=1``). systemd keeps
them while the service restarts (``Restart=``) and passes them to the next start as ``LISTEN_FDS`` /
``LISTEN_FDNAMES`` (descriptors 3, 4, …), which ``listen_fds`` reads (only when ``LISTEN_PID`` names
this process, as sd_listen_fds(3) does). ``fd_name`` makes a valid ``FDNAME`` (no ``:``, no control
characters, at most 255 characters).

``watchdog_interval`` reads ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``: the interval is only ours when
that names this process or is absent), as sd_watchdog_enabled(3) does. ``format_message`` is the
pure part: fields to bytes, refusing what would corrupt the line protocol (a newline in a value, a
malformed key); a ``STATUS=`` text is flattened to one line.
"""

from __future__ import annotations

import array
import os
import re
import socket
import time
from collections.abc import Mapping, MutableMapping

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"
LISTEN_FDS = "LISTEN_FDS"
LISTEN_FDNAMES = "LISTEN_FDNAMES"
LISTEN_PID = "LISTEN_PID"
#: the first descriptor systemd passes (SD_LISTEN_FDS_START)
LISTEN_FDS_START = 3
FDNAME_MAX = 255

_KEY = re.compile(r"[A-Z][A-Z0-9_]*\Z")
#: longest STATUS= text sent (systemd shows one line; a runaway string is cut, not refused)
STATUS_MAX = 512


def format_message(fields: Mapping[str, str]) -> bytes:
    """``KEY=VALUE`` lines (newline-separated, in order) as one datagram.

    ``ValueError`` for an empty message, a key that is not upper-case letters, digits and ``_``, or a
    value with a newline (it would start a forged line). ``STATUS`` is the exception: its text is
    flattened to one line and cut at ``STATUS_MAX`` characters."""
    if not fields:
        raise ValueError("an sd_notify message needs at least one field")
    lines: list[str] = []
    for key, value in fields.items():
        if not _KEY.match(key):
            raise ValueError(f"invalid sd_notify field name {key!r}")
        if key == "STATUS":
            value = " ".join(value.split())[:STATUS_MAX]
        elif "\n" in value or "\0" in value:
            raise ValueError(f"sd_notify field {key} contains a newline or NUL")
        lines.append(f"{key}={value}")
    return "\n".join(lines).encode()


def socket_address(value: str | None) -> str | None:
    """The ``AF_UNIX`` address ``NOTIFY_SOCKET`` names: a path as is, ``@name`` as the abstract name
    ``\\0name``; ``None`` when unset, empty, or of a kind this module does not speak (``vsock:``…)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The supervisor's watchdog interval in seconds (``WatchdogSec=``), or ``None`` when there is none
    for this process: ``WATCHDOG_USEC`` unset, not a positive integer, or ``WATCHDOG_PID`` naming
    another process (a child that inherited the environment). Ping at least every half of it."""
    env = os.environ if environ is None else environ
    usec = env.get(WATCHDOG_USEC, "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get(WATCHDOG_PID)
    if owner is not None:
        if not owner.isdigit() or int(owner) != (os.getpid() if pid is None else pid):
            return None
    return int(usec) / 1_000_000


def fd_name(text: str) -> str:
    """``text`` as a valid ``FDNAME``: ``:`` (the separator of ``LISTEN_FDNAMES``) becomes ``_``;
    ValueError for control or non-ASCII characters, or more than 255 characters."""
    name = text.replace(":", "_")
    if not name or len(name) > FDNAME_MAX or any(not " " <= c <= "~" for c in name):
        raise ValueError(f"not a valid file descriptor name: {text!r}")
    return name


def listen_fds(environ: MutableMapping[str, str] | None = None, pid: int | None = None,
               unset: bool = True) -> list[tuple[str, int]]:
    """The descriptors the supervisor passed (``LISTEN_FDS``), as (name, fd) from fd 3 on, each made
    close-on-exec; empty when there are none or ``LISTEN_PID`` names another process. A descriptor
    without a name in ``LISTEN_FDNAMES`` is named ``unknown`` (systemd's word). ``unset``: remove the
    three variables, so that children do not take the descriptors for theirs."""
    env = os.environ if environ is None else environ
    count, owner, names = env.get(LISTEN_FDS, ""), env.get(LISTEN_PID, ""), env.get(LISTEN_FDNAMES, "")
    if unset:
        for key in (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES):
            env.pop(key, None)
    if not count.isdigit() or not owner.isdigit() or int(owner) != (os.getpid() if pid is None else pid):
        return []
    labels = names.split(":") if names else []
    out = []
    for i in range(int(count)):
        fd = LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
        except OSError:  # not open after all
            continue
        out.append((labels[i] if i < len(labels) and labels[i] else "unknown", fd))
    return out


def ping_period(interval: float) -> float:
    """How often to send ``WATCHDOG=1`` for a watchdog interval: half of it, as systemd advises."""
    return interval / 2


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: what ``RELOADING=1`` carries as ``MONOTONIC_USEC``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages to one socket (or nowhere: ``address`` None)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.last_error: str | None = None
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, unset: bool = False) -> Notifier:
        """The notifier of ``NOTIFY_SOCKET`` (a no-op one without it). ``unset``: remove
        ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from the environment, so that the
        external checks and scripts the daemon starts do not inherit them (read ``watchdog_interval``
        first)."""
        env = os.environ if environ is None else environ
        notifier = cls(socket_address(env.get(NOTIFY_SOCKET)))
        if env.get(NOTIFY_SOCKET) and notifier.address is None:
            notifier.last_error = f"unsupported NOTIFY_SOCKET {env[NOTIFY_SOCKET]!r}"
        if unset:
            for key in (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID):
                env.pop(key, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self.address is not None

    def send(self, fields: Mapping[str, str], fds: tuple[int, ...] = ()) -> bool:
        """Send ``fields`` as one datagram (``fds`` attached as ``SCM_RIGHTS``); see the module
        docstring for the return value."""
        message = format_message(fields)
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            if fds:
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
                self._sock.sendmsg([message], rights, 0, self.address)
            else:
                self._sock.sendto(message, self.address)
        except OSError as exc:
            self.last_error = f"sd_notify to {self.address.replace(chr(0), '@')}: {exc}"
            self.close()
            return False
        self.last_error = None
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up (or a reload) is complete."""
        return self.send(_with_status({"READY": "1"}, status))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (what ``Type=notify-reload`` requires): a reload has
        started; send ``ready()`` when it is done."""
        return self.send(_with_status({"RELOADING": "1", "MONOTONIC_USEC": str(monotonic_usec())}, status))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the daemon is shutting down."""
        return self.send(_with_status({"STOPPING": "1"}, status))

    def status(self, text: str) -> bool:
        """``STATUS=``: the one line ``systemctl status`` shows."""
        return self.send({"STATUS": text})

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the daemon is alive and making progress."""
        return self.send({"WATCHDOG": "1"})

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: give the current start, reload or stop ``seconds`` more."""
        return self.send({"EXTEND_TIMEOUT_USEC": str(max(0, int(seconds * 1_000_000)))})

    def store_fd(self, name: str, fd: int) -> bool:
        """``FDSTORE=1``: systemd keeps a duplicate of ``fd`` under ``name`` (an ``fd_name``) across
        restarts of the service; needs ``FileDescriptorStoreMax=`` in the unit."""
        return self.send({"FDSTORE": "1", "FDNAME": name}, (fd,))

    def remove_fd(self, name: str) -> bool:
        """``FDSTOREREMOVE=1``: systemd closes the descriptors it keeps under ``name``."""
        return self.send({"FDSTOREREMOVE": "1", "FDNAME": name})

    def close(self) -> None:
        """Close the socket (the next send opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _with_status(fields: dict[str, str], status: str | None) -> dict[str, str]:
    if status is not None:
        fields["STATUS"] = status
    return fields
