"""``saru run --handover``: a graceful restart outside systemd, refusing no connection.

The new daemon asks the running one (its control socket) for the listening sockets of its data plane
(``listeners``: the descriptors come as ``SCM_RIGHTS``, names by virtual), then tells it to stop and
waits for its process to end; it then starts as usual, taking each virtual's socket instead of
binding a new one (``saru.daemon.fdstore``). Clients connecting meanwhile wait in the kept sockets'
backlogs. What the old daemon relayed ends with it (a userspace proxy's connections live in its
memory); a kill -9 outside systemd leaves nobody holding the sockets — under systemd its file
descriptor store covers that.

Nothing running: nothing to take over, the daemon starts as usual. A running daemon that cannot hand
over (an older version, not started yet) is left running and the new one exits 1 — it never stops a
daemon whose sockets it does not hold.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from saru.control.client import request_fds, request_sync

#: seconds the old daemon may take to stop (its cleanstop, HA leaving) before the hand-over gives up
STOP_WAIT = 60.0


class HandoverError(Exception):
    """The running daemon could not hand over; it runs on untouched."""


def take_over(control: Path, wait: float = STOP_WAIT) -> list[tuple[str, int]]:
    """The running daemon's listening sockets as (name, descriptor), that daemon stopped and gone;
    [] when no daemon answers on ``control``. ``HandoverError`` when it runs but cannot hand over,
    or does not end within ``wait`` seconds (the descriptors are then closed)."""
    try:
        status = request_sync(control, "status", timeout=10)
    except (FileNotFoundError, ConnectionRefusedError):
        return []
    except (OSError, ConnectionError) as exc:
        raise HandoverError(f"cannot reach the running daemon at {control}: {exc}") from None
    pid = status.get("pid")
    if not status.get("ok") or not isinstance(pid, int) or isinstance(pid, bool):
        raise HandoverError(f"the running daemon at {control} cannot hand over: {status.get('error', status)}")
    try:
        answer, fds = request_fds(control, "listeners", timeout=10)
    except (OSError, ConnectionError) as exc:
        raise HandoverError(f"cannot take the running daemon's sockets: {exc}") from None
    try:
        names = answer.get("names")
        if not answer.get("ok"):
            raise HandoverError(f"the running daemon cannot hand over its sockets ({answer.get('error')}); "
                                "stop it first")
        if not isinstance(names, list) or len(names) != len(fds) or not all(isinstance(n, str) for n in names):
            raise HandoverError(f"the running daemon sent {len(fds)} sockets with names {names!r}")
        stopped = request_sync(control, "stop", timeout=10)
        if not stopped.get("ok"):
            raise HandoverError(f"the running daemon refused to stop: {stopped.get('error')}")
        deadline = time.monotonic() + wait
        while _running(pid):
            if time.monotonic() > deadline:
                raise HandoverError(f"the running daemon (pid {pid}) did not stop within {wait:g}s")
            time.sleep(0.05)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return list(zip(names, fds, strict=True))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that pid: still there
        return True
    return True
