"""The proxy's listening sockets in systemd's file descriptor store, so a restart refuses no client.

Under a unit with ``FileDescriptorStoreMax=``, every socket the proxy plane binds is handed to systemd
(``FDSTORE=1``, named by its virtual: ``saru.dataplane.base.listener_name``). When the daemon dies
(kill -9, a crash, the watchdog) and ``Restart=`` starts it again, systemd passes the sockets back
(``LISTEN_FDS``/``LISTEN_FDNAMES``): the new daemon takes each virtual's socket instead of binding
a new one, and the clients that connected in between waited in its backlog instead of being refused.

``FdStore`` is the plane's ``SocketStore``: ``take`` (an inherited socket, once), ``keep`` (hand a
new one to systemd), ``drop`` (a deleted virtual: systemd closes its copy). ``prune`` closes the
inherited sockets whose virtual is no longer in the config (a reload or a changed file between the
crash and the restart), and removes them from the store; the daemon calls it once it holds its
resources (a daemon refused at start changes nothing of the store) and after every reload; once the
first table is in, ``release_untaken`` lets go of the rest (an HA backup serves nothing).
Without ``NOTIFY_SOCKET`` (not under systemd) nothing is kept and nothing is inherited — except the
sockets ``saru run --handover`` took from the daemon it replaces (``add``, ``saru.daemon.handover``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable

from saru.dataplane.base import listener_name
from saru.model import ServiceKey
from saru.sdnotify import Notifier, fd_name

LOGGER = logging.getLogger("saru")


class FdStore:
    """Inherited listening sockets by name, and the channel that keeps new ones in systemd."""

    def __init__(self, notifier: Notifier, inherited: Iterable[tuple[str, int]] = ()) -> None:
        self.notifier = notifier
        self.held: dict[str, int] = {}
        self.add(inherited)  # two under one name: the first is kept, the other closed

    def add(self, sockets: Iterable[tuple[str, int]]) -> None:
        """More sockets to take (``saru run --handover``'s, from the daemon it replaced)."""
        for name, fd in sockets:
            try:
                key = fd_name(name)  # systemd's names are already; a hand-over's IPv6 ones are not
            except ValueError:
                key = ""
            if not key or key in self.held:
                os.close(fd)
            else:
                self.held[key] = fd

    def take(self, name: str) -> socket.socket | None:
        fd = self.held.pop(fd_name(name), None)
        if fd is None:
            return None
        try:
            return socket.socket(fileno=fd)
        except OSError:  # not a socket
            os.close(fd)
            return None

    def keep(self, name: str, sock: socket.socket) -> None:
        if self.notifier.enabled and not self.notifier.store_fd(fd_name(name), sock.fileno()):
            LOGGER.warning("cannot keep the listening socket of %s in systemd's store: %s",
                           name, self.notifier.last_error)

    def drop(self, name: str) -> None:
        if self.notifier.enabled:
            self.notifier.remove_fd(fd_name(name))
        fd = self.held.pop(fd_name(name), None)
        if fd is not None:
            os.close(fd)

    def prune(self, virtuals: Iterable[ServiceKey]) -> list[str]:
        """Close (and remove from the store) the inherited sockets of no virtual in ``virtuals``;
        returns their names."""
        wanted = {fd_name(listener_name(key)) for key in virtuals}
        stale = sorted(name for name in self.held if name not in wanted)
        for name in stale:
            os.close(self.held.pop(name))
            if self.notifier.enabled:
                self.notifier.remove_fd(name)
        return stale

    def release_untaken(self) -> list[str]:
        """Once the first table is in: close (and remove from the store) what the plane did not take
        — an HA backup's, whose table is empty — so the store holds exactly what the plane serves and
        a backup refuses connections as before rather than queueing them; returns their names."""
        names = sorted(self.held)
        for name in names:
            os.close(self.held.pop(name))
            if self.notifier.enabled:
                self.notifier.remove_fd(name)
        return names

    def close(self) -> None:
        """Close the inherited sockets nobody took (the store keeps its own copies)."""
        for fd in self.held.values():
            os.close(fd)
        self.held.clear()
