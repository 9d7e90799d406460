"""One daemon per config file per network namespace: an exclusive lock taken at start.

The pid file and the control socket catch a second daemon only when both name the same paths. Two
daemons of one ldirectord.cf in one network namespace with different ``--control``/``--pidfile``
would still share — and fight over — the kernel's table. So the daemon also takes a BSD ``flock``
on ``<runtime dir>/locks/<netns inode>-<hash of the config's absolute path>.lock`` before it
touches the data plane. The lock belongs to the open file, so the kernel drops it when the process
dies however it dies (kill -9 included): there is never a stale lock to clean up. The file holds
the owner's pid, for the refusal message only; it is never unlinked (unlinking a lock file races
with a concurrent opener).

Different network namespaces get different locks on purpose: the guide's two directors, or the
test beds' namespaces, may run the same file side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from saru.files import private_dir


class InstanceLocked(Exception):
    """Another live daemon holds the lock; ``str()`` says which and where."""


def _netns_id() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:  # no /proc: one namespace as far as we can tell
        return 0


def lock_path(runtime: Path, config_path: str) -> Path:
    """The lock file of ``config_path`` in this process's network namespace."""
    digest = hashlib.sha256(os.path.abspath(config_path).encode()).hexdigest()[:16]
    return runtime / "locks" / f"{_netns_id()}-{digest}.lock"


class InstanceLock:
    """``acquire()`` or raise InstanceLocked; ``release()`` (idempotent) on the way out."""

    def __init__(self, path: Path, config_path: str) -> None:
        self.path = path
        self.config_path = config_path
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent.parent)  # the runtime directory (saru.files), then its locks/
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InstanceLocked(
                f"another saru daemon (pid {owner}) already directs {self.config_path} in this network "
                f"namespace (lock {self.path} in use); stop it first, or give the other a different config"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None
