"""saru.daemon.fdstore: the sockets handed back (systemd's LISTEN_FDS, a hand-over) by virtual, with real
sockets and a real notify socket standing in for systemd."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from saru.daemon.fdstore import FdStore
from saru.dataplane.base import listener_name
from saru.model import ServiceKey
from saru.sdnotify import Notifier


def listening(host: str) -> tuple[socket.socket, ServiceKey]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, 0), family=family)
    return sock, ServiceKey("tcp", host, sock.getsockname()[1], family=6 if ":" in host else 4)


def test_sockets_are_taken_by_virtual_once_and_stale_ones_closed(tmp_path: Path) -> None:
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(5)
    v4, key4 = listening("127.0.0.1")
    v6, key6 = listening("::1")
    stale, stale_key = listening("127.0.0.1")
    with v4, v6, stale, manager:
        store = FdStore(Notifier(str(tmp_path / "notify")))
        pipe_r, pipe_w = os.pipe()
        os.close(pipe_w)
        store.add([(listener_name(key4), os.dup(v4.fileno())), (listener_name(key6), os.dup(v6.fileno())),
                   (listener_name(key4), os.dup(v4.fileno())),  # a second one of that name: closed
                   (listener_name(stale_key), os.dup(stale.fileno())), ("not\na name", pipe_r),
                   ("tcp-127.0.0.1-9", os.open("/dev/null", os.O_RDONLY))])
        assert set(store.held) == {listener_name(key4), listener_name(key6).replace(":", "_"),
                                   listener_name(stale_key), "tcp-127.0.0.1-9"}
        assert store.prune([key4, key6, ServiceKey("tcp", "127.0.0.1", 9)]) == [listener_name(stale_key)]
        assert manager.recv(4096) == f"FDSTOREREMOVE=1\nFDNAME={listener_name(stale_key)}".encode()
        taken = store.take(listener_name(key6))
        assert taken is not None and taken.getsockname()[:2] == v6.getsockname()[:2]
        taken.close()
        assert store.take(listener_name(key6)) is None  # once
        assert store.take("tcp-127.0.0.1-9") is None  # not a socket: closed, not handed out
        kept = store.take(listener_name(key4))
        assert kept is not None
        with kept:
            assert kept.getsockname() == v4.getsockname()
        store.add([(listener_name(stale_key), os.dup(stale.fileno()))])
        assert store.release_untaken() == [listener_name(stale_key)]  # ready: what the plane did not take
        assert manager.recv(4096) == f"FDSTOREREMOVE=1\nFDNAME={listener_name(stale_key)}".encode()
        assert store.held == {}
        store.close()
